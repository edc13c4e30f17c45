"""The resolution check of issue 17: do the verdicts change at the paper's 224-px input?

The ``cpu`` recipe feeds the networks 128-px inputs; the paper feeds 224 px (Sec. III-B). Grid
``resolution`` retrains at 224 px the cells this check needs: ResNet-18 on CORDA and on
CORDA&ChestXRay, from scratch and fine-tuned from a ChestXRay pre-training on the whole set (itself
pre-trained at 224 px), seeds 0-2. Their 128-px twins are cells of ``table2_full``.

The check was written, in this file, before any 224-px run was recorded (:func:`fixed_at` dates it
by git, :func:`records_after` counts the records made after it), and it adds no decision rule:

- **The verdicts on these cells** (:func:`cell_verdicts`): C1's and C2's rules, unchanged
  (:mod:`covid_lib.analysis.protocol`), applied to the same cells at each size. C1: the gap of
  CORDA&ChestXRay's model minus the gap of CORDA's, per pre-training and seed (6 comparisons a
  size). C2: the model pre-trained on the whole ChestXRay set minus the model from scratch, on the
  own test set, per composition and seed (6 a size). A verdict *changes with the input size* when
  its outcome differs between the two sizes. These are verdicts on a subset of each claim's cells:
  the claims' own verdicts (every composition, five seeds) are on the verdicts page.
- **What the size does to each model** (:func:`size_effect`): AUC at 224 px minus AUC at 128 px on
  the model's own test set, per cell, paired on the same patients and pooled with a patient-cluster
  interval. Descriptive: no rule decides it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from covid_lib.analysis import claims as C
from covid_lib.analysis import protocol as P
from covid_lib.grid import COMPOSITION_ORDER, OTHER_SEEDS, RESOLUTION_SIZE, grid_specs
from covid_lib.paths import REPO_ROOT
from covid_lib.profiles import get_profile
from covid_lib.provenance import commit_times
from covid_lib.report.records import created_times, spec_records

#: The cells of the check (grid ``resolution``): compositions, pre-trainings and seeds.
COMPOSITIONS: tuple[str, ...] = COMPOSITION_ORDER[:2]
PRETRAINS: tuple[str, ...] = ("none", "kermany_full")
SEEDS: tuple[int, ...] = OTHER_SEEDS
#: The claims whose rules are applied to the cells at each size.
CLAIMS: tuple[str, ...] = ("C1", "C2")


def resolution_specs(profile: str = "cpu", data_root: str | os.PathLike | None = None, *,
                     data_version: str | None = None, pretrains: tuple[str, ...] = PRETRAINS,
                     precision: str | None = None) -> tuple[list, list]:
    """The check's fine-tunes: grid ``resolution``'s (224 px) and their twins in ``table2_full`` (the
    profile's input size), of the cells with a pre-training in ``pretrains``; with ``precision``,
    the twins at that precision (other run ids: the fp32 pilot's, ``scripts/run_resolution_pilot.py``)."""
    kw = {"data_root": data_root, "data_version": data_version}

    def cells(specs):
        return [replace(s, precision=precision) if precision else s for s in specs
                if s.task == "covid" and (s.pretrain or "none") in pretrains]

    high = cells(grid_specs("resolution", profile, **kw))
    low = cells(s for s in grid_specs("table2_full", profile, **kw)
                if s.arch == "resnet18" and s.composition in COMPOSITIONS and s.seed in SEEDS)
    return low, high


def resolution_records(profile: str = "cpu", data_root: str | os.PathLike | None = None,
                       results: str | os.PathLike | None = None, *, data_version: str | None = None,
                       pretrains: tuple[str, ...] = PRETRAINS, precision: str | None = None) -> pd.DataFrame:
    """The check's records (:func:`resolution_specs`), one row per cell and size
    (:func:`covid_lib.report.records.spec_records` with an ``input_size`` column).
    ``data_version``: as :func:`covid_lib.grid.grid_specs`."""
    low, high = resolution_specs(profile, data_root, data_version=data_version, pretrains=pretrains,
                                 precision=precision)
    return pd.concat([spec_records(low, results).assign(input_size=get_profile(profile).input_size),
                      spec_records(high, results).assign(input_size=RESOLUTION_SIZE)], ignore_index=True)


def pilot_records(profile: str = "cpu", data_root: str | os.PathLike | None = None,
                  results: str | os.PathLike | None = None) -> pd.DataFrame:
    """The fp32 pilot's records (``scripts/run_resolution_pilot.py``): the fp32 twins of the check's
    from-scratch cells at both sizes (those at the profile's size trained by the precision control)."""
    return resolution_records(profile, data_root, results, pretrains=("none",), precision="fp32")


def _estimate(claim: str, records: pd.DataFrame, pretrains: tuple[str, ...] = PRETRAINS) -> C.ClaimEstimate:
    if claim == "C1":
        return C.estimate_c1(records, pretrains=pretrains, seeds=SEEDS, augmented=COMPOSITIONS[1:])
    if claim == "C2":
        return C.estimate_c2(records, pretrains=pretrains[1:], compositions=COMPOSITIONS, seeds=SEEDS)
    raise KeyError(f"the resolution check applies {', '.join(CLAIMS)}, not {claim!r}")


def cell_verdicts(records: pd.DataFrame, *, pretrains: tuple[str, ...] = PRETRAINS) -> pd.DataFrame:
    """Per claim of :data:`CLAIMS` and input size: the claim's rule applied to the check's cells at
    that size (estimate, interval, MDE, comparisons used, left out and among them missing, outcome),
    and whether the outcome differs between the sizes (``changes``, on each row of the claim: None
    while a comparison at either size has no record, since its outcome is not final).
    ``pretrains``: the cells' pre-trainings (C2 needs one besides ``none``; the fp32 pilot has none)."""
    rows = []
    for claim in (c for c in CLAIMS if c != "C2" or len(pretrains) > 1):
        for size in sorted(records["input_size"].unique()):
            est = _estimate(claim, records[records["input_size"] == size], pretrains)
            d = est.decision(P.rule(claim))
            left = est.left_out
            missing = int(((left["status_a"] == "missing") | (left["status_b"] == "missing")).sum()) if len(left) else 0
            rows.append({"claim": claim, "input_size": int(size), "estimate": d.estimate, "low": d.low, "high": d.high,
                         "mde": d.mde, "n_used": d.n_used, "n_left_out": d.n_left_out, "n_missing": missing,
                         "outcome": d.outcome, "reason": d.reason})
    out = pd.DataFrame(rows)
    if not out.empty:
        final = out.groupby("claim")["n_missing"].transform("sum") == 0
        differs = out.groupby("claim")["outcome"].transform(lambda o: o.nunique() > 1)
        out["changes"] = [bool(d) if f else None for d, f in zip(differs, final)]
    return out


def size_effect(records: pd.DataFrame, *, pretrains: tuple[str, ...] = PRETRAINS) -> C.ClaimEstimate:
    """AUC at 224 px minus AUC at the profile's size, on the own test set, per cell of the check
    (:func:`covid_lib.analysis.claims.paired_own_test`: same patients, one set of joint draws)."""
    sizes = sorted(records["input_size"].unique())
    if len(sizes) != 2:
        raise ValueError(f"the size effect needs records at two input sizes, got {sizes}")
    low, high = (int(s) for s in sizes)
    pairs = [({"composition": comp, "pretrain": p, "seed": s},
              {"composition": comp, "pretrain": p, "seed": s, "input_size": high},
              {"composition": comp, "pretrain": p, "seed": s, "input_size": low})
             for comp in COMPOSITIONS for p in pretrains for s in SEEDS]
    return C.paired_own_test(records, pairs, claim="resolution", names=(f"auc_{high}", f"auc_{low}"))


def fixed_at() -> str | None:
    """ISO time of the commit that added this file (when the check was fixed); None outside git."""
    try:
        rel = str(Path(__file__).relative_to(REPO_ROOT))
    except ValueError:  # installed outside the repository
        return None
    times = commit_times("--diff-filter=A", "--follow", "--", rel)
    return times[-1] if times else None


def records_after(records: pd.DataFrame, when: str | None) -> tuple[int, int]:
    """How many of the 224-px records (rows at :data:`covid_lib.grid.RESOLUTION_SIZE`) were made
    at or after ``when``, and how many there are (both times UTC ISO; ``when`` None counts 0)."""
    created = created_times(records[records["input_size"] == RESOLUTION_SIZE])
    if not when:
        return 0, len(created)
    utc = pd.Timestamp(when).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S")
    return sum(t[:19] >= utc for t in created), len(created)


def verdict_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """:func:`cell_verdicts` for the page: one row per claim, the two sizes side by side."""
    rows = []
    for claim, part in verdicts.groupby("claim", sort=False):
        row = {"claim": claim}
        for r in part.to_dict("records"):
            px = f"{r['input_size']} px"
            row[f"{px}: estimate [95% CI]"] = (f"{r['estimate']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]"
                                              if r["estimate"] == r["estimate"] else "–")
            row[f"{px}: used / left out"] = f"{r['n_used']} / {r['n_left_out']}" + (
                f" ({r['n_missing']} not recorded yet)" if r["n_missing"] else "")
            row[f"{px}: outcome"] = r["outcome"]
        change = part["changes"].iloc[0]
        row["outcome changes with the size"] = "not yet: runs missing" if change is None else "yes" if change else "no"
        rows.append(row)
    return pd.DataFrame(rows)


def plot_size_effect(effect: C.ClaimEstimate, *, row_height: float = 0.32) -> Figure:
    """Own-test AUC of each cell at both sizes (a line from 128 to 224 px), with the pooled
    difference and its interval in the title; cells left out are listed under the axis."""
    import matplotlib.pyplot as plt

    cells = effect.cells
    a_col, b_col = (c for c in cells.columns if c.startswith("auc_")) if not cells.empty else ("auc_224", "auc_128")
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + row_height * max(len(cells), 1)))
    for i, r in enumerate(cells.to_dict("records")):
        ax.plot([r[b_col], r[a_col]], [i, i], color="0.6", lw=1.5, zorder=1)
        ax.scatter([r[b_col]], [i], color="tab:blue", s=22, zorder=2, label=f"{b_col[4:]} px" if i == 0 else None)
        ax.scatter([r[a_col]], [i], color="tab:orange", s=22, zorder=2, label=f"{a_col[4:]} px" if i == 0 else None)
    ax.set_yticks(range(len(cells)))
    ax.set_yticklabels([f"{r['composition']}, {r['pretrain']}, seed {r['seed']}" for r in cells.to_dict("records")],
                       fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("AUC on the model's own test set")
    ax.grid(axis="x", alpha=0.3)
    if len(cells):
        ax.legend(fontsize=8, loc="lower left")
    title = "AUC at each input size"
    if effect.estimate == effect.estimate:
        title += f": 224 minus 128 px {effect.estimate:+.3f} [{effect.low:+.3f}, {effect.high:+.3f}]"
    ax.set_title(title, fontsize=9)
    if len(effect.left_out):
        left = "; ".join(f"{r['composition']} {r['pretrain']} s{r['seed']} ({r['status_a']} / {r['status_b']})"
                         for r in effect.left_out.to_dict("records"))
        fig.text(0.01, 0.005, f"left out (224 / 128 px): {left}", fontsize=7, wrap=True)
    fig.tight_layout()
    return fig


def summary(verdicts: pd.DataFrame, effect: C.ClaimEstimate) -> str:
    """One sentence a reader can take away: which verdicts change with the input size, and the
    pooled AUC difference (NaN-safe: says what is missing)."""
    if verdicts.empty or verdicts["n_used"].sum() == 0:
        return "No comparison of the check is usable yet at either size."
    pending = sorted(verdicts.loc[verdicts["changes"].isna(), "claim"].unique())
    changed = sorted(verdicts.loc[verdicts["changes"].eq(True), "claim"].unique())
    kept = sorted(verdicts.loc[verdicts["changes"].eq(False), "claim"].unique())
    parts = ([f"the outcome of {', '.join(changed)} on these cells changes with the input size"] if changed else []) + \
            ([f"that of {', '.join(kept)} does not" if changed else
              f"no verdict on these cells changes with the input size ({', '.join(kept)})"] if kept else []) + \
            ([f"{', '.join(pending)} cannot be compared yet (runs not recorded)"] if pending else [])
    verdict = "; ".join(parts)
    verdict = verdict[0].upper() + verdict[1:]
    if np.isnan(effect.estimate):
        return f"{verdict}; no cell has a usable model at both sizes."
    return (f"{verdict}; 224 px minus 128 px, own-test AUC, pooled over {effect.n_used} cells: "
            f"{effect.estimate:+.3f} [{effect.low:+.3f}, {effect.high:+.3f}] ({effect.n_left_out} cells left out).")


def pilot_markdown(records: pd.DataFrame) -> str:
    """The fp32 pilot as a page (``bench/results/resolution_pilot.md``): what it is, the size effect
    and C1's rule at each size on the from-scratch cells, each under the protocol's collapse rule
    and, beside, with the models collapsed at the threshold only kept
    (:func:`covid_lib.report.sensitivity.keep_threshold_collapsed`). It decides nothing."""
    from covid_lib.report.sensitivity import keep_threshold_collapsed

    lines = ["# The resolution check's fp32 pilot: from-scratch ResNet-18 at 224 against 128 px", "",
             "Fixed before its runs were trained (`scripts/run_resolution_pilot.py`). Both sizes are fp32 twins "
             "(the check itself is bf16 and has no record yet), trained on CPUs without native bf16; the 128-px "
             "models are the precision control's. From scratch only: CORDA and CORDA&ChestXRay, seeds 0-2. "
             "It decides nothing.", ""]
    for title, recs in (("The protocol's collapse rule", records),
                        ("Post hoc: the models collapsed at the threshold only kept", keep_threshold_collapsed(records))):
        effect, verdicts = size_effect(recs, pretrains=("none",)), cell_verdicts(recs, pretrains=("none",))
        lines += [f"## {title}", "", summary(verdicts, effect), "", verdict_table(verdicts).to_markdown(index=False), ""]
        cells = effect.cells
        if len(cells):
            cols = [c for c in ("composition", "seed", "auc_128", "auc_224", "estimate", "low", "high") if c in cells]
            lines += ["Per cell (own-test AUC at each size, and 224 minus 128 px):", "",
                      cells[cols].to_markdown(index=False, floatfmt=".3f"), ""]
        if len(effect.left_out):
            lines += ["Cells left out (224 px / 128 px):", "",
                      effect.left_out.rename(columns={"status_a": "224 px", "status_b": "128 px"}).to_markdown(index=False), ""]
    return "\n".join(lines)
