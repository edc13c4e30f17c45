"""``python -m covid_lib data ...``: summary, compose, audit, download."""

from __future__ import annotations

import argparse

import pandas as pd

from covid_lib.data.compose import COMPOSITIONS, compose, global_splits, stand_in_table, table_one, table_one_wide
from covid_lib.data.sources import data_version, summary_table
from covid_lib.data.splits import SPLITS, audit_splits
from covid_lib.paths import resolve_data_root


def _print_frame(df: pd.DataFrame) -> None:
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_colwidth", 90):
        print(df.to_string(index=False))


def _cmd_summary(args: argparse.Namespace) -> int:
    root = resolve_data_root(args.data_root)
    table, exclusions = summary_table(root)
    print(f"data root: {root} (version {data_version(root)})\n")
    _print_frame(table)
    print("\nexclusions:" if len(exclusions) else "\nexclusions: none")
    if len(exclusions):
        reasons = exclusions.groupby(["source", "reason"]).size().rename("images").reset_index()
        _print_frame(reasons)
    return 0


def _cmd_compose(args: argparse.Namespace) -> int:
    names = list(COMPOSITIONS) if args.name == "all" else [args.name]
    long = table_one(args.data_root, seed=args.seed)
    for name in names:
        composed = compose(name, args.data_root, seed=args.seed)
        print(f"{name} (seed {args.seed}): {len(composed)} images, "
              f"{composed['patient_id'].nunique()} patients")
    print("\nTable I analog, ours (paper):")
    wide = table_one_wide(long[long["composition"].isin(names)])
    with pd.option_context("display.width", 250, "display.max_columns", 50):
        print(wide.to_string())
    if args.stand_ins:
        print()
        _print_frame(stand_in_table())
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    splits = global_splits(args.data_root, seed=args.seed)
    counts = splits.groupby(["source", "split"]).size().unstack().reindex(columns=list(SPLITS))
    print(counts.to_string(), "\n")
    for name in COMPOSITIONS:
        report = audit_splits(compose(name, args.data_root, seed=args.seed))
        print(f"{name}: {report.summary()}")
    report = audit_splits(splits)
    print(f"all sources: {report.summary()}")
    if args.show_near and len(report.near_across):
        _print_frame(report.near_across)
    return 0


def register_cli(subparsers) -> None:
    """Add the ``data`` command group."""
    data = subparsers.add_parser("data", help="inspect, compose, audit and download the sources")
    sub = data.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--data-root", default=None, help="data root (default: $COVID_LIB_DATA, ../shared/data)")
        p.set_defaults(func=func)
        return p

    add("summary", _cmd_summary, "per source: images, patients, labels, views, exclusions")
    p = add("compose", _cmd_compose, "a composition of Table I with its split counts beside the paper's")
    p.add_argument("name", choices=[*COMPOSITIONS, "all"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stand-ins", action="store_true", help="also print the stand-in mapping")
    p = add("audit", _cmd_audit, "leakage and duplicate audit of the splits and every composition")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show-near", action="store_true", help="list near duplicates across splits")
    _register_download(sub)


def _register_download(sub) -> None:
    from covid_lib.data import download

    p = sub.add_parser("download", help="fetch the original public sources into the data layout")
    download.add_download_arguments(p)
    p.set_defaults(func=download.run_download)
