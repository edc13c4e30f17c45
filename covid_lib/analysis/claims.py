"""The claims' estimands under the protocol (:mod:`covid_lib.analysis.protocol`), computed from run records.

One set of bootstrap draws over every test patient of a claim (:class:`JointDraws`) is shared by all
of the claim's models, test sets and seeds: each replicate gives every (model, test set) its
weighted AUC, and each estimand is a difference of those, averaged over the claim's cells
(Davison & Hinkley 1997, Sec. 3.8, the cluster bootstrap; Field & Welsh 2007). The pooled
estimate, its percentile interval and its standard error go to :func:`covid_lib.analysis.protocol.decide`.

A record takes part only when its model learned and did not collapse (:func:`model_status`: the
record's own :attr:`covid_lib.runs.Record.status`); a comparison with a model that did not is left
out and counted. Estimands (protocol, by claim):

- C1: gap(augmented) - gap(CORDA-only), gap = own-test AUC - mean AUC on the other Table II tests;
- C2: AUC(pre-trained) - AUC(scratch) on the composition's own test set;
- C3: AUC(ResNet-50 or Conv8) - AUC(ResNet-18) over the Table II matrix (two contrasts);
- C5: AUC on the fixed 15 images - AUC on the CORDA test (Table IV's model);
- C6: AUC(chain) - AUC(no chain) on the off-diagonal test sets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from covid_lib.analysis import protocol as P
from covid_lib.analysis.embed import knn_predict, pooled_features, prepare_features
from covid_lib.analysis.shortcuts import image_features
from covid_lib.models import create_model
from covid_lib.runs import DONE, Record, load_model
from covid_lib.runs.execution import restore_checkpoint, rows_dataset
from covid_lib.stats import POOLED, percentile_interval, weighted_auc
from covid_lib.train import seed_everything

PAPER_TEST_SETS = ("CORDA", "CORDA&ChestXRay", "CORDA&RSNA", "CORDA&COVID-ChestXRay")
ALL_TEST_SETS = PAPER_TEST_SETS + ("COVID-ChestXRay",)
AUGMENTED = PAPER_TEST_SETS[1:]
_DTYPES = {"image_id": str, "patient_id": str, "group_id": str}


def read_scores(path: str | os.PathLike) -> pd.DataFrame:
    """A record's per-image scores on every test set (``test_set``, ``group_id``, ``label``, ``score``)."""
    return pd.read_csv(Path(path) / "scores.csv", dtype=_DTYPES)


def model_status(status: str, scores: pd.DataFrame | None, own_test: str) -> str:
    """``usable``, or why the record takes no part, as the protocol's exclusion rule reads it: its
    :attr:`covid_lib.runs.Record.status` (``did not learn``, ``collapsed``, ``failed``, ``missing``;
    the record decides collapse, :func:`covid_lib.metrics.collapse_status` on its own test set),
    or ``collapsed: no scores on its own test set``."""
    if status != DONE or scores is None:
        return status
    return "usable" if (scores["test_set"] == own_test).any() else "collapsed: no scores on its own test set"


class JointDraws:
    """Bootstrap draws over a fixed universe of patients, shared by every model and test set."""

    def __init__(self, groups: Iterable[str], n_boot: int = P.N_BOOT, seed: int = P.BOOT_SEED) -> None:
        self.index = {g: i for i, g in enumerate(sorted(set(map(str, groups))))}
        n = len(self.index)
        draws = np.random.default_rng(seed).integers(0, max(n, 1), size=(n_boot, n))
        offsets = (draws + n * np.arange(n_boot)[:, None]).ravel()
        self.unit_weights = np.bincount(offsets, minlength=n_boot * n).reshape(n_boot, n).astype(float)

    @property
    def n_patients(self) -> int:
        return len(self.index)

    def auc(self, y: np.ndarray, s: np.ndarray, groups: np.ndarray) -> tuple[float, np.ndarray]:
        """Point AUC and its ``(n_boot,)`` replicates (NaN where a replicate lacks a class)."""
        codes = np.array([self.index[str(g)] for g in groups])
        point = float(weighted_auc(y, s, np.ones((1, len(y))))[0])
        return point, weighted_auc(y, s, self.unit_weights[:, codes])


@dataclass
class ClaimEstimate:
    """A claim's pooled estimate, its replicates' summary and the cells behind it (``replicates``:
    one row of bootstrap replicates per row of ``cells``, on the claim's joint draws)."""

    claim: str
    estimate: float
    low: float
    high: float
    se: float
    n_used: int
    n_left_out: int
    cells: pd.DataFrame
    left_out: pd.DataFrame
    n_patients: int
    extra: dict = field(default_factory=dict)
    replicates: np.ndarray | None = field(default=None, repr=False)

    def decision(self, rule: P.ClaimRule | None = None) -> P.Decision:
        d = P.decide(rule or P.rule(self.claim), self.estimate, self.low, self.high, self.se,
                     n_used=self.n_used, n_left_out=self.n_left_out)
        d.details.update(self.extra)
        return d

    def by(self, column: str, *, means: Sequence[str] = ()) -> pd.DataFrame:
        """Per value of ``column`` of :attr:`cells` (in order of first appearance): the mean of its
        comparisons' estimates with the percentile interval of the mean of their replicates, the
        mean of each ``means`` column and ``n_used``; last a ``"pooled"`` row, the claim's own."""
        columns = [column, "estimate", "low", "high", *means, "n_used"]
        if self.cells.empty:
            return pd.DataFrame(columns=columns)
        rows = []
        for value, idx in self.cells.groupby(column, sort=False).indices.items():
            low, high, _ = percentile_interval(self.replicates[idx].mean(axis=0), P.ALPHA)
            rows.append({column: value, "estimate": float(self.cells["estimate"].iloc[idx].mean()), "low": low,
                         "high": high, **{m: float(self.cells[m].iloc[idx].mean()) for m in means},
                         "n_used": len(idx)})
        rows.append({column: POOLED, "estimate": self.estimate, "low": self.low, "high": self.high,
                     **{m: float(self.cells[m].mean()) for m in means}, "n_used": self.n_used})
        return pd.DataFrame(rows, columns=columns)


class _Scores:
    """Scores of the records of a claim, read once; AUC point and replicates per (run, test set)."""

    def __init__(self, frames: dict[str, pd.DataFrame], n_boot: int = P.N_BOOT, seed: int = P.BOOT_SEED) -> None:
        self.frames = frames
        groups = [g for f in self.frames.values() for g in f["group_id"]]
        self.draws = JointDraws(groups, n_boot, seed)
        self._cache: dict[tuple, tuple[float, np.ndarray]] = {}

    def auc(self, run_id: str, test_set: str, keep: Callable[[pd.DataFrame], pd.Series] | None = None,
            tag: str = "") -> tuple[float, np.ndarray]:
        key = (run_id, test_set, tag)
        if key not in self._cache:
            f = self.frames[run_id]
            f = f[f["test_set"] == test_set]
            if keep is not None:
                f = f[keep(f)]
            if f["label"].nunique() < 2:
                self._cache[key] = (np.nan, np.full(self.draws.unit_weights.shape[0], np.nan))
            else:
                self._cache[key] = self.draws.auc(f["label"].to_numpy(), f["score"].to_numpy(),
                                                  f["group_id"].to_numpy())
        return self._cache[key]


def _usable_scores(records: pd.DataFrame, n_boot: int = P.N_BOOT, seed: int = P.BOOT_SEED
                   ) -> tuple[pd.DataFrame, _Scores]:
    """``records`` with ``model_status`` (:func:`model_status`) and the :class:`_Scores` of the
    usable ones (``n_boot`` joint draws with ``seed``), each record's scores read once for both."""
    out = records.copy()
    frames = {r["run_id"]: read_scores(r["path"]) for r in out.to_dict("records") if r["status"] == "done"}
    out["model_status"] = [model_status(r["status"], frames.get(r["run_id"]), r["composition"])
                           for r in out.to_dict("records")]
    usable = set(out.loc[out["model_status"] == "usable", "run_id"])
    return out, _Scores({k: f for k, f in frames.items() if k in usable}, n_boot, seed)


def _pool(claim: str, rows: list[dict], reps: list[np.ndarray], left: list[dict], n_patients: int,
          extra: dict | None = None) -> ClaimEstimate:
    cells = pd.DataFrame(rows)
    left_out = pd.DataFrame(left)
    if not reps:
        return ClaimEstimate(claim, np.nan, np.nan, np.nan, np.nan, 0, len(left_out), cells, left_out, n_patients,
                             extra or {})
    point = float(np.mean([r["estimate"] for r in rows]))
    pooled = np.mean(np.vstack(reps), axis=0)
    low, high, _ = percentile_interval(pooled, P.ALPHA)
    se = float(np.nanstd(pooled, ddof=1))
    for row, r in zip(rows, reps):
        row["low"], row["high"], _ = percentile_interval(r, P.ALPHA)
    cells = pd.DataFrame(rows)
    return ClaimEstimate(claim, point, low, high, se, len(rows), len(left_out), cells, left_out, n_patients,
                         extra or {}, np.vstack(reps))


def _control(name: str, points: list[float], reps: list[np.ndarray]) -> dict:
    """A control contrast pooled like the claim's estimate (mean over comparisons), for ``extra``."""
    if not reps:
        return {}
    lo, hi, _ = percentile_interval(np.mean(np.vstack(reps), axis=0), P.ALPHA)
    return {name: {"estimate": float(np.mean(points)), "low": lo, "high": hi}}


def _lookup(records: pd.DataFrame, **where) -> dict | None:
    m = np.ones(len(records), dtype=bool)
    for k, v in where.items():
        m &= (records[k] == v).to_numpy()
    hit = records[m]
    return hit.iloc[0].to_dict() if len(hit) else None


def _pair_or_leave(a: dict | None, b: dict | None, label: dict, left: list[dict]) -> bool:
    """Whether both models are usable; otherwise record why the comparison is left out."""
    sa = a["model_status"] if a else "missing"
    sb = b["model_status"] if b else "missing"
    if sa == "usable" and sb == "usable":
        return True
    left.append({**label, "status_a": sa, "status_b": sb})
    return False


def estimate_c1(records: pd.DataFrame, *, pretrains: Iterable[str] = ("none", "kermany_full", "nih"),
                seeds: Iterable[int] = range(5), augmented: Iterable[str] = AUGMENTED) -> ClaimEstimate:
    """C1: per (augmented composition, pre-training, seed), the augmented model's gap minus the
    CORDA-only model's gap, on the same four test sets and resamples (``augmented``: the
    compositions compared with CORDA; all three for the claim, fewer for a check on a subset)."""
    recs, scores = _usable_scores(records)
    rows, reps, left = [], [], []
    for p in pretrains:
        for s in seeds:
            c = _lookup(recs, arch="resnet18", pretrain=p, composition="CORDA", seed=s)
            for x in augmented:
                a = _lookup(recs, arch="resnet18", pretrain=p, composition=x, seed=s)
                label = {"composition": x, "pretrain": p, "seed": s}
                if not _pair_or_leave(a, c, label, left):
                    continue
                per = {}
                for t in PAPER_TEST_SETS:
                    (pa, ra), (pc, rc) = scores.auc(a["run_id"], t), scores.auc(c["run_id"], t)
                    per[t] = (pa - pc, ra - rc, pa, pc)
                others = [t for t in PAPER_TEST_SETS if t != x]
                est = per[x][0] - np.mean([per[t][0] for t in others])
                rep = per[x][1] - np.mean([per[t][1] for t in others], axis=0)
                gap_a = per[x][2] - np.mean([per[t][2] for t in others])
                gap_c = per[x][3] - np.mean([per[t][3] for t in others])
                rows.append({**label, "gap_augmented": gap_a, "gap_corda_only": gap_c, "estimate": est})
                reps.append(rep)
    return _pool("C1", rows, reps, left, scores.draws.n_patients)


def paired_own_test(records: pd.DataFrame, pairs: Iterable[tuple[dict, dict, dict]], *, claim: str = "C2",
                    names: tuple[str, str] = ("auc_a", "auc_b"), n_boot: int = P.N_BOOT,
                    seed: int = P.BOOT_SEED) -> ClaimEstimate:
    """AUC(a) - AUC(b) on the composition's own test set, per ``(label, where_a, where_b)`` of
    ``pairs`` (a and b: the rows of ``records`` matching ``where``), on one set of joint draws and
    pooled as a claim is; a pair with a model that is missing or not usable is left out under its
    ``label``. ``names``: the columns of the two AUCs in :attr:`ClaimEstimate.cells`; ``claim``
    labels the result (:meth:`ClaimEstimate.decision` needs a claim of the protocol)."""
    recs, scores = _usable_scores(records, n_boot, seed)
    rows, reps, left = [], [], []
    for label, where_a, where_b in pairs:
        a, b = _lookup(recs, **where_a), _lookup(recs, **where_b)
        if not _pair_or_leave(a, b, label, left):
            continue
        own = a["composition"]
        (pa, ra), (pb, rb) = scores.auc(a["run_id"], own), scores.auc(b["run_id"], own)
        rows.append({**label, names[0]: pa, names[1]: pb, "estimate": pa - pb})
        reps.append(ra - rb)
    return _pool(claim, rows, reps, left, scores.draws.n_patients)


def estimate_c2(records: pd.DataFrame, *, pretrains: Iterable[str] = ("kermany_full", "nih"),
                compositions: Iterable[str] = ALL_TEST_SETS, seeds: Iterable[int] = range(5)) -> ClaimEstimate:
    """C2: AUC(pre-trained) - AUC(scratch) on the composition's own test set (:func:`paired_own_test`)."""
    compositions, seeds = list(compositions), list(seeds)
    pairs = [({"pretrain": p, "composition": comp, "seed": s},
              {"arch": "resnet18", "pretrain": p, "composition": comp, "seed": s},
              {"arch": "resnet18", "pretrain": "none", "composition": comp, "seed": s})
             for p in pretrains for comp in compositions for s in seeds]
    return paired_own_test(records, pairs, claim="C2", names=("auc_pretrained", "auc_scratch"))


def estimate_c3(records: pd.DataFrame, *, other: str, pretrains: Iterable[str],
                compositions: Iterable[str] = ALL_TEST_SETS, test_sets: Iterable[str] = ALL_TEST_SETS,
                seeds: Iterable[int] = range(3)) -> ClaimEstimate:
    """C3, one contrast: AUC(``other``) - AUC(ResNet-18) over every (composition, test set) cell,
    each model pair averaged over the test sets first."""
    recs, scores = _usable_scores(records)
    rows, reps, left = [], [], []
    for p in pretrains:
        for comp in compositions:
            for s in seeds:
                a = _lookup(recs, arch=other, pretrain=p, composition=comp, seed=s)
                b = _lookup(recs, arch="resnet18", pretrain=p, composition=comp, seed=s)
                label = {"arch": other, "pretrain": p, "composition": comp, "seed": s}
                if not _pair_or_leave(a, b, label, left):
                    continue
                pts, rps = [], []
                for t in test_sets:
                    (pa, ra), (pb, rb) = scores.auc(a["run_id"], t), scores.auc(b["run_id"], t)
                    if pa == pa and pb == pb:
                        pts.append(pa - pb)
                        rps.append(ra - rb)
                rows.append({**label, "n_test_sets": len(pts), "estimate": float(np.mean(pts))})
                reps.append(np.mean(rps, axis=0))
    return _pool("C3", rows, reps, left, scores.draws.n_patients)


def estimate_c5(records: pd.DataFrame, *, pretrain: str = "kermany_full", seeds: Iterable[int] = range(5)
                ) -> ClaimEstimate:
    """C5: Table IV's model, AUC on the fixed 15 images minus AUC on the CORDA test; the control
    (15 images minus all of its COVID-ChestXRay test images) in ``extra``."""
    recs, scores = _usable_scores(records)
    rows, reps, left, ctrl_pts, ctrl_reps = [], [], [], [], []
    for s in seeds:
        a = _lookup(recs, arch="resnet18", pretrain=pretrain, composition="COVID-ChestXRay", seed=s)
        label = {"pretrain": pretrain, "seed": s}
        if not _pair_or_leave(a, a, label, left):
            continue
        (p15, r15), (pc, rc) = scores.auc(a["run_id"], "COVID-ChestXRay"), scores.auc(a["run_id"], "CORDA")
        frame = scores.frames[a["run_id"]]
        corda_ids = set(frame.loc[frame["test_set"] == "CORDA", "image_id"])
        (pall, rall) = scores.auc(a["run_id"], "CORDA&COVID-ChestXRay", lambda f: ~f["image_id"].isin(corda_ids),
                                  tag="COVID-ChestXRay test")
        rows.append({**label, "auc_15": p15, "auc_corda": pc, "auc_all_covid_chestxray_test": pall,
                     "estimate": p15 - pc})
        reps.append(r15 - rc)
        ctrl_pts.append(p15 - pall)
        ctrl_reps.append(r15 - rall)
    return _pool("C5", rows, reps, left, scores.draws.n_patients, _control("control_15_minus_all", ctrl_pts, ctrl_reps))


def estimate_c6(chain: pd.DataFrame, no_chain: pd.DataFrame, *, pretrains: Iterable[str] = ("none", "kermany_full"),
                compositions: Iterable[str] = PAPER_TEST_SETS[:2], seeds: Iterable[int] = range(3)) -> ClaimEstimate:
    """C6: AUC(chain) - AUC(no chain) on the off-diagonal Table II test sets; the same on the
    model's own test set (the control) in ``extra``."""
    recs, scores = _usable_scores(pd.concat([chain, no_chain], ignore_index=True))
    rows, reps, left, ctrl_pts, ctrl_reps = [], [], [], [], []
    for p in pretrains:
        for comp in compositions:
            for s in seeds:
                a = _lookup(recs, arch="resnet18", pretrain=p, composition=comp, seed=s, pipeline="paper")
                b = _lookup(recs, arch="resnet18", pretrain=p, composition=comp, seed=s, pipeline="none")
                label = {"pretrain": p, "composition": comp, "seed": s}
                if not _pair_or_leave(a, b, label, left):
                    continue
                off = [t for t in PAPER_TEST_SETS if t != comp]
                diffs = [(scores.auc(a["run_id"], t), scores.auc(b["run_id"], t)) for t in off]
                rows.append({**label, "estimate": float(np.mean([da[0] - db[0] for da, db in diffs]))})
                reps.append(np.mean([da[1] - db[1] for da, db in diffs], axis=0))
                (pa, ra), (pb, rb) = scores.auc(a["run_id"], comp), scores.auc(b["run_id"], comp)
                ctrl_pts.append(pa - pb)
                ctrl_reps.append(ra - rb)
    return _pool("C6", rows, reps, left, scores.draws.n_patients, _control("control_own_test", ctrl_pts, ctrl_reps))


# --------------------------------------------------------------------------------------------- C4
#: The two readings of C4 (protocol): the source among COVID- images, the label within CORDA.
C4_SOURCE = "ChestXRay vs CORDA, COVID- only"
C4_LABEL = "COVID+ vs COVID- within CORDA"


def c4_rows(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Masks of :func:`covid_lib.analysis.embed.feature_rows` rows for C4's two readings."""
    return {C4_SOURCE: (rows["set"].isin(["ChestXRay", "CORDA"]) & (rows["label"] == 0)).to_numpy(),
            C4_LABEL: (rows["set"] == "CORDA").to_numpy()}


def c4_predictions(features: dict[str, np.ndarray], rows: pd.DataFrame, *, k: int = 10) -> pd.DataFrame:
    """Leave-one-patient-out k-NN predictions (:func:`covid_lib.analysis.embed.knn_predict`) of C4's two
    readings for each encoder's prepared features on the same ``rows``: one row per (encoder,
    reading, image) with ``group_id``, ``target`` and ``predicted``. Encoder names are
    ``"<kind>/s<seed>"`` with kind ``fine-tuned``, ``random`` or ``pixels``."""
    parts = []
    for name, X in features.items():
        for reading, keep in c4_rows(rows).items():
            sub = rows[keep]
            target = (sub["set"] if reading == C4_SOURCE else sub["label"]).astype(str).to_numpy()
            g = sub["group_id"].astype(str).to_numpy()
            pred = knn_predict(X[keep], target, g, k=k)
            parts.append(pd.DataFrame({"encoder": name, "reading": reading, "group_id": g, "target": target,
                                       "predicted": pred}))
    return pd.concat(parts, ignore_index=True)


def _ba(draws: JointDraws, part: pd.DataFrame) -> tuple[float, np.ndarray]:
    """Balanced accuracy of one (encoder, reading) and its replicates on ``draws``."""
    y = part["target"].to_numpy()
    hit = (part["predicted"].to_numpy() == y).astype(float)
    codes = np.array([draws.index[g] for g in part["group_id"]])
    w = np.vstack([np.ones(len(y)), draws.unit_weights[:, codes]])
    classes = np.unique(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.column_stack([(w[:, y == c] @ hit[y == c]) / w[:, y == c].sum(1) for c in classes])
    ba = recall.mean(1)
    return float(ba[0]), ba[1:]


def estimate_c4(predictions: pd.DataFrame, *, seeds: Iterable[int], control: str = "random",
                unusable: dict[int, str] | None = None) -> ClaimEstimate:
    """C4: per seed, (source BA - label BA) of the fine-tuned encoder minus the same of the
    ``control`` encoder (``random``: the same architecture randomly initialised; ``pixels``: raw
    pixels, reported in ``extra``), on one joint patient bootstrap. ``unusable``: why a seed's
    fine-tuned encoder has no predictions (e.g. ``retrained here, differs from record: ...``),
    counted as left out with that reason instead of ``missing``."""
    unusable = unusable or {}
    draws = JointDraws(predictions["group_id"])
    have = set(predictions["encoder"])

    def margin(name: str) -> tuple[float, np.ndarray]:
        p = predictions[predictions["encoder"] == name]
        (ps, rs), (pl, rl) = (_ba(draws, p[p["reading"] == r]) for r in (C4_SOURCE, C4_LABEL))
        return ps - pl, rs - rl

    rows, reps, left, extra = [], [], [], {}
    for s in seeds:
        a, b = f"fine-tuned/s{s}", f"{control}/s{s}"
        if a not in have or b not in have:
            left.append({"seed": s, "status_a": "usable" if a in have else unusable.get(s, "missing"),
                         "status_b": "usable" if b in have else "missing"})
            continue
        (pa, ra), (pb, rb) = margin(a), margin(b)
        rows.append({"seed": s, "margin_fine_tuned": pa, f"margin_{control}": pb, "estimate": pa - pb})
        reps.append(ra - rb)
    if "pixels/s0" in have:
        pp, rp = margin("pixels/s0")
        lo, hi, _ = percentile_interval(rp, P.ALPHA)
        extra["raw_pixels_margin"] = {"estimate": pp, "low": lo, "high": hi}
    return _pool("C4", rows, reps, left, draws.n_patients, extra)


def c4_encoder_features(specs: dict[int, "object"], rows: pd.DataFrame, *, data_root=None, device: str = "cpu",
                        n_components: int = 50) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Prepared features (:func:`covid_lib.analysis.embed.prepare_features`) of C4's encoders on ``rows``:
    per seed, the fine-tuned run of ``specs[seed]`` (its checkpoint restored by retraining when not
    cached, its record untouched) and the same architecture randomly initialised with that seed,
    both through the run's chain and normalisation; and raw pixels of the chain's output
    (:func:`covid_lib.analysis.shortcuts.image_features`) as ``pixels/s0``. Returns the features and the
    rows every encoder kept."""
    import torch

    feats, kept = {}, None
    for seed, spec in specs.items():
        if Record.of(spec).checkpoint is None:
            restore_checkpoint(spec, data_root=data_root, device=device, progress=False)
        model, meta = load_model(spec, device)
        data, k, _ = rows_dataset(spec, rows, mean=meta["mean"], std=meta["std"], data_root=data_root,
                                  set_name="features")
        kept = k.reset_index(drop=True) if kept is None else kept
        if len(k) != len(kept):
            raise ValueError("the encoders' chains kept different rows")
        feats[f"fine-tuned/s{seed}"] = prepare_features(pooled_features(model, data, device=device), n_components)
        seed_everything(seed)
        random = create_model(spec.arch, num_classes=2).to(memory_format=torch.channels_last)
        feats[f"random/s{seed}"] = prepare_features(pooled_features(random, data, device=device), n_components)
        if "pixels/s0" not in feats:
            images = np.concatenate([x[:, 0].cpu().numpy() for x, _, _ in data.batches(64)])
            pix = np.clip((images - images.min()) / max(np.ptp(images), 1e-12) * 255, 0, 255).astype(np.uint8)
            feats["pixels/s0"] = prepare_features(image_features(pix), n_components)
    return feats, kept
