"""The precision control's records and report (:mod:`covid_lib.analysis.precision`): a grid's bf16
runs beside their fp32 twins, and the markdown ``scripts/run_precision_control.py --report`` writes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from covid_lib.analysis.precision import MARGIN, PrecisionControl
from covid_lib.grid import grid_specs
from covid_lib.report.records import spec_records


@dataclass(frozen=True)
class Arm:
    """One arm of the control: the runs of ``grid`` that are twinned (all, or those with a
    pre-training in ``pretrains`` and a seed in ``seeds``, or those of the (pre-training, seed)
    groups in ``groups``), each fixed before its twins were trained."""

    grid: str
    description: str
    fixed: str
    pretrains: tuple[str | None, ...] | None = None
    seeds: tuple[int, ...] | None = None
    groups: tuple[tuple[str, int], ...] | None = None

    @staticmethod
    def group_of(spec) -> tuple[str | None, int]:
        """A run's (pre-training, seed): a pre-training's own data, a fine-tune's encoder (None: scratch)."""
        return (spec.composition if spec.task == "pretrain" else spec.pretrain), spec.seed

    def specs(self, profile: str = "cpu", data_root: str | os.PathLike | None = None) -> list:
        """The arm's bf16 runs (pre-trainings among them when the arm holds pre-trained fine-tunes)."""
        return [s for s in grid_specs(self.grid, profile, data_root=data_root)
                if (self.pretrains is None or self.group_of(s)[0] in self.pretrains)
                and (self.seeds is None or s.seed in self.seeds)
                and (self.groups is None or self.group_of(s) in self.groups)
                and s.effective_precision == "bf16"]


#: The control's arms, by name (``scripts/run_precision_control.py --arm NAME``).
ARMS = {
    "conv8": Arm("conv8_full", "every Conv8 run of `conv8_full`: 3 pre-trainings on the whole ChestXRay set and "
                 "30 fine-tunes (5 compositions x from scratch and pre-trained x seeds 0-2)", "2026-12-04, 21:12 UTC"),
    "resnet18": Arm("table2_full", "ResNet-18 from scratch in `table2_full`: 5 compositions x seeds 0-2 (15 runs). "
                    "Three of its twins, CORDA&ChestXRay seeds 0-2, are the `precision` grid's fp32 runs (the same "
                    "specs), recorded on 2026-12-02 (before records named their machine) and before the arm was fixed; "
                    "they count as the arm's, and the pairs table names each twin's machine where recorded",
                    "2026-12-04, 21:26 UTC", pretrains=(None,), seeds=(0, 1, 2)),
    "resnet50": Arm("table3_full", "ResNet-50 pre-trained on RSNA (nih) in `table3_full`, seed 0: the pre-training "
                    "and its 5 fine-tunes (the architecture of the runs `table3_full` misses; its other cells need "
                    "a whole-set pre-training of 1-2 hours in bf16)", "2026-12-04, 21:33 UTC", pretrains=("nih",),
                    seeds=(0,)),
    "resnet50_563": Arm("table3", "ResNet-50 pre-trained on the 563 ChestXRay images (kermany) in `table3`, seed 0: "
                        "the pre-training and its 5 fine-tunes (the only other ResNet-50 pre-training whose twin fits "
                        "in a session on 2 cores; its bf16 records predate records naming their machine, and its "
                        "CORDA record collapsed, so at most 4 pairs can be used)", "2026-12-05, 00:07 UTC",
                        pretrains=("kermany",), seeds=(0,)),
    "resnet50_missing": Arm("table3_full", "the 18 runs `table3_full` still misses in bf16: ResNet-50 pre-trained on "
                            "RSNA (nih), seeds 1 and 2, and on the whole ChestXRay set (kermany_full), seed 2 (3 "
                            "pre-trainings, 15 fine-tunes). Its pairs form only as the bf16 records land; until then "
                            "its twins feed the twin-completed reading of C3 (`covid_lib/report/twin_fill.py`), fixed "
                            "with it", "2026-12-05, 06:30 UTC",
                            groups=(("nih", 1), ("nih", 2), ("kermany_full", 2))),
}


def twin_specs(arm: str | Arm, profile: str = "cpu", data_root: str | os.PathLike | None = None) -> list:
    """The fp32 twins (``precision="fp32"``, other run ids) of an arm's runs, pre-trainings included."""
    arm = ARMS[arm] if isinstance(arm, str) else arm
    return [replace(s, precision="fp32") for s in arm.specs(profile, data_root)]


def precision_records(arm: str | Arm, profile: str = "cpu", *, data_root: str | os.PathLike | None = None,
                      results: str | os.PathLike | None = None) -> pd.DataFrame:
    """:func:`spec_records` of an arm's bf16 COVID runs and of their fp32 twins, with ``precision``
    the precision each run computed in (``bf16`` or ``fp32``)."""
    arm = ARMS[arm] if isinstance(arm, str) else arm
    bf16 = arm.specs(profile, data_root)
    twins = [replace(s, precision="fp32") for s in bf16]
    frames = []
    for precision, specs in (("bf16", bf16), ("fp32", twins)):
        frames.append(spec_records(specs, results).assign(precision=precision))
    return pd.concat(frames, ignore_index=True)


def with_twin_machines(cells: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """``cells`` (:attr:`ClaimEstimate.cells` of the control) with each fp32 twin's machine (CPU id
    and native bf16, from ``timings.json``) and the day it was recorded (``spec.json``)."""
    twins = records[records["precision"] == "fp32"].set_index(["arch", "pretrain", "composition", "seed"])
    machines, days = [], []
    for row in cells.to_dict("records"):
        path = twins.loc[(row["arch"], row["pretrain"], row["composition"], row["seed"]), "path"]
        runtime = json.loads((Path(path) / "timings.json").read_text()).get("runtime", {}).get("machine", {})
        bf16 = [f for f in ("avx512_bf16", "amx_bf16") if runtime.get(f)]
        machines.append(f"{runtime['cpu_id']} ({', '.join(bf16) if bf16 else 'no native bf16'})"
                        if runtime.get("cpu_id") else "not recorded")
        days.append(json.loads((Path(path) / "spec.json").read_text()).get("created", "")[:10])
    return cells.assign(**{"twin machine": machines, "twin recorded": days})


def threshold_kept(records: pd.DataFrame) -> PrecisionControl:
    """The control decided with the models collapsed at the threshold only kept (a post-hoc
    sensitivity reading, :func:`covid_lib.report.sensitivity.keep_threshold_collapsed`)."""
    from covid_lib.analysis.precision import estimate_precision
    from covid_lib.report.sensitivity import keep_threshold_collapsed

    return estimate_precision(keep_threshold_collapsed(records))


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.to_markdown(index=False, floatfmt=f".{digits}f")


def precision_markdown(control: PrecisionControl, *, arm: str | Arm, machine: str,
                       records: pd.DataFrame | None = None, kept: PrecisionControl | None = None) -> str:
    """The control as a page: the rule, the decision with its numbers, the pairs (each twin's machine
    when ``records``, :func:`precision_records`, are given), the noise floor and the statuses; with
    ``records``, the post-hoc reading ``kept`` (:func:`threshold_kept` of them when not given)."""
    arm = ARMS[arm] if isinstance(arm, str) else arm
    e = control.estimate
    cells = with_twin_machines(e.cells, records) if records is not None and len(e.cells) else e.cells.copy()
    lines = [
        f"# Precision control: fp32 twins of `{arm.grid}` against their bf16 records",
        "",
        f"The runs: {arm.description}. Fixed {arm.fixed}, before their twins were trained "
        "(`scripts/run_precision_control.py`); the rule is in `covid_lib/analysis/precision.py`. "
        "It decides no claim.",
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
    if records is not None:
        kept = kept if kept is not None else threshold_kept(records)
        k = kept.estimate
        lines += ["## Post hoc: the models collapsed at the threshold only kept", "",
                  "Written on 2026-12-05, after the outcome above was known; it decides nothing "
                  "(`covid_lib/report/sensitivity.py`). A model collapsed *at the threshold only* gives every "
                  "test image the same answer at 0.5, but its scores spread and still rank the images, which "
                  "is all an AUC reads. Kept, the pairs read:", "",
                  f"**{kept.outcome}** ({kept.reason}): " + ("no usable pair" if not k.n_used else
                  f"{k.estimate:+.3f} [{k.low:+.3f}, {k.high:+.3f}], MDE {kept.mde:.3f}") +
                  f"; {k.n_used} pairs used, {k.n_left_out} left out.", ""]
    if len(cells):
        cols = [c for c in ("arch", "pretrain", "composition", "seed", "auc_bf16", "auc_fp32", "estimate", "low",
                            "high", "twin machine", "twin recorded") if c in cells]
        lines += ["## Pairs used", "", _table(cells[cols]), ""]
    if len(e.left_out):
        lines += ["## Pairs left out", "", e.left_out.rename(columns={"status_a": "fp32 twin",
                                                                      "status_b": "bf16 record"}).to_markdown(index=False), ""]
    return "\n".join(lines)


def summary_markdown(profile: str = "cpu", *, data_root: str | os.PathLike | None = None) -> str:
    """One row per arm of :data:`ARMS`, decided on the records there are: pairs used and left out,
    the paired AUC difference with its interval and MDE, the outcome, the noise floor beside, and
    the post-hoc reading with the models collapsed at the threshold only kept (:func:`threshold_kept`)
    (``book/reproduce.md``, ``book sync``); below it, how often twin and record disagree on collapse
    (:func:`collapse_discordance`)."""
    from covid_lib.analysis.precision import estimate_precision

    rows, statuses = [], []
    for name, arm in ARMS.items():
        records = precision_records(arm, profile, data_root=data_root)
        control, kept = estimate_precision(records), threshold_kept(records)
        statuses.append(control.statuses)
        e, noise = control.estimate, control.noise.set_index("difference")["mean_abs_auc_diff"]
        reasons = e.left_out[["status_a", "status_b"]].apply(
            lambda r: next((k for k in ("missing", "did not learn", "collapsed") if any(str(x).startswith(k) for x in r)),
                           "other"), axis=1).value_counts().to_dict() if len(e.left_out) else {}
        left = f"{e.n_left_out}" + (f" ({', '.join(f'{n} {k}' for k, n in reasons.items())})" if reasons else "")
        diff = "–" if not e.n_used else f"{e.estimate:+.3f} [{e.low:+.3f}, {e.high:+.3f}]"
        rows.append({"arm": f"`{name}`", "grid": f"`{arm.grid}`", "pairs used": e.n_used, "left out": left,
                     "AUC(fp32) - AUC(bf16) [95% CI]": diff,
                     "MDE": "–" if control.mde != control.mde else f"{control.mde:.3f}",
                     "outcome": f"**{control.outcome}**",
                     "mean abs. diff: twins / two bf16 seeds": " / ".join(
                         "–" if v != v else f"{v:.3f}" for v in (noise.iloc[0], noise.iloc[1])),
                     "post hoc, threshold-collapsed kept": "–" if not kept.estimate.n_used else
                     f"{kept.outcome}: {kept.estimate.estimate:+.3f} [{kept.estimate.low:+.3f}, "
                     f"{kept.estimate.high:+.3f}], {kept.estimate.n_used} pairs"})
    d = collapse_discordance(statuses)
    line = ("" if not d["twin_only"] + d["record_only"] else
            f"\n\nPost hoc, deciding nothing: over every arm, a twin collapsed where its bf16 record did not in "
            f"{d['twin_only']} pairs, and the bf16 record where its twin did not in {d['record_only']} "
            f"(exact two-sided binomial test of both being equally likely: p = {d['p']:.2f}).")
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + line  # "0.020" stays as written


def collapse_discordance(statuses: list[pd.DataFrame]) -> dict:
    """Post hoc, deciding nothing: over the status tables of the arms (``PrecisionControl.statuses``,
    bf16 record in rows, fp32 twin in columns), the pairs where one model collapsed and the other
    did not (``done``): ``twin_only`` and ``record_only``, with the exact two-sided binomial test
    (:func:`scipy.stats.binomtest`) of both being equally likely (``p``; NaN without such a pair).

    Example:
        >>> t = pd.DataFrame({"collapsed": [4, 3], "done": [1, 6]}, index=["collapsed", "done"])
        >>> d = collapse_discordance([t]); (d["twin_only"], d["record_only"], round(d["p"], 3))
        (3, 1, 0.625)
    """
    from scipy.stats import binomtest

    def count(table: pd.DataFrame, bf16: str, fp32: str) -> int:
        return int(table.loc[bf16, fp32]) if bf16 in table.index and fp32 in table.columns else 0

    twin = sum(count(t, "done", "collapsed") for t in statuses)
    record = sum(count(t, "collapsed", "done") for t in statuses)
    p = binomtest(twin, twin + record, 0.5).pvalue if twin + record else float("nan")
    return {"twin_only": twin, "record_only": record, "p": float(p)}
