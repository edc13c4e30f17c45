"""The generated tables of ``book/reproduce.md`` (profiles, chapter parameters, recorded runtimes,
training records), of ``book/verdicts.md`` (the verdict each published chapter displayed) and of
``book/summary.md`` (the paper's claims, from :data:`covid_lib.analysis.verdicts.CLAIMS`, and the
verdicts in plain words, :mod:`covid_lib.report.plain`).

A page holds blocks ``<!-- BEGIN generated:NAME ... -->`` ... ``<!-- END generated:NAME -->``;
:func:`render_page` regenerates them from :data:`covid_lib.profiles.PROFILES`, the chapters'
``parameters`` cells and the committed chapters' provenance records.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

from covid_lib.book.chapters import list_chapters, parameter_defaults, read_record
from covid_lib.paths import REPO_ROOT
from covid_lib.profiles import PROFILES

REPRODUCE_PAGE = REPO_ROOT / "book" / "reproduce.md"
VERDICTS_PAGE = REPO_ROOT / "book" / "verdicts.md"
SUMMARY_PAGE = REPO_ROOT / "book" / "summary.md"
PROTOCOL_PAGE = REPO_ROOT / "book" / "protocol.md"


_PROFILE_ROWS = (
    ("input_size", "input (crop) side, px"), ("resize_size", "resize side, px"),
    ("epochs", "max epochs"), ("batch_size", "batch size"), ("optimizer", "optimiser"),
    ("lr", "learning rate (peak for one-cycle)"), ("weight_decay", "weight decay"), ("schedule", "schedule"),
    ("warmup", "one-cycle warm-up share"), ("lr_patience", "LR plateau patience"),
    ("early_stopping", "early stopping patience"), ("loss", "loss"), ("focal_gamma", "focal gamma"),
    ("precision", "precision"), ("seeds", "seeds (seeds grid)"), ("max_images", "images per source and split"),
    ("threads", "CPU threads"), ("deterministic", "deterministic cuDNN"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def profiles_table() -> str:
    """A Markdown table of every profile's settings, generated from :data:`PROFILES`."""
    names = list(PROFILES)
    lines = ["| setting | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for key, label in _PROFILE_ROWS:
        values = []
        for n in names:
            v = getattr(PROFILES[n], key)
            values.append("all" if key == "max_images" and v is None else
                          "none" if key == "early_stopping" and v is None else _cell(v))
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def runtimes_table(output_dir: str | os.PathLike | None = None) -> str:
    """A Markdown table of the committed chapters' recorded profile, device, wall time and commit."""
    lines = ["| chapter | profile | device | CPUs | wall time | torch | commit |", "|---|---|---|---|---|---|---|"]
    for chapter in list_chapters():
        path = chapter.output(output_dir)
        if not path.is_file():
            lines.append(f"| {chapter.stem} | not executed | | | | | |")
            continue
        rec = read_record(path)
        env = rec.get("environment", {})
        git = rec.get("git", {})
        commit = (git.get("commit") or "?")[:7] + (" (dirty)" if git.get("dirty") else "")
        device = env.get("gpu") or env.get("device", "?")
        wall = rec.get("wall_time_s")
        wall_s = "?" if wall is None else (f"{wall:.0f} s" if wall < 120 else f"{wall / 60:.1f} min")
        lines.append(f"| {chapter.stem} | `{rec.get('profile', '?')}` | {device} | {env.get('cpu_count', '?')} "
                     f"| {wall_s} | {env.get('torch', '?')} | {commit} |")
    return "\n".join(lines)


def parameters_table() -> str:
    """A Markdown table of every chapter's parameters and their defaults, read from the sources."""
    lines = ["| chapter | parameter | default |", "|---|---|---|"]
    for chapter in list_chapters():
        for name, value in parameter_defaults(chapter.source).items():
            lines.append(f"| {chapter.stem} | `{name}` | `{value!r}` |")
    return "\n".join(lines)


BENCH_TABLE = REPO_ROOT / "bench" / "results" / "bench_train.md"


def bench_table() -> str:
    """The training-speed table written by ``bench/bench_train.py``."""
    if not BENCH_TABLE.is_file():
        return "_Not measured yet: run `python bench/bench_train.py`._"
    return BENCH_TABLE.read_text().strip()


def pretraining_records_table() -> str:
    """The ``cpu`` pre-training records: test AUC and accuracy with intervals (issue 8's gates)."""
    from covid_lib.report import training as rt

    return rt.markdown(rt.pretraining_table(rt.record_index()))


def pretraining_gain_table() -> str:
    """ResNet-18 pre-trained on each source then fine-tuned, against from scratch, per composition."""
    from covid_lib.report import training as rt
    from covid_lib.metrics import format_estimate

    index, rows = rt.record_index(), []
    for composition in ("CORDA", "CORDA&ChestXRay", "CORDA&RSNA", "CORDA&COVID-ChestXRay", "COVID-ChestXRay"):
        for source in ("kermany", "nih"):
            g = rt.pretraining_gain(index, composition=composition, pretrain=source)
            if g is None:
                continue
            flag = lambda dnl: " (did not learn)" if dnl else ""  # noqa: E731
            rows.append({"composition = test set": composition, "pre-training": source,
                         "images / patients": f"{g['n_images']} / {g['n_patients']}",
                         "AUC pre-trained": f"{g['auc_pretrained']:.3f}{flag(g['pretrained_did_not_learn'])}",
                         "AUC scratch": f"{g['auc_scratch']:.3f}{flag(g['scratch_did_not_learn'])}",
                         "difference [patient-cluster 95% CI]": format_estimate(g["difference"],
                                                                                *g["difference_cluster_ci"], 3),
                         "paired DeLong p": f"{g['delong_p']:.3g}"})
    import pandas as pd

    return rt.markdown(pd.DataFrame(rows))


def precision_records_table() -> str:
    """The ``precision`` grid: CORDA&ChestXRay test AUC of 3 seeds in fp32 and in bf16."""
    from covid_lib.report import training as rt

    table = rt.precision_table(rt.record_index(), composition="CORDA&ChestXRay")
    if table.empty:
        return rt.markdown(table)
    summary = table.groupby("precision")["test AUC"].agg(["mean", "std"]).round(3)
    lines = [rt.markdown(table.assign(**{"test AUC": table["test AUC"].round(3),
                                         "train img/s": table["train img/s"].round(0)})), ""]
    lines += [f"- {p}: mean {r['mean']:.3f}, SD {r['std']:.3f} over {len(table[table['precision'] == p])} seeds"
              for p, r in summary.iterrows()]
    return "\n".join(lines)


def precision_control_table() -> str:
    """The precision control's arms (fp32 twins against their bf16 records), decided on the records."""
    from covid_lib.report.precision import summary_markdown

    return summary_markdown("cpu")


def twin_completed_c3_table() -> str:
    """C3 at the whole-set scale on the bf16 records and with the missing runs' fp32 twins filled in
    (:mod:`covid_lib.report.twin_fill`, deciding nothing), and how many runs were filled."""
    from covid_lib.report.twin_fill import twin_completed_c3, twin_completed_table

    reading = twin_completed_c3("cpu")
    n = len(reading["filled"])
    return (twin_completed_table(reading) + "\n\n" + (f"Filled: {n} of the {reading['missing']} missing fine-tunes "
            "(`bench/results/twin_completed_c3.md` names them)." if n else
            "Filled: none yet, as no twin of a missing run is recorded."))


def claims_list() -> str:
    """The paper's claims C1-C6 as a Markdown list, from :data:`covid_lib.analysis.verdicts.CLAIMS`."""
    from covid_lib.analysis.verdicts import CLAIMS

    return "\n".join(f"- **{claim}.** {statement}" for claim, statement in CLAIMS.items())


#: The grids whose compute the reproduce page totals: the first reproduction, then the grids at the
#: paper's pre-training scale (issue 17).
COMPUTE_GRIDS = ("table2", "seeds", "table3", "conv8", "ablation", "pretrain_full", "table2_full", "conv8_full",
                 "table3_full", "ablation_full", "resolution")


def compute_table() -> str:
    """Per grid: runs, recorded, missing, hours of compute and median training speed, from the
    records' ``timings.json``, and the estimated hours of the missing runs
    (:func:`covid_lib.grid.grid_compute`)."""
    from covid_lib.grid import grid_compute

    frame = grid_compute(COMPUTE_GRIDS, "cpu")
    lines = ["| grid | runs | recorded | missing | compute (h) | median train images/s | left (h, est.) |",
             "|---|---|---|---|---|---|---|"]
    for r in frame.to_dict("records"):
        cells = ["" if v is None or v != v else (f"{v:g}" if isinstance(v, float) else str(v))
                 for v in (r["runs"], r["recorded"], r["missing"], r["compute (h)"], r["median train images/s"])]
        left = r["left (h, est.)"] + (f" ({r['extrapolated']} extrapolated)" if r["extrapolated"] else "")
        lines.append(f"| `{r['grid']}` | " + " | ".join([*cells, left]) + " |")
    return "\n".join(lines)


GENERATED_BLOCKS = {"compute": compute_table, "profiles": profiles_table, "parameters": parameters_table, "runtimes": runtimes_table,
                    "bench": bench_table, "pretraining": pretraining_records_table,
                    "pretraining-gain": pretraining_gain_table, "precision": precision_records_table,
                    "precision-control": precision_control_table, "twin-completed-c3": twin_completed_c3_table}


def protocol_block() -> str:
    """The decision protocol (:mod:`covid_lib.analysis.protocol`), generated: its hash, constants and rules."""
    from covid_lib.analysis.protocol import protocol_markdown

    return protocol_markdown()


def judged_verdicts_block() -> str:
    """The verdicts judged under the protocol (``book/verdicts.json``), one row per claim."""
    from covid_lib.report.judge import verdicts_markdown

    return verdicts_markdown()


def power_block() -> str:
    """The power table judged with the verdicts (``book/verdicts.json``)."""
    from covid_lib.report.judge import power_markdown

    return power_markdown()


def collapse_sensitivity_block() -> str:
    """What the verdicts would be with the models collapsed at the threshold only kept
    (``book/verdicts.json``, :mod:`covid_lib.report.sensitivity`)."""
    from covid_lib.report.judge import read_verdicts
    from covid_lib.report.sensitivity import sensitivity_markdown

    return sensitivity_markdown(read_verdicts())


def plain_verdicts_block() -> str:
    """The verdicts in plain words for the clinicians' summary (``book/verdicts.json``)."""
    from covid_lib.report.plain import plain_verdicts_markdown

    return plain_verdicts_markdown()


def _block_re(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- BEGIN generated:{name} .*?-->\n)(.*?)(<!-- END generated:{name} -->)", re.S)


#: The generated blocks of each page.
PAGE_BLOCKS = {REPRODUCE_PAGE: GENERATED_BLOCKS, VERDICTS_PAGE: {"judged": judged_verdicts_block, "power": power_block,
                                                  "collapse-sensitivity": collapse_sensitivity_block},
               SUMMARY_PAGE: {"claims": claims_list, "plain-verdicts": plain_verdicts_block}, PROTOCOL_PAGE: {"protocol": protocol_block}}


def render_page(text: str, blocks: dict | None = None) -> str:
    """``text`` with every generated block (``<!-- BEGIN generated:NAME ... -->``) of ``blocks``
    (default: the reproduce page's) regenerated."""
    for name, make in (GENERATED_BLOCKS if blocks is None else blocks).items():
        text = _block_re(name).sub(lambda m, make=make: m[1] + make() + "\n" + m[3], text)
    return text


def sync_pages(page: str | os.PathLike | None = None) -> bool:
    """Regenerate the generated tables of ``page`` (default: every page of :data:`PAGE_BLOCKS`);
    return whether any changed."""
    changed = False
    for path, blocks in PAGE_BLOCKS.items():
        if page is not None and Path(page).resolve() != Path(path).resolve():
            continue
        target = Path(page) if page is not None else Path(path)
        if not target.is_file():
            continue
        old = target.read_text()
        new = render_page(old, blocks)
        if new != old:
            target.write_text(new)
            changed = True
    return changed


def pages_out_of_date(only: Iterable[Path] | None = None) -> list[Path]:
    """The pages of :data:`PAGE_BLOCKS` (or of them, those in ``only``) whose generated tables differ
    from what they would be now. Rendering the reproduce page reads every record (about 4 s)."""
    wanted = None if only is None else {Path(p).resolve() for p in only}
    return [p for p, blocks in PAGE_BLOCKS.items()
            if (wanted is None or p.resolve() in wanted) and p.is_file()
            and render_page(p.read_text(), blocks) != p.read_text()]
