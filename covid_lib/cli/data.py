"""``python -m covid_lib data ...``: summary, compose, audit, download.

Only the standard library is imported here; each command imports the data layer when it runs, so
``--help`` answers at once. Tables are wrapped to fit a 120-column terminal; slow steps report on
stderr (status lines and progress bars) while stdout holds only the results.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any, Sequence

#: The sources and compositions offered as choices (tests check them against the data layer's,
#: which cannot be imported here without making ``--help`` slow).
from covid_lib.names import COMPOSITION_NAMES, SOURCE_NAMES  # noqa: E402  (light: no torch)
#: Width the printed tables fit in.
TABLE_WIDTH = 120


def _say(text: str) -> None:
    """Print a line of prose wrapped to :data:`TABLE_WIDTH` (paths are never broken)."""
    print(textwrap.fill(text, TABLE_WIDTH, break_long_words=False, break_on_hyphens=False))


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], width: int = TABLE_WIDTH,
                 gap: int = 2) -> str:
    """A plain-text table no wider than ``width``: the widest columns are narrowed and their cells
    wrapped onto several lines. Numeric columns are right-aligned."""
    cells = [[str(h) for h in header]] + [["" if v is None else str(v) for v in row] for row in rows]
    columns = list(zip(*cells))
    widths = [max(len(c) for c in col) for col in columns]
    floors = [_floor(col) for col in columns]

    def total() -> int:
        return sum(widths) + gap * (len(widths) - 1)

    for floor_of in (lambda i: floors[i], lambda i: 6):  # first keep words whole, then break them
        while total() > width:
            shrinkable = [i for i, w in enumerate(widths) if w > floor_of(i)]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: widths[i])
            widths[widest] -= 1
    numeric = [all(_is_number(c) for c in col[1:] if c) and any(col[1:]) for col in columns]

    def render(row: list[str]) -> list[str]:
        wrapped = [textwrap.wrap(c, w, break_on_hyphens=True) or [""] for c, w in zip(row, widths)]
        lines = []
        for k in range(max(len(w) for w in wrapped)):
            parts = []
            for i, (lines_i, w) in enumerate(zip(wrapped, widths)):
                text = lines_i[k] if k < len(lines_i) else ""
                parts.append(text.rjust(w) if numeric[i] else text.ljust(w))
            lines.append((" " * gap).join(parts).rstrip())
        return lines

    out = render(cells[0])
    out.append((" " * gap).join("-" * w for w in widths))
    for row in cells[1:]:
        out.extend(render(row))
    return "\n".join(out)


def _longest_chunk(text: str) -> int:
    """Length of the longest piece :func:`textwrap.wrap` keeps whole (words, split after hyphens)."""
    return max((len(w) for w in textwrap.TextWrapper(break_on_hyphens=True)._split(text) if w.strip()),
               default=0)


def _floor(column: Sequence[str]) -> int:
    """Narrowest width a column gets before words are broken: short cells (counts such as
    "147 (207)") stay on one line, long text wraps at word boundaries, headers wrap."""
    header, body = column[0], column[1:]
    longest = max((len(c) for c in body), default=0)
    body_floor = longest if longest <= 12 else max((_longest_chunk(c) for c in body), default=0)
    return max(4, _longest_chunk(header), body_floor)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def print_frame(df, *, index: bool = False) -> None:
    """Print a DataFrame with :func:`format_table` (the index as leading columns when asked)."""
    if index:
        df = df.reset_index()
    print(format_table([str(c) for c in df.columns], df.astype(object).where(df.notna(), "").values.tolist()))


def _cmd_summary(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.data.sources import data_version, summary_table
    from covid_lib.paths import resolve_data_root

    root = resolve_data_root(args.data_root)
    present = [n for n in SOURCE_NAMES if (root / n / "manifest.csv").is_file()]
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.data.sources import PRETRAIN_ONLY_SOURCES

    absent = [n for n in SOURCE_NAMES if n not in present and n not in PRETRAIN_ONLY_SOURCES]
    optional = [n for n in PRETRAIN_ONLY_SOURCES if n not in present]
    if not present:
        raise FileNotFoundError(f"no source under {root} (expected <source>/manifest.csv for "
                                f"{', '.join(SOURCE_NAMES)}); see `python -m covid_lib data download --help`")
    _status(f"checking every image under {root} (decoded in full once, then cached)")
    table, exclusions = summary_table(root, present, progress=True)
    _say(f"data root: {root} (version {data_version(root)})")
    print()
    print_frame(table)
    if absent:
        print()
        _say(f"not found: {', '.join(absent)} (fetch with `python -m covid_lib data download NAME "
             f"--root {root}`)")
    if optional:
        _say(f"not found (optional, pre-training at the paper's scale only): {', '.join(optional)}")
    print("\nexclusions:" if len(exclusions) else "\nexclusions: none")
    if len(exclusions):
        reasons = exclusions.groupby(["source", "reason"]).size().rename("images").reset_index()
        print_frame(reasons)
    return 0


def _splits_with_status(data_root: str | None, seed: int):
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.data.compose import global_splits

    _status("loading the sources and assigning patient-level splits "
            "(first use: every image decoded and hashed, about 20 s)")
    return global_splits(data_root, seed=seed, progress=True)


#: The columns ``data compose --csv`` writes: who is in which split, nothing machine-specific
#: (no absolute paths); a row's metadata are in its source's ``manifest.csv`` under ``image_id``.
MEMBERSHIP_COLUMNS = ("composition", "source", "image_id", "patient_id", "group_id", "set", "split", "label")


def write_membership(composed, path: str | Path) -> int:
    """Write composed rows (frames of :func:`covid_lib.data.compose`) as one CSV of
    :data:`MEMBERSHIP_COLUMNS`, sorted; returns the number of rows written."""
    import pandas as pd

    rows = pd.concat([c.loc[:, list(MEMBERSHIP_COLUMNS)] for c in composed], ignore_index=True)
    rows = rows.sort_values(["composition", "split", "source", "image_id"], kind="stable")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(path, index=False)
    return len(rows)


def _cmd_compose(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.data.compose import compose, stand_in_table, table_one, table_one_wide

    names = list(COMPOSITION_NAMES) if args.name == "all" else [args.name]
    _splits_with_status(args.data_root, args.seed)
    composed = {name: compose(name, args.data_root, seed=args.seed) for name in names}
    for name, rows in composed.items():
        print(f"{name} (seed {args.seed}): {len(rows)} images, {rows['patient_id'].nunique()} patients")
    if args.csv is not None:
        written = write_membership(composed.values(), args.csv)
        print(f"wrote {written} rows (which image is in which split) to {args.csv}")
    _status("counting Table I")
    long = table_one(args.data_root, seed=args.seed)
    print("\nTable I analog, ours (paper); + and - are COVID+ and COVID-:")
    wide = table_one_wide(long[long["composition"].isin(names)])
    wide.columns = [str(c).replace(" COVID+", " +").replace(" COVID-", " -") for c in wide.columns]
    print_frame(wide, index=True)
    if args.stand_ins:
        print()
        print_frame(stand_in_table())
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.data.compose import compose
    from covid_lib.data.splits import SPLITS, audit_splits

    splits = _splits_with_status(args.data_root, args.seed)
    counts = splits.groupby(["source", "split"]).size().unstack().reindex(columns=list(SPLITS))
    counts.columns.name = None
    print_frame(counts.fillna(0).astype(int), index=True)
    print()
    for name in COMPOSITION_NAMES:
        _status(f"auditing {name}")
        report = audit_splits(compose(name, args.data_root, seed=args.seed))
        print(f"{name}: {report.summary()}")
    report = audit_splits(splits, progress=True)
    print(f"all sources: {report.summary()}")
    if args.show_near and len(report.near_across):
        print_frame(report.near_across)
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.data.download import run_download

    return run_download(args)


def add_download_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``data download SOURCE|all --data-root PATH [--archive PATH] ...`` (``--root``, the
    option's earlier name, still works)."""
    parser.description = ("Download the original public sources and build the data layout "
                          "(<root>/<source>/manifest.csv, images/, masks/).")
    parser.add_argument("source", choices=[*SOURCE_NAMES, "all"], metavar="SOURCE",
                        help=f"one of {', '.join(SOURCE_NAMES)}, or all")
    parser.add_argument("--data-root", "--root", dest="root", required=True, type=Path, metavar="PATH",
                        help="data root to write <root>/<source>/ into (--root: the same)")
    parser.add_argument("--archive", action="append", default=[], type=Path, metavar="PATH",
                        help="a pre-downloaded archive, file or folder to use instead of downloading "
                        "(repeatable); required for parts behind a login (Kaggle: RSNA labels, "
                        "Shenzhen masks)")
    parser.add_argument("--force", action="store_true", help="rebuild sources that already exist")
    parser.add_argument("--keep-raw", action="store_true", help="keep downloads and extracted files in <root>/.raw/")
    parser.add_argument("--ids-from", type=Path, metavar="MANIFEST",
                        help="build only the image ids listed in this manifest.csv (e.g. a reference copy)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=_cmd_download)
    return parser


def register_cli(subparsers) -> None:
    """Add the ``data`` command group."""
    data = subparsers.add_parser("data", help="inspect, compose, audit and download the sources",
                                 description="Inspect, compose, audit and download the data sources.")
    sub = data.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        p.add_argument("--data-root", default=None, metavar="PATH",
                       help="data root (default: $COVID_LIB_DATA, else ../shared/data beside the repository)")
        p.set_defaults(func=func)
        return p

    add("summary", _cmd_summary, "per source: images, patients, labels, views, masks and every exclusion")
    p = add("compose", _cmd_compose, "a composition of Table I with its split counts beside the paper's")
    p.add_argument("name", choices=[*COMPOSITION_NAMES, "all"], metavar="NAME",
                   help=f"one of {', '.join(COMPOSITION_NAMES)}, or all")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient-level split and the balancing (default 0)")
    p.add_argument("--stand-ins", action="store_true", help="also print which public rows stand in for each set")
    p.add_argument("--csv", type=Path, default=None, metavar="PATH",
                   help="also write which image is in which split (composition, source, image_id, patient, "
                   "set, split, label; one row per image and composition) to this CSV")
    p = add("audit", _cmd_audit, "leakage and duplicate audit of the splits and every composition")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient-level split (default 0)")
    p.add_argument("--show-near", action="store_true", help="list near duplicates across splits")
    add_download_arguments(sub.add_parser("download", help="fetch the original public sources into the data layout"))
