"""The precision control's records and report (:mod:`covid_lib.analysis.precision`): a grid's bf16
runs beside their fp32 twins, and the markdown ``scripts/run_precision_control.py --report`` writes."""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd

from covid_lib.analysis.precision import MARGIN, PrecisionControl
from covid_lib.grid import grid_specs
from covid_lib.report.records import spec_records


def twin_specs(grid: str, profile: str = "cpu", data_root: str | os.PathLike | None = None) -> list:
    """The fp32 twins (``precision="fp32"``, other run ids) of ``grid``'s runs, pre-trainings included."""
    return [replace(s, precision="fp32") for s in grid_specs(grid, profile, data_root=data_root)]


def precision_records(grid: str, profile: str = "cpu", *, data_root: str | os.PathLike | None = None,
                      results: str | os.PathLike | None = None) -> pd.DataFrame:
    """:func:`spec_records` of ``grid``'s bf16 COVID runs and of their fp32 twins, with ``precision``
    the precision each run computed in (``bf16`` or ``fp32``)."""
    bf16 = [s for s in grid_specs(grid, profile, data_root=data_root) if s.effective_precision == "bf16"]
    twins = [replace(s, precision="fp32") for s in bf16]
    frames = []
    for precision, specs in (("bf16", bf16), ("fp32", twins)):
        frames.append(spec_records(specs, results).assign(precision=precision))
    return pd.concat(frames, ignore_index=True)


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.to_markdown(index=False, floatfmt=f".{digits}f")


def precision_markdown(control: PrecisionControl, *, grid: str, machine: str) -> str:
    """The control as a page: the rule, the decision with its numbers, the pairs, the noise floor
    and the statuses' agreement."""
    e = control.estimate
    cells = e.cells.copy()
    lines = [
        f"# Precision control: fp32 twins of `{grid}` against their bf16 records",
        "",
        "Fixed before the twins were trained (`scripts/run_precision_control.py`, first commit 2026-12-04); "
        "the rule is in `covid_lib/analysis/precision.py`. It decides no claim.",
        "",
        "- **Estimand:** mean over pairs of AUC(fp32 twin) - AUC(bf16 record) on the composition's own test set; "
        "paired patient-cluster bootstrap (2000 replicates, seed 0).",
        f"- **Rule:** *negligible* when the 95% interval lies inside +-{MARGIN:.2f} (C3's margin), *matters* when "
        "wholly outside, *inconclusive* otherwise or with fewer than 3 usable pairs or more than half left out.",
        f"- **Twins trained on:** {machine}. The bf16 records were trained on CPUs with native bf16: "
        "precision and machine differ together.",
        "",
        f"**{control.outcome}** ({control.reason}): {e.estimate:+.3f} [{e.low:+.3f}, {e.high:+.3f}], "
        f"MDE {control.mde:.3f}; {e.n_used} pairs used, {e.n_left_out} left out; {e.n_patients} test patients.",
        "",
        "## What another seed changes (the noise floor)",
        "",
        _table(control.noise),
        "",
        "## Statuses: bf16 record (rows) against fp32 twin (columns), one count per cell",
        "",
        control.statuses.reset_index().rename(columns={"bf16": "bf16 \\ fp32"}).to_markdown(index=False),
        "",
    ]
    if len(cells):
        cols = [c for c in ("arch", "pretrain", "composition", "seed", "auc_bf16", "auc_fp32", "estimate", "low",
                            "high") if c in cells]
        lines += ["## Pairs used", "", _table(cells[cols]), ""]
    if len(e.left_out):
        lines += ["## Pairs left out", "", e.left_out.rename(columns={"status_a": "fp32 twin",
                                                                      "status_b": "bf16 record"}).to_markdown(index=False), ""]
    return "\n".join(lines)
