"""The findings beyond the paper (:data:`covid_lib.analysis.protocol.FINDINGS`, F1-F5) as estimands
under their rules, computed from plain frames (run records' scores, the metadata baseline's scores,
saliency shares, SOM nodes).

As for the claims (:mod:`covid_lib.analysis.claims`), every model and test set of a finding shares one
set of patient-cluster bootstrap draws (:class:`~covid_lib.analysis.claims.JointDraws`): each
replicate gives every cell its statistic, the pooled estimate is the mean over the finding's
comparisons, and its replicates give the percentile interval and the standard error that
:func:`covid_lib.analysis.protocol.decide` turns into an outcome and an MDE.

- F1: AUC of the model trained on a pair of sources minus the AUC, on the same test patients, of
  the model of the same variant that never saw them (:func:`f1_pairs`; :func:`estimate_f1`);
- F2: own-test AUC of the metadata baseline of CORDA&ChestXRay minus that of CORDA (:func:`estimate_f2`);
- F3: AUC with the planted mark on the COVID+ images minus AUC with it on the COVID- images, the
  same images (:func:`estimate_f3`);
- F4: in-lung share of positive saliency minus the lung's share of the image, on COVID+ test
  images of the sources trained on (:func:`estimate_f4`);
- F5: change with fine-tuning of (excess purity by label minus excess purity by source) of a SOM
  of the encoder's features (:func:`estimate_f5`).

Example:
    >>> [(a, b) for a, b, _ in f1_pairs()]
    [('U1-hannover-nih', 'U2-cohen-kermany'), ('U1-hannover-nih', 'U3-cohen-cohen'), ('U2-cohen-kermany', 'U1-hannover-nih')]
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from covid_lib.analysis import protocol as P
from covid_lib.analysis.claims import ClaimEstimate, JointDraws, _control, _pair_or_leave, _pool, read_scores
from covid_lib.analysis.landscape import TARGETS, permutation_chance, purity, weighted_purity
from covid_lib.data.source_splits import SOURCE_SPLITS
from covid_lib.metrics import COLLAPSE_MIN_SPREAD, COLLAPSE_THRESHOLD, collapse_status, score_spread
from covid_lib.runs import DONE
from covid_lib.stats import percentile_interval


def _interval(reps: np.ndarray) -> tuple[float, float]:
    low, high, _ = percentile_interval(reps, P.ALPHA)
    return low, high


# --------------------------------------------------------------------------------------------- F1
def f1_pairs() -> list[tuple[str, str, tuple[str, str]]]:
    """F1's comparisons: ``(seen split, unseen split, parts)`` for every pair of source splits
    where the parts one split trains on are the parts the other never saw
    (:data:`covid_lib.data.SOURCE_SPLITS`): U1 minus U2 and U1 minus U3 on Hannover+/NIH-, U2
    minus U1 on Cohen+/Kermany-."""
    out = []
    for a in SOURCE_SPLITS.values():
        for b in SOURCE_SPLITS.values():
            if a.name != b.name and set(a.train) == set(b.unseen):
                out.append((a.name, b.name, tuple(a.train)))
    return out


def _usable_unless_collapsed(own_scores: np.ndarray, *, spread_only: bool = False) -> str:
    """``usable``, or ``collapsed: <why>`` (:func:`covid_lib.metrics.collapse_status` at the
    protocol's threshold and spread) for a model's scores on its own test set. ``spread_only``: read
    the spread condition only (the collapse sensitivity reading, :mod:`covid_lib.report.sensitivity`):
    scores all on one side of the threshold but spread are ``usable``."""
    why = collapse_status(own_scores, threshold=None if spread_only else COLLAPSE_THRESHOLD,
                          min_spread=COLLAPSE_MIN_SPREAD)
    return "usable" if why is None else f"collapsed: {why}"


def f1_model_status(status: str, scores: pd.DataFrame | None, seen_parts: Iterable[str]) -> str:
    """The protocol's exclusion rule for a source-split model: its record's status, or
    ``collapsed: ...`` when its scores on its own (seen) test parts collapse
    (:func:`covid_lib.metrics.collapse_status`; the record's own check reads a test set named
    after the split, which split runs do not have)."""
    if status != DONE or scores is None:
        return status
    own = scores.loc[scores["test_set"].isin(list(seen_parts)), "score"].to_numpy()
    if not len(own):
        return "collapsed: no scores on its own test parts"
    return _usable_unless_collapsed(own)


def estimate_f1(records: pd.DataFrame, *, variants: Iterable[tuple[str, str | None]] | None = None,
                n_boot: int = P.N_BOOT, seed: int = P.BOOT_SEED) -> ClaimEstimate:
    """F1: per variant (``(pretrain, freeze)``) and pair of :func:`f1_pairs`, AUC of the seen
    split's model minus AUC of the unseen split's model on the seen parts' test images both scored.

    ``records``: one row per source-split run before adaptation (``composition, pretrain, freeze,
    status, path, run_id``; rows with an ``adapt`` are ignored). Models that did not learn,
    collapsed or have no record are left out and counted."""
    recs = records[records["adapt"].isna()] if "adapt" in records else records
    recs = recs.assign(freeze=recs["freeze"].astype(object).where(recs["freeze"].notna(), None),
                       pretrain=recs["pretrain"].fillna("none"))
    frames = {r["run_id"]: read_scores(r["path"]) for r in recs.to_dict("records") if r["status"] == DONE}
    recs = recs.assign(model_status=[
        f1_model_status(r["status"], frames.get(r["run_id"]), SOURCE_SPLITS[r["composition"]].train)
        if r["composition"] in SOURCE_SPLITS else "missing" for r in recs.to_dict("records")])
    variants = list(dict.fromkeys(zip(recs["pretrain"], recs["freeze"]))) if variants is None else list(variants)

    def find(split: str, variant: tuple[str, str | None]) -> dict | None:
        hit = recs[(recs["composition"] == split) & (recs["pretrain"] == variant[0])
                   & np.array([f == variant[1] for f in recs["freeze"]], dtype=bool)]
        return hit.iloc[0].to_dict() if len(hit) else None

    pairs = []
    left: list[dict] = []
    for variant in variants:
        for seen, unseen, parts in f1_pairs():
            a, b = find(seen, variant), find(unseen, variant)
            label = {"variant": variant[0] + (f", {variant[1]} frozen" if variant[1] else ""), "seen_split": seen,
                     "unseen_split": unseen, "test": " + ".join(parts)}
            if _pair_or_leave(a, b, label, left):
                fa, fb = (frames[x["run_id"]] for x in (a, b))
                keep = ["test_set", "image_id", "group_id", "label", "score"]
                both = fa.loc[fa["test_set"].isin(parts), keep].merge(
                    fb.loc[fb["test_set"].isin(parts), ["test_set", "image_id", "score"]],
                    on=["test_set", "image_id"], suffixes=("_a", "_b"))
                pairs.append((label, a["run_id"], b["run_id"], both))
    draws = JointDraws([g for *_, f in pairs for g in f["group_id"]], n_boot, seed)
    rows, reps = [], []
    for label, run_a, run_b, f in pairs:
        y, g = f["label"].to_numpy(), f["group_id"].to_numpy()
        if len(np.unique(y)) < 2:
            left.append({**label, "status_a": "usable", "status_b": "usable", "why": "one class on the common images"})
            continue
        (pa, ra), (pb, rb) = draws.auc(y, f["score_a"].to_numpy(), g), draws.auc(y, f["score_b"].to_numpy(), g)
        rows.append({**label, "run_seen": run_a, "run_unseen": run_b, "n_images": len(f),
                     "n_patients": int(pd.Series(g).nunique()), "auc_seen_model": pa, "auc_unseen_model": pb,
                     "estimate": pa - pb})
        reps.append(ra - rb)
    return _pool("F1", rows, reps, left, draws.n_patients)


# --------------------------------------------------------------------------------------------- F2
#: F2's deciding contrast: the borrowing composition against the one that borrowed nothing.
F2_CONTRAST = ("CORDA&ChestXRay", "CORDA")
#: F2's secondary contrasts (the other borrowed sources), each against CORDA.
F2_SECONDARY = ("CORDA&RSNA", "CORDA&COVID-ChestXRay")


def _own_test(scores: pd.DataFrame, composition: str) -> pd.DataFrame:
    return scores[(scores["composition"] == composition) & (scores["test_set"] == composition)]


def own_auc_difference(scores: pd.DataFrame, a: str, b: str, *, n_boot: int = P.N_BOOT, seed: int = P.BOOT_SEED
                       ) -> tuple[dict, np.ndarray]:
    """Own-test AUC of the baseline trained on ``a`` minus that of the baseline trained on ``b``
    (:func:`covid_lib.analysis.metadata_baseline.baseline_scores`' frame), with one patient bootstrap
    over the union of both test sets (nested patients resampled jointly). Returns the point
    estimate with its interval and the replicates."""
    fa, fb = _own_test(scores, a), _own_test(scores, b)
    draws = JointDraws(pd.concat([fa["group_id"], fb["group_id"]]).astype(str), n_boot, seed)
    (pa, ra), (pb, rb) = (draws.auc(f["label"].to_numpy(), f["score"].to_numpy(), f["group_id"].astype(str).to_numpy())
                          for f in (fa, fb))
    low, high = _interval(ra - rb)
    return ({"composition": a, "against": b, "auc": pa, "auc_against": pb, "estimate": pa - pb, "low": low,
             "high": high, "n_patients": draws.n_patients}, ra - rb)


def estimate_f2(scores: pd.DataFrame, *, with_year: pd.DataFrame | None = None, n_boot: int = P.N_BOOT,
                seed: int = P.BOOT_SEED) -> ClaimEstimate:
    """F2: own-test AUC of the headline metadata baseline (no year, no missing-value flags) of
    CORDA&ChestXRay minus that of CORDA (:data:`F2_CONTRAST`); the other borrowed sources
    (:data:`F2_SECONDARY`) and the baseline with the year (``with_year``, a by-construction
    proxy) in ``extra``, never deciding."""
    a, b = F2_CONTRAST
    if _own_test(scores, a)["label"].nunique() < 2 or _own_test(scores, b)["label"].nunique() < 2:
        left = [{"contrast": f"{a} - {b}", "status_a": "missing", "status_b": "missing"}]
        return _pool("F2", [], [], left, 0)
    row, reps = own_auc_difference(scores, a, b, n_boot=n_boot, seed=seed)
    n_patients = row.pop("n_patients")
    secondary = [own_auc_difference(scores, c, b, n_boot=n_boot, seed=seed)[0] for c in F2_SECONDARY
                 if c in set(scores["composition"])]
    extra = {"secondary": secondary}
    if with_year is not None:
        extra["with_year"] = own_auc_difference(with_year, a, b, n_boot=n_boot, seed=seed)[0]
    return _pool("F2", [row], [reps], [], n_patients, extra)


# --------------------------------------------------------------------------------------------- F3
def planted_model_status(status: str, frame: pd.DataFrame | None, *, keep_threshold_collapsed: bool = False) -> str:
    """The protocol's exclusion rule for a planted-mark model: its record's status, or ``collapsed:
    ...`` when its scores on its own test set, the test images marked as in training (``score`` of
    :func:`covid_lib.report.planted.variant_scores`), collapse (:func:`covid_lib.metrics.collapse_status`;
    the record's own check reads a test set named after the composition, which planted runs score
    only as ``"<composition> · <variant>"``), or ``missing`` without scores of both classes.
    ``keep_threshold_collapsed``: the sensitivity reading's rule (:mod:`covid_lib.report.sensitivity`),
    collapsed only when the scores do not spread; never the verdict's."""
    if status != DONE:
        return status
    if frame is None or not len(frame) or frame["label"].nunique() < 2:
        return "missing"
    return _usable_unless_collapsed(frame["score"].to_numpy(), spread_only=keep_threshold_collapsed)


def estimate_f3(frames: dict[str, pd.DataFrame | None], statuses: dict[str, str], *, deciding: str = "paper",
                control: str = "none", n_boot: int = P.N_BOOT, seed: int = P.BOOT_SEED,
                keep_threshold_collapsed: bool = False) -> ClaimEstimate:
    """F3: AUC with the mark on the COVID+ test images minus AUC with it on the COVID- ones
    (``score`` against ``score_flipped`` of :func:`covid_lib.report.planted.variant_scores`, the same
    images) for the ``deciding`` pipeline's model; the same for the ``control`` pipeline, and marked
    minus unmarked, in ``extra``. ``frames``/``statuses``: by pipeline. A model that did not learn or
    collapsed (:func:`planted_model_status`) is left out; a control that is, is named in ``extra``
    (``control_status``) instead of measured. ``keep_threshold_collapsed`` (the sensitivity reading
    only, :mod:`covid_lib.report.sensitivity`): keep a model collapsed at the threshold only; each one
    kept is named in ``extra`` (``kept_threshold_collapsed``: its status under the protocol's rule,
    its own-test scores' range and 5-95% spread)."""
    status = {p: planted_model_status(statuses.get(p, "missing"), frames.get(p),
                                      keep_threshold_collapsed=keep_threshold_collapsed) for p in (deciding, control)}
    usable = {p: frames[p] for p, st in status.items() if st == "usable"}
    draws = JointDraws([g for f in usable.values() for g in f["group_id"].astype(str)], n_boot, seed)

    def contrast(f: pd.DataFrame, other: str) -> tuple[float, np.ndarray]:
        y, g = f["label"].to_numpy(), f["group_id"].astype(str).to_numpy()
        (pa, ra), (pb, rb) = draws.auc(y, f["score"].to_numpy(), g), draws.auc(y, f[other].to_numpy(), g)
        return pa - pb, ra - rb

    rows, reps, left, extra = [], [], [], {}
    if deciding in usable:
        est, rep = contrast(usable[deciding], "score_flipped")
        rows.append({"pipeline": deciding, "n_images": len(usable[deciding]), "estimate": est})
        reps.append(rep)
        pu, ru = contrast(usable[deciding], "score_unmarked")
        extra["marked_minus_unmarked"] = {"estimate": pu, **dict(zip(("low", "high"), _interval(ru)))}
    else:
        left.append({"pipeline": deciding, "status_a": status[deciding], "status_b": status[deciding]})
    if control in usable:
        pc, rc = contrast(usable[control], "score_flipped")
        extra.update(_control(f"control_pipeline_{control}", [pc], [rc]))
    else:
        extra["control_status"] = {control: status[control]}
    if keep_threshold_collapsed:
        protocol = {p: planted_model_status(statuses.get(p, "missing"), frames.get(p)) for p in usable}
        extra["kept_threshold_collapsed"] = {
            p: {"status": st, "min": float(usable[p]["score"].min()), "max": float(usable[p]["score"].max()),
                "spread": score_spread(usable[p]["score"].to_numpy(float))}
            for p, st in protocol.items() if st != "usable"}
    return _pool("F3", rows, reps, left, draws.n_patients, extra)


# --------------------------------------------------------------------------------------------- F4
def estimate_f4(per_image: pd.DataFrame, *, left_out: list[dict] | None = None, n_boot: int = P.N_BOOT,
                seed: int = P.BOOT_SEED) -> ClaimEstimate:
    """F4: per model, the mean over its measured COVID+ test maps of the sources it was trained on
    of (in-lung share minus lung area share); pooled: the mean over models, patients resampled
    jointly. ``per_image``: :func:`covid_lib.report.saliency.collect`'s table (``run_id, label,
    seen, group_id, share, baseline, map_status``); maps that are not ``measured`` are counted per
    model (``n_not_measurable``), never averaged in; ``left_out``: the models not mapped."""
    t = per_image[(per_image["label"] == 1) & (per_image["seen"] == "trained on")]
    draws = JointDraws(t["group_id"].astype(str), n_boot, seed)
    rows, reps, left = [], [], list(left_out or [])
    for run_id, m in t.groupby("run_id", sort=False):
        ok = (m["map_status"] == "measured").to_numpy() & m["share"].notna().to_numpy()
        label = {"run_id": run_id, **{k: m[k].iloc[0] for k in ("pipeline", "composition", "pretrain") if k in m}}
        if not ok.any():
            left.append({**label, "status_a": "not measurable: no map with positive mass", "status_b": "usable"})
            continue
        excess = (m["share"] - m["baseline"]).to_numpy(float)[ok]
        codes = np.array([draws.index[str(g)] for g in m["group_id"].to_numpy()[ok]])
        w = draws.unit_weights[:, codes]
        with np.errstate(invalid="ignore", divide="ignore"):
            rep = (w @ excess) / w.sum(axis=1)
        rows.append({**label, "n_measured": int(ok.sum()), "n_not_measurable": int((~ok).sum()),
                     "estimate": float(excess.mean())})
        reps.append(rep)
    return _pool("F4", rows, reps, left, draws.n_patients)


# --------------------------------------------------------------------------------------------- F5
#: F5's encoders in a nodes frame: the ChestXRay encoder before and after fine-tuning.
F5_BEFORE, F5_AFTER = "before", "after"


def excess_purity_replicates(nodes: np.ndarray, labels: np.ndarray, weights: np.ndarray, *, n_perm: int = 200,
                             seed: int = 0) -> tuple[float, np.ndarray]:
    """Excess purity ``(purity - chance) / (1 - chance)`` of one map and target and its replicates
    under ``weights (n_boot, n)``, as :func:`covid_lib.analysis.landscape.purity_table` computes them
    (permutation chance from ``n_perm`` permutations; replicates bias-centred on the estimate)."""
    obs = purity(nodes, labels)
    chance = float(permutation_chance(nodes, labels, n_perm=n_perm, seed=seed).mean())
    reps = weighted_purity(nodes, labels, weights)
    reps = reps - (np.nanmean(reps) - obs)
    if chance >= 1:
        return float("nan"), np.full(len(reps), np.nan)
    return (obs - chance) / (1 - chance), (reps - chance) / (1 - chance)


def estimate_f5(nodes: pd.DataFrame, *, before: str = F5_BEFORE, after: str = F5_AFTER, n_perm: int = 200,
                n_boot: int = P.N_BOOT, seed: int = P.BOOT_SEED) -> ClaimEstimate:
    """F5: (excess purity by ``label`` minus by ``source``) of the ``after`` map minus the same of
    the ``before`` map, on the images both mapped, one patient bootstrap for both (paired).

    ``nodes``: one row per (``encoder``, image) with ``group_id``, ``source``, ``label``,
    ``age_group`` and the image's SOM ``node``; excess purity per encoder and target in ``extra``."""
    key = ["source", "image_id"]
    have = set(nodes["encoder"])
    if not {before, after} <= have:
        left = [{"encoders": f"{after} - {before}", "status_a": "usable" if after in have else "missing",
                 "status_b": "usable" if before in have else "missing"}]
        return _pool("F5", [], [], left, 0)
    base = nodes[nodes["encoder"] == before].drop(columns=["encoder", "node"])
    for e in have:  # the images every encoder mapped, in one order
        base = base.merge(nodes.loc[nodes["encoder"] == e, key].drop_duplicates(), on=key)
    groups = base["group_id"].astype(str).to_numpy()
    draws = JointDraws(groups, n_boot, seed)
    w = draws.unit_weights[:, np.array([draws.index[g] for g in groups])]
    excess, per = {}, []
    for e in sorted(have):
        node = base[key].merge(nodes[nodes["encoder"] == e], on=key, how="left")["node"].to_numpy(int)
        for t in TARGETS:
            if t not in base:
                continue
            value, reps = excess_purity_replicates(node, base[t].astype(str).to_numpy(), w, n_perm=n_perm, seed=seed)
            excess[e, t] = (value, reps)
            per.append({"encoder": e, "target": t, "excess": value, **dict(zip(("low", "high"), _interval(reps)))})

    def net(e: str) -> tuple[float, np.ndarray]:
        (vl, rl), (vs, rs) = excess[e, "label"], excess[e, "source"]
        return vl - vs, rl - rs

    (pa, ra), (pb, rb) = net(after), net(before)
    row = {"after": after, "before": before, "n_images": len(base), "net_after": pa, "net_before": pb,
           "estimate": pa - pb}
    changes = {}
    for t in ("label", "source"):
        d = excess[after, t][1] - excess[before, t][1]
        changes[t] = {"estimate": excess[after, t][0] - excess[before, t][0], **dict(zip(("low", "high"), _interval(d)))}
    return _pool("F5", [row], [ra - rb], [], draws.n_patients, {"excess_purity": per, "change": changes})


def read_nodes(path: str | Path) -> pd.DataFrame:
    """An F5 nodes record (``results/claims/f5-<scale>.csv``)."""
    return pd.read_csv(path, dtype={"image_id": str, "group_id": str, "source": str, "age_group": str})
