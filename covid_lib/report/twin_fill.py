"""C3 at the whole-set scale read with its missing bf16 runs' fp32 twins (issue 17): would the
runs that this machine cannot compute in bf16 move C3 if it computed them in fp32?

Fixed on 2026-12-05 at 06:30 UTC, in the commit that adds this module and the precision control's
arm ``resnet50_missing`` (:data:`covid_lib.report.precision.ARMS`), before any of those twins was
trained:

- **Records:** the whole-set scale's records as :func:`covid_lib.report.judge.judge_c3` reads them,
  with every run of ``table3_full`` that has no bf16 record replaced by its fp32 twin's record where
  there is one (:func:`fill_missing_with_twins`). A twin that did not learn or collapsed counts
  as a record with that status does: its comparison is left out.
- **Estimand, test and rule:** C3's, unchanged (the protocol of ``covid_lib/analysis/protocol.py``):
  ResNet-50 and Conv8 each against ResNet-18, combined as the verdict combines them.
- **Reported beside it:** the runs filled and their statuses, the verdict on the bf16 records alone,
  and the precision control's ResNet-50 arms, which found twins scoring below their bf16 records
  (on 2 and 3 usable pairs): a twin may pull ResNet-50's side of C3 down.
- **What it decides:** nothing. C3's verdict stays the one on bf16 records. This reading says
  whether the missing cells, as a CPU without native bf16 produces them, would move C3; a later
  protocol may adopt it only if the ResNet-50 precision control then reads *negligible*.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd

from covid_lib.grid import grid_specs
from covid_lib.report.judge import judge_c3
from covid_lib.runs import LEARNED, Record, RunSpec

#: The grid whose missing bf16 runs the reading fills (the only grid C3 reads that misses runs).
GRID = "table3_full"


def missing_runs(grid: str = GRID, profile: str = "cpu", *, data_root: str | os.PathLike | None = None,
                 results: str | os.PathLike | None = None) -> list[RunSpec]:
    """``grid``'s bf16 COVID runs (fine-tunes) that have no record."""
    return [s for s in grid_specs(grid, profile, data_root=data_root)
            if s.task == "covid" and s.effective_precision == "bf16" and not Record.of(s, results=results).recorded]


def twin_records(missing: list[RunSpec], results: str | os.PathLike | None = None) -> dict[str, Record]:
    """The fp32 twins' records of the bf16 runs ``missing`` (:func:`missing_runs`), by the bf16 run
    id (only twins recorded, whatever their status)."""
    twins = {s.run_id: Record.of(replace(s, precision="fp32"), results=results) for s in missing}
    return {k: t for k, t in twins.items() if t.recorded}


def fill_missing_with_twins(records: pd.DataFrame, twins: dict[str, Record]) -> pd.DataFrame:
    """``records`` (:func:`covid_lib.report.records.spec_records`) with each row whose run is
    ``missing`` and has a twin in ``twins`` (:func:`twin_records`) taking the twin's run id, status,
    precision and record folder; ``twin_of`` names the bf16 run a row stands in for (None elsewhere).

    Example:
        >>> from covid_lib.report.records import spec_records
        >>> fill_missing_with_twins(spec_records([]), {}).columns.tolist()[-1]
        'twin_of'
    """
    out = records.copy()
    out["twin_of"] = None
    for i, row in out.iterrows():
        twin = twins.get(row["run_id"])
        if row["status"] != "missing" or twin is None:
            continue
        status = twin.status
        out.loc[i, ["run_id", "status", "precision", "path", "twin_of"]] = [
            twin.run_id, status, "fp32", twin.path if status in LEARNED else None, row["run_id"]]
    return out


def twin_completed_c3(profile: str = "cpu", *, data_root: str | os.PathLike | None = None) -> dict:
    """C3 at the whole-set scale on the bf16 records alone (``bf16``) and with the missing runs
    filled by their twins (``twin_completed``), the runs filled (``filled``: bf16 run id, twin run
    id, twin status) and how many fine-tunes the grid misses (``missing``)."""
    missing = missing_runs(profile=profile, data_root=data_root)
    twins = twin_records(missing)
    filled = [{"bf16_run": k, "twin_run": t.run_id, "twin_status": t.status} for k, t in sorted(twins.items())]
    return {"bf16": judge_c3("full", profile=profile, data_root=data_root),
            "twin_completed": judge_c3("full", profile=profile, data_root=data_root,
                                       relabel=lambda r: fill_missing_with_twins(r, twins)),
            "filled": filled, "missing": len(missing)}


def _row(reading: str, part: str, e: dict) -> dict:
    ci = "–" if e["n_used"] == 0 else f"{e['estimate']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}]"
    return {"records": reading, "contrast": part, "AUC difference [95% CI]": ci,
            "MDE": "–" if e["mde"] != e["mde"] else f"{e['mde']:.3f}", "used": e["n_used"],
            "left out": e["n_left_out"], "outcome": f"**{e['outcome']}**"}


def twin_completed_table(reading: dict) -> str:
    """Both readings of :func:`twin_completed_c3`, part by part (ResNet-50 and Conv8 against
    ResNet-18, and C3 combined), as a Markdown table."""
    rows = []
    for name, key in (("bf16 records (the verdict)", "bf16"), ("missing runs filled by fp32 twins", "twin_completed")):
        e = reading[key]
        for part, p in e["details"].get("parts", {}).items():
            rows.append(_row(name, f"{part} - ResNet-18", p))
        rows.append(_row(name, "C3 (combined)", e))
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def twin_completed_markdown(reading: dict) -> str:
    """:func:`twin_completed_c3`'s reading as a page: the rule, both readings (:func:`twin_completed_table`)
    and the runs filled."""
    t = reading["twin_completed"]
    lines = [
        "# C3 at the whole-set scale, read with the missing runs' fp32 twins",
        "",
        "Fixed on 2026-12-05 at 06:30 UTC, before any of these twins was trained "
        "(`covid_lib/report/twin_fill.py`, `scripts/run_precision_control.py --arm resnet50_missing`). "
        "Each run of `table3_full` without a bf16 record is replaced by its fp32 twin where one is recorded; "
        "C3's estimand, test and rule are unchanged. **It decides nothing:** C3's verdict is the first reading. "
        "The precision control's ResNet-50 arms found twins scoring below their bf16 records (`book/reproduce.md`), "
        "so a twin may pull ResNet-50's side down.",
        "",
        twin_completed_table(reading),
        "",
        f"Left out, twin-completed: {t['left_out_reasons'] or 'none'}; bf16 records: "
        f"{reading['bf16']['left_out_reasons'] or 'none'}.",
        "",
        f"## Runs filled ({len(reading['filled'])} of the {reading['missing']} missing fine-tunes)",
        "",
    ]
    if reading["filled"]:
        lines.append(pd.DataFrame(reading["filled"]).rename(columns={
            "bf16_run": "missing bf16 run", "twin_run": "its fp32 twin", "twin_status": "twin's status"}
        ).to_markdown(index=False))
    else:
        lines.append("None yet: no twin of a missing run is recorded.")
    return "\n".join(lines) + "\n"
