"""How much the verdicts rest on the collapse rule: a sensitivity reading that decides nothing.

The protocol (:mod:`covid_lib.analysis.protocol`) leaves out a model whose own-test scores all fall
on one side of the threshold 0.5, or whose 5-95% score range is under 0.001
(:func:`covid_lib.metrics.collapse_status`). The second reason means the scores carry no ranking.
The first does not: a model that scores every test image between 0.73 and 0.99 answers "COVID+"
for all of them at 0.5 (its balanced accuracy is 0.5), yet its scores may still rank the images,
and every claim's estimand is an AUC, which reads ranks only. Leaving such models out is the
protocol's rule; whether a verdict depends on it is a question a reader will ask.

This reading keeps the models that collapsed *only* at the threshold (scores spread, all on one
side of 0.5) and judges every claim again with the same estimators, draws and rules
(:func:`covid_lib.report.judge.collapse_sensitivity`: :func:`covid_lib.report.judge.judge` with
:func:`keep_threshold_collapsed`). A claim's verdict
*rests on the collapse rule* when the outcome differs. Models that did not learn (validation AUC
under 0.6) and models without spread stay out. C4 reads its encoders' k-NN predictions, which no
collapse status enters, so its entry is the protocol's.

Of the findings, only F3 is read again (:func:`covid_lib.analysis.findings.estimate_f3` with
``keep_threshold_collapsed``): its deciding model, the corner mark through the paper's chain, is left
out by the protocol because all its marked test scores sit below 0.5, though they spread. F1 leaves
no model out; F2, F4 and F5 apply no collapse rule. F3 was added to the reading later the same day,
when the independent recheck (``rechecks/recheck_f3.py``) had already printed the left-out
comparison's numbers; it decides nothing either.

Written on 2026-12-05, after the verdicts of protocol ``6276063b22f8`` were known and before this
reading was computed; it is a post-hoc sensitivity analysis, shown beside the verdicts, never in
their place. The balanced accuracy of the kept models at a threshold chosen on their validation
set (:func:`collapsed_models`) was added in a later session the same day, before it was computed;
it describes those models and decides nothing either.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from covid_lib.metrics import (COLLAPSE_MIN_SPREAD, COLLAPSE_THRESHOLD, Estimate, binary_metrics, choose_threshold,
                               collapse_status)
from covid_lib.runs.records import COLLAPSED, DONE, Record

#: What the reading keeps that the protocol leaves out, in words.
RULE = (f"keep the models whose own-test scores all fall on one side of {COLLAPSE_THRESHOLD} but spread over at "
        f"least {COLLAPSE_MIN_SPREAD:g} (5-95% range); the rest of the protocol unchanged")


def _record(path: str | os.PathLike) -> Record:
    return Record(Path(path).name, results=Path(path).parent)


def _threshold_only(own: np.ndarray) -> bool:
    return len(own) > 0 and collapse_status(own) is not None and collapse_status(own, threshold=None) is None


def threshold_only(path: str | os.PathLike, composition: str) -> bool:
    """Whether a record's collapse is at the threshold only: its own-test scores spread (5-95% range
    at least :data:`COLLAPSE_MIN_SPREAD`) but all fall on one side of :data:`COLLAPSE_THRESHOLD`."""
    return _threshold_only(_record(path).scores(composition)["score"].to_numpy())


def keep_threshold_collapsed(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` (:func:`covid_lib.report.records.spec_records`) with the status of every model
    collapsed at the threshold only (:func:`threshold_only`) set to ``done``."""
    out = records.copy()
    for i, row in out[out["status"] == COLLAPSED].iterrows():
        if isinstance(row["path"], (str, os.PathLike)) and threshold_only(row["path"], row["composition"]):
            out.at[i, "status"] = DONE
    return out


def collapsed_models(records: pd.DataFrame) -> dict:
    """Of the collapsed COVID models in ``records``: how many, how many at the threshold only, and
    of those, how many were on one side of the threshold on their validation set too
    (``val_one_sided``: the model ranks but never crosses 0.5, rather than a test set that sits
    elsewhere than its validation set) and their median validation and own-test AUC.

    Also, for those with both classes in validation, the own-test balanced accuracy at a threshold
    chosen on the validation set (:func:`covid_lib.metrics.choose_threshold`, Youden) instead of
    0.5, where it is 0.5 by construction: its median (``median_test_ba_val_threshold``) and how many
    of the ``n_val_threshold`` models have a 95% interval over patients above 0.5
    (``ba_above_chance_val_threshold``). It tells a reader whether such a model is a ranking that
    a threshold read off validation would turn into decisions; it decides nothing.

    And where the collapsed models come from: per composition, the collapsed models and the models
    that learned (``by_composition``: ``[collapsed, learned]``, did-not-learn left out), and the
    median best epoch (``metrics.json``) of the collapsed models and of the others that learned."""
    collapsed = records[records["status"] == COLLAPSED]
    learned = records[records["status"].isin([COLLAPSED, DONE])]
    by_composition = {c: [int((g["status"] == COLLAPSED).sum()), int(len(g))]
                      for c, g in learned.groupby("composition", sort=False)}
    best = {status: [_record(p).metrics.get("best_epoch") for p in learned.loc[learned["status"] == status, "path"]
                     if isinstance(p, (str, os.PathLike))] for status in (COLLAPSED, DONE)}
    kept, one_sided, val_aucs, test_aucs, bas = 0, 0, [], [], []
    for r in collapsed.to_dict("records"):
        if not isinstance(r["path"], (str, os.PathLike)):
            continue
        record = _record(r["path"])
        own = record.scores(r["composition"])
        if not _threshold_only(own["score"].to_numpy()):
            continue
        kept += 1
        test_aucs.append(roc_auc_score(own["label"], own["score"]))
        val = record.val_scores
        if len(val):
            one_sided += bool((val["score"] >= COLLAPSE_THRESHOLD).all() or (val["score"] < COLLAPSE_THRESHOLD).all())
            if val["label"].nunique() == 2:
                val_aucs.append(roc_auc_score(val["label"], val["score"]))
                bas.append(_ba_at_val_threshold(own, val))
    return {"collapsed": int(len(collapsed)), "threshold_only": kept, "val_one_sided": int(one_sided),
            "median_val_auc": _median(val_aucs),
            "median_test_auc": _median(test_aucs),
            "n_val_threshold": len(bas),
            "median_test_ba_val_threshold": _median([b.value for b in bas]),
            "ba_above_chance_val_threshold": int(sum(b.low > 0.5 for b in bas)),
            "by_composition": by_composition,
            "median_best_epoch_collapsed": _median(best[COLLAPSED]), "median_best_epoch_rest": _median(best[DONE])}


def _median(values: list) -> float:
    """The median of the known values (None left out); NaN when none is known."""
    known = [float(v) for v in values if v is not None]
    return float(np.median(known)) if known else float("nan")


def _ba_at_val_threshold(own: pd.DataFrame, val: pd.DataFrame) -> Estimate:
    """Own-test balanced accuracy at the validation set's Youden threshold, with its interval over
    patients (:func:`covid_lib.metrics.binary_metrics`, seed 0)."""
    threshold = choose_threshold(val["label"], val["score"])
    return binary_metrics(own["label"], own["score"], threshold=threshold,
                          groups=own["group_id"].astype(str)).balanced_accuracy


def rests_on_collapse_rule(data: dict | None, scale: str, claim: str) -> str | None:
    """The outcome ``claim`` gets at ``scale`` with the threshold-collapsed models kept, when it
    differs from the protocol's verdict in ``data`` (``book/verdicts.json``); else None."""
    sens = ((data or {}).get("collapse_sensitivity") or {}).get("scales", {}).get(scale, {}).get("claims", {})
    if claim not in sens:
        return None
    other = sens[claim]["outcome"]
    return other if other != data["scales"][scale]["claims"][claim]["outcome"] else None


def finding_rests_on_collapse_rule(data: dict | None, finding: str) -> str | None:
    """The outcome ``finding`` gets with the threshold-collapsed models kept, when it differs from
    its verdict in ``data`` (``book/verdicts.json``); else None (also when it is not read again)."""
    other = (((data or {}).get("collapse_sensitivity") or {}).get("findings") or {}).get(finding)
    if other is None or finding not in (data or {}).get("findings", {}):
        return None
    return other["outcome"] if other["outcome"] != data["findings"][finding]["outcome"] else None


#: The scale column of a finding's row: F3 has one scale, the ``planted`` grid (from scratch, seed 0).
FINDING_SCALE = "planted grid"


def _cell(d: dict) -> str:
    if d.get("not_evaluated"):
        return "not evaluated"
    est = d["estimate"]
    numbers = "" if est != est else f" {est:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}],"
    return f"**{d['outcome']}**:{numbers} {d['n_used']} used, {d['n_left_out']} left out"


def sensitivity_markdown(data: dict | None) -> str:
    """The reading beside the verdicts (``book/verdicts.json``'s ``collapse_sensitivity``): per
    scale and claim, and for finding F3, the protocol's verdict, the verdict with the
    threshold-collapsed models kept, and whether it rests on the rule."""
    sens = (data or {}).get("collapse_sensitivity")
    if not sens:
        return "*No sensitivity reading yet: run `python -m covid_lib book judge`.*"
    from covid_lib.analysis.verdicts import SHORT_CLAIMS, SHORT_FINDINGS

    labels = {s: data["scales"][s]["label"].split(" (")[0].split(",")[0] for s in sens["scales"]}
    lines = [f"Post hoc, deciding nothing: {sens['rule']}.", ""]
    for s, part in sens["scales"].items():
        m = part["models"]
        lines.append(f"- *{labels[s]}:* {m['collapsed']} collapsed models in the judged grids, "
                     f"{m['threshold_only']} of them at the threshold only.")
        if "val_one_sided" in m and m["threshold_only"]:
            lines.append(f"  - {m['val_one_sided']} of those sat on one side of 0.5 on their validation set too (the "
                         "threshold was never crossed, rather than a test set that sits elsewhere than the validation "
                         f"set); their median AUC is {m['median_val_auc']:.2f} on validation and "
                         f"{m['median_test_auc']:.2f} on their own test.")
        if m.get("n_val_threshold"):
            lines.append(f"  - Read at a threshold chosen on their validation set (Youden) instead of 0.5, where it is "
                         f"0.5 by construction, their median own-test balanced accuracy is "
                         f"{m['median_test_ba_val_threshold']:.2f}, and {m['ba_above_chance_val_threshold']} of "
                         f"{m['n_val_threshold']} have a 95% interval over patients above 0.5.")
        if m.get("by_composition"):
            comps = sorted(m["by_composition"].items(), key=lambda kv: -kv[1][0] / max(kv[1][1], 1))
            line = ("  - By composition, collapsed of the models that learned: "
                    + ", ".join(f"{c} {k} of {n}" for c, (k, n) in comps))
            if m.get("median_best_epoch_collapsed") == m.get("median_best_epoch_collapsed"):
                line += (f"; the collapsed models' best validation epoch has a median of "
                         f"{m['median_best_epoch_collapsed']:.0f}, against {m['median_best_epoch_rest']:.0f} for the rest")
            lines.append(line + ".")
    findings = {f: d for f, d in (sens.get("findings") or {}).items() if f in (data.get("findings") or {})}
    for f, d in findings.items():
        ref = data["findings"][f]
        kept = d.get("details", {}).get("kept_threshold_collapsed") or {}
        line = (f"- *{f} ({FINDING_SCALE}):* {ref['n_left_out']} of its models left out by the protocol, "
                f"{len(kept)} of them collapsed at the threshold only")
        if kept:
            line += ": " + "; ".join(f"the `{p}` pipeline's model ({k['status'].removeprefix('collapsed: ')}, at "
                                     f"{k['min']:.3f}-{k['max']:.3f}, but a 5-95% range of {k['spread']:.3f})"
                                     for p, k in kept.items())
        lines.append(line + ".")
    lines += ["", "| claim | scale | protocol's verdict | with those models kept | rests on the rule? |",
              "|---|---|---|---|---|"]
    for s, part in sens["scales"].items():
        for claim, d in part["claims"].items():
            ref = data["scales"][s]["claims"][claim]
            rests = "**yes**" if rests_on_collapse_rule(data, s, claim) else "no"
            lines.append(f"| {claim} {SHORT_CLAIMS.get(claim, '')} | {labels[s]} | {_cell(ref)} | {_cell(d)} | {rests} |")
    for f, d in findings.items():
        ref = data["findings"][f]
        rests = "**yes**" if finding_rests_on_collapse_rule(data, f) else "no"
        lines.append(f"| {f} {SHORT_FINDINGS.get(f, '')} | {FINDING_SCALE} | {_cell(ref)} | {_cell(d)} | {rests} |")
    if findings:
        lines += ["", "Of the findings only F3 is read again: F1 leaves no model out, and F2, F4 and F5 apply no "
                  "collapse rule."]
    return "\n".join(lines)
