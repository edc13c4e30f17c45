"""The pre-training chapter: pre-training sets next to the paper's, learning curves, and claim C2.

Tartaglione et al. 2020 (Sec. IV-A) pre-train the encoder on a pneumonia set (ChestXRay = Kermany,
three classes; RSNA, pneumonia yes/no), both on top of ImageNet, then fine-tune it on each
composition; they read Table II as "pre-training the encoder helps in improving the specificity"
(claim C2). Here every encoder starts from random weights (no ImageNet download), the pre-training
sets are the few hundred images of our subsets, and C2 is decided by the paired difference in
specificity, pre-trained against the same architecture from scratch, on the same test images,
with a bootstrap over patients.

Every number comes from run records (:func:`covid_lib.report.training.record_index`).
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from covid_lib.analysis.claims import paired_own_test
from covid_lib.metrics import format_estimate
from covid_lib.report.training import index_record, run_row, test_scores
from covid_lib.stats import POOLED, bootstrap_ci

#: Training images of the paper's pre-training sets (Sec. III-A), on top of ImageNet weights.
PAPER_PRETRAINING_IMAGES = {"kermany": 5857, "kermany_full": 5857, "nih": 26684}
PAPER_NAMES = {"kermany": "ChestXRay", "kermany_full": "ChestXRay, whole set", "nih": "RSNA", None: "none"}
#: The paper's threshold rule: an image is COVID+ when its score is at least 0.5.
PAPER_THRESHOLD = 0.5


def pretraining_split_sizes(index: pd.DataFrame, profile: str = "cpu") -> dict[str, dict[str, int]]:
    """Images used per split (``train``, ``val``, ``test``) by the seed-0 ResNet-18 pre-training record
    of each source of :data:`PAPER_PRETRAINING_IMAGES` (an empty dict for a source not recorded)."""
    out = {}
    for source in PAPER_PRETRAINING_IMAGES:
        r = run_row(index, task="pretrain", composition=source, arch="resnet18", profile=profile, seed=0,
                    pipeline="paper")
        splits = json.loads((r["path"] / "metrics.json").read_text())["splits"] if r is not None else None
        out[source] = {s: int(splits[s]["n_used"]) for s in ("train", "val", "test")} if splits else {}
    return out


def pretraining_sizes(index: pd.DataFrame, profile: str = "cpu") -> pd.DataFrame:
    """Our pre-training sets (train/val/test images of the seed-0 ResNet-18 records) beside the paper's."""
    rows = []
    sizes = pretraining_split_sizes(index, profile)
    for source, paper_n in PAPER_PRETRAINING_IMAGES.items():
        n = sizes[source]
        rows.append({"set (paper name)": f"{source} ({PAPER_NAMES[source]})",
                     "ours: train / val / test": " / ".join(str(n.get(s, "–")) for s in ("train", "val", "test")),
                     "paper: images": f"{paper_n:,}", "paper starts from": "ImageNet",
                     "ours starts from": "random weights",
                     "ours / paper (all splits)": (f"{sum(n.values()) / paper_n:.1%}" if n else "–")})
    return pd.DataFrame(rows)


def plot_learning_curves(index: pd.DataFrame, profile: str = "cpu", *, task: str = "pretrain",
                         archs: Iterable[str] | None = None, seeds: Iterable[int] | None = None,
                         pipelines: Iterable[str] | None = ("paper",),
                         input_sizes: Iterable[int] | None = None) -> Figure:
    """Loss (train, validation) and validation AUC per epoch, one column per record of ``task``
    (only ``archs``, ``seeds``, ``pipelines`` and ``input_sizes`` when given; ``input_sizes``
    defaults to the profile's input size, so the ``resolution`` grid's 224-px runs are asked for)."""
    import matplotlib.pyplot as plt

    from covid_lib.profiles import get_profile

    default_size = get_profile(profile).input_size
    input_sizes = (default_size,) if input_sizes is None else tuple(input_sizes)
    sel = index[(index["task"] == task) & (index["profile"] == profile)]
    for column, keep in (("arch", archs), ("seed", seeds), ("pipeline", pipelines), ("input_size", input_sizes)):
        if keep is not None:
            sel = sel[sel[column].isin(list(keep))]
    sel = sel.sort_values(["composition", "arch", "pipeline", "seed"])
    n = max(len(sel), 1)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 5.2), squeeze=False, sharex=False)
    for j, (_, r) in enumerate(sel.iterrows()):
        h = pd.read_csv(r["path"] / "history.csv")
        top, bottom = axes[0, j], axes[1, j]
        top.plot(h["epoch"], h["train_loss"], label="train")
        top.plot(h["epoch"], h["val_loss"], label="validation")
        bottom.plot(h["epoch"], h["train_auc"], label="train")
        bottom.plot(h["epoch"], h["val_auc"], label="validation")
        best = int(r["best_epoch"]) if pd.notna(r["best_epoch"]) else None
        for ax in (top, bottom):
            if best is not None:
                ax.axvline(best, color="grey", ls=":", lw=1)
            ax.grid(alpha=0.3)
        flag = " (did not learn)" if r["did_not_learn"] else ""
        px = f", {r['input_size']} px" if r["input_size"] != default_size else ""
        top.set_title(f"{r['composition']} {r['arch']}\npipeline {r['pipeline']}, seed {r['seed']}{px}{flag}", fontsize=9)
        bottom.set_xlabel("epoch")
        bottom.set_ylim(0.4, 1.0)
    axes[0, 0].set_ylabel("focal loss")
    axes[1, 0].set_ylabel("AUC (macro for 3 classes)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Learning curves (dotted: the kept, best-validation epoch)", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- claim C2
def _specificity(y: np.ndarray, s: np.ndarray, w: np.ndarray, threshold: float) -> np.ndarray:
    neg = (y == 0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * neg * (s < threshold)).sum(axis=1) / (w * neg).sum(axis=1)


def _specificity_at_sensitivity(y: np.ndarray, s: np.ndarray, w: np.ndarray, target: float) -> np.ndarray:
    """Per row of weights ``w``: the specificity at the highest threshold whose (weighted)
    sensitivity reaches ``target``, i.e. one point of the ROC curve at a fixed sensitivity."""
    order = np.argsort(-s, kind="stable")
    ys, ss, ws = y[order], s[order], w[:, order]
    pos = ws * (ys == 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cum = np.cumsum(pos, axis=1) / pos.sum(axis=1, keepdims=True)
    threshold = ss[np.argmax(cum >= target - 1e-12, axis=1)]
    neg = (y == 0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * neg * (s[None, :] < threshold[:, None])).sum(axis=1) / (w * neg).sum(axis=1)


def specificity_gain(index: pd.DataFrame, *, composition: str, pretrain: str, test_set: str | None = None,
                     arch: str = "resnet18", profile: str = "cpu", seed: int = 0,
                     threshold: float = PAPER_THRESHOLD, sensitivity: float | None = None,
                     n_boot: int = 2000) -> dict | None:
    """Specificity of a pre-trained fine-tune minus that of the same model from scratch, same images.

    At the paper's ``threshold`` (default), or, with ``sensitivity``, each model at its own
    threshold that reaches that sensitivity (the paper's "at very similar sensitivity", Sec.
    IV-A), re-chosen in every bootstrap replicate. Both models score the same test images; the
    difference gets a percentile interval from a bootstrap over patients (images of one patient
    are resampled together). None when a record is missing.
    """
    test_set = test_set or composition
    common = dict(task="covid", composition=composition, arch=arch, profile=profile, seed=seed, pipeline="paper")
    a, b = run_row(index, pretrain=pretrain, **common), run_row(index, pretrain=None, **common)
    if a is None or b is None:
        return None
    both = test_scores(a, test_set).join(test_scores(b, test_set)[["score"]].rename(columns={"score": "scratch"}),
                                         how="inner")
    y, s1, s0 = both["label"].to_numpy(), both["score"].to_numpy(), both["scratch"].to_numpy()
    one = np.ones((1, len(y)))
    if sensitivity is None:
        spec = lambda s, w: _specificity(y, s, w, threshold)  # noqa: E731
    else:
        spec = lambda s, w: _specificity_at_sensitivity(y, s, w, sensitivity)  # noqa: E731
    spec1, spec0 = float(spec(s1, one)[0]), float(spec(s0, one)[0])
    low, high = bootstrap_ci(y, lambda w: spec(s1, w) - spec(s0, w), groups=both["group_id"].to_numpy(),
                             n_boot=n_boot)
    return {"composition": composition, "test_set": test_set, "pretrain": pretrain, "seed": seed,
            "n_negatives": int((y == 0).sum()), "n_patients": int(both["group_id"].nunique()),
            "specificity_pretrained": spec1, "specificity_scratch": spec0, "difference": spec1 - spec0,
            "low": low, "high": high,
            "did_not_learn": ", ".join(k for k, r in (("pre-trained", a), ("scratch", b)) if r["did_not_learn"]),
            "collapsed": ", ".join(k for k, r in (("pre-trained", a), ("scratch", b)) if r.get("status") == "collapsed")}


def specificity_gains(index: pd.DataFrame, compositions: Iterable[str], *, seeds: Iterable[int] = (0,),
                      pretrains: Iterable[str] = ("kermany", "nih"), **kw) -> pd.DataFrame:
    """:func:`specificity_gain` for every composition (its own test set), pre-training and seed found."""
    rows = [g for c in compositions for p in pretrains for s in seeds
            if (g := specificity_gain(index, composition=c, pretrain=p, seed=s, **kw)) is not None]
    return pd.DataFrame(rows)


def specificity_gain_table(gains: pd.DataFrame) -> pd.DataFrame:
    """The gains formatted for reading: one row per comparison, intervals, did-not-learn flags."""
    if gains.empty:
        return pd.DataFrame()
    out = pd.DataFrame({
        "composition = test set": gains["composition"], "pre-training": gains["pretrain"].map(PAPER_NAMES).str.cat(
            gains["pretrain"], sep=" = "), "seed": gains["seed"],
        "COVID- images / patients": gains["n_negatives"].astype(str) + " / " + gains["n_patients"].astype(str),
        "specificity pre-trained": gains["specificity_pretrained"].round(2),
        "specificity scratch": gains["specificity_scratch"].round(2),
        "difference [patient 95% CI]": [format_estimate(d, lo, hi) for d, lo, hi in
                                        zip(gains["difference"], gains["low"], gains["high"])],
        "did not learn": gains["did_not_learn"].replace("", "–"),
        "collapsed": (gains["collapsed"] if "collapsed" in gains else pd.Series("", index=gains.index)).replace("", "–")})
    return out.reset_index(drop=True)


# --------------------------------------------------------------- two pre-training scales, same images
def plot_specificity_gains(gains: pd.DataFrame, *, row_height: float = 0.3) -> Figure:
    """:func:`specificity_gains` as a forest plot: one row per composition and pre-training, its
    seeds side by side within the row (one marker each), the difference (pre-trained minus scratch)
    with its patient-cluster interval; grey where a model of the pair did not learn. The height
    does not grow with the seeds."""
    g = gains.assign(label=gains["composition"] + " · " + gains["pretrain"])
    rows = list(dict.fromkeys(g.sort_values(["composition", "pretrain"])["label"]))
    seeds = sorted(g["seed"].unique())
    step = 0.7 / max(len(seeds), 1)
    markers = dict(zip(seeds, "osD^vP*X"))
    fig = Figure(figsize=(7, row_height * len(rows) + 1.3), layout="constrained")
    ax = fig.subplots()
    for r in g.itertuples():
        y = rows.index(r.label) + (seeds.index(r.seed) - (len(seeds) - 1) / 2) * step
        ax.errorbar(r.difference, y, xerr=[[r.difference - r.low], [r.high - r.difference]],
                    fmt=markers[r.seed], color="tab:grey" if r.did_not_learn else "tab:blue", mfc="white",
                    capsize=1.5, ms=3.5, lw=0.9)
    for s in seeds:  # the legend: one marker per seed
        ax.plot([], [], markers[s], color="tab:blue", mfc="white", ms=3.5, label=f"seed {s}")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), rows, fontsize=7.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(seeds), fontsize=7.5, frameon=False)
    ax.set_xlabel("specificity: pre-trained minus scratch (95% CI over patients; grey: a model did not learn)",
                  fontsize=8.5)
    return fig


def auc_gains(index: pd.DataFrame, compositions: Iterable[str], *, pretrains: Iterable[str] = ("kermany", "nih"),
              profile: str = "cpu", seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Per composition and pre-training, the own-test AUC of the pre-trained fine-tune against the
    same model from scratch at one seed (:func:`covid_lib.report.training.pretraining_gain`), one row
    per pair with records (empty when none)."""
    from covid_lib.report.training import pretraining_gain

    rows = [{**g, "pretrain": p} for c in compositions for p in pretrains
            if (g := pretraining_gain(index, composition=c, pretrain=p, profile=profile, seed=seed,
                                      n_boot=n_boot)) is not None]
    return pd.DataFrame(rows)


def auc_gain_table(gains: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """:func:`auc_gains` for reading, in seven columns: images / patients, both AUCs (with "did not
    learn" marked), the difference with its patient-cluster interval and DeLong's p."""
    if gains.empty:
        return pd.DataFrame()
    def auc(v: float, failed: bool) -> str:
        return f"{v:.{digits}f}" + (" (did not learn)" if failed else "")

    return pd.DataFrame({
        "composition": gains["composition"], "pre-training": gains["pretrain"],
        "images / patients": [f"{a} / {b}" for a, b in zip(gains["n_images"], gains["n_patients"])],
        "AUC pre-trained": [auc(v, f) for v, f in zip(gains["auc_pretrained"], gains["pretrained_did_not_learn"])],
        "AUC scratch": [auc(v, f) for v, f in zip(gains["auc_scratch"], gains["scratch_did_not_learn"])],
        "difference [patient 95% CI]": [f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
                                        for d, (lo, hi) in zip(gains["difference"], gains["difference_cluster_ci"])],
        "DeLong p": gains["delong_p"].to_numpy(),
    })


def paired_macro_auc(y, probs_a, probs_b, groups, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Macro one-vs-rest AUC of two K-class models on the same images, and their difference
    ``a - b``, from one patient-cluster bootstrap (the same resamples for both)."""
    from covid_lib.stats import bootstrap_replicates, percentile_interval, weighted_auc

    y = np.asarray(y, dtype=int)
    pa, pb = np.asarray(probs_a, float), np.asarray(probs_b, float)
    classes = range(pa.shape[1])

    def macro(p: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.mean([weighted_auc(y == k, p[:, k], w) for k in classes], axis=0)

    def stat(w: np.ndarray) -> np.ndarray:
        a, b = macro(pa, w), macro(pb, w)
        return np.column_stack([a, b, a - b])

    point = stat(np.ones((1, len(y))))[0]
    reps = bootstrap_replicates(stat, len(y), groups=np.asarray(groups).astype(str), n_boot=n_boot, seed=seed)
    out = {}
    for j, name in enumerate(("auc_a", "auc_b", "diff")):
        low, high, _ = percentile_interval(reps[:, j], alpha)
        out[name], out[f"{name}_low"], out[f"{name}_high"] = float(point[j]), low, high
    return out


def load_pretraining(spec, *, data_root=None, device: str = "cpu", allow_mismatch: bool = False) -> tuple:
    """A pre-training run's ``(model, meta)`` from its checkpoint (restored by retraining when not
    cached here, its record untouched): load it once and pass it as ``loaded`` to the functions
    below that score with it. A checkpoint retrained here that differs from its record only with
    ``allow_mismatch`` (the caller says so), else :class:`~covid_lib.runs.CheckpointMismatch`."""
    from covid_lib.runs import Record, load_model
    from covid_lib.runs.execution import restore_checkpoint

    if Record.of(spec).checkpoint is None:
        restore_checkpoint(spec, data_root=data_root, device=device, progress=False, allow_mismatch=allow_mismatch)
    return load_model(spec, device, allow_mismatch=allow_mismatch)


def shared_test_probs(spec, rows: pd.DataFrame, *, data_root=None, device: str = "cpu",
                      loaded: tuple | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """A pre-training run's class probabilities on ``rows`` through its own chain and normalisation,
    with its ``loaded`` model (default: :func:`load_pretraining`)."""
    from covid_lib.runs.execution import rows_dataset
    from covid_lib.train import predict

    model, meta = loaded if loaded is not None else load_pretraining(spec, data_root=data_root, device=device)
    data, kept, _ = rows_dataset(spec, rows, mean=meta["mean"], std=meta["std"], data_root=data_root,
                                 set_name="shared test")
    probs, _, _ = predict(model, data, device=device)
    return probs, kept.reset_index(drop=True)


def scales_on_shared_test(small, large, *, data_root=None, device: str = "cpu", n_boot: int = 2000,
                          loaded: dict | None = None, allow_mismatch: bool = False) -> pd.DataFrame:
    """The ChestXRay pre-training at two scales (``small``: ``kermany``, 563 images; ``large``:
    ``kermany_full``) on the same held-out images: ``kermany``'s test patients, which neither
    pre-training saw, in each copy (original resolution; the squashed 224-px JPEGs). One row per
    copy: both macro AUCs and the paired difference ``large - small`` with patient intervals.
    ``loaded``: run id -> :func:`load_pretraining` (default: each loaded here, once, with
    ``allow_mismatch``: use a checkpoint retrained here that differs from its record, and say so)."""
    from covid_lib.data import global_splits
    from covid_lib.data.full_copy import full_copy_splits
    from covid_lib.data.subsets import PRETRAIN_LABELS

    loaded = dict(loaded or {})
    for spec in (small, large):
        if spec.run_id not in loaded:
            loaded[spec.run_id] = load_pretraining(spec, data_root=data_root, device=device,
                                                   allow_mismatch=allow_mismatch)
    column, mapping = PRETRAIN_LABELS["kermany"]
    base = global_splits(data_root)
    test_patients = set(base.loc[(base["source"] == "kermany") & (base["split"] == "test"), "patient_id"])
    full = full_copy_splits(data_root)
    copies = {"kermany (original resolution)": base[base["source"] == "kermany"],
              "kermany_full (224-px JPEG)": full}
    out = []
    for name, rows in copies.items():
        rows = rows[rows["patient_id"].isin(test_patients)].reset_index(drop=True)
        rows = rows.assign(label=rows[column].map(mapping).astype(int))
        pa, ka = shared_test_probs(large, rows, data_root=data_root, device=device, loaded=loaded[large.run_id])
        pb, kb = shared_test_probs(small, rows, data_root=data_root, device=device, loaded=loaded[small.run_id])
        common = ka[["source", "image_id"]].merge(kb[["source", "image_id"]].reset_index(), on=["source", "image_id"])
        ia = ka.reset_index().merge(common[["source", "image_id"]], on=["source", "image_id"])["index"].to_numpy()
        ib = common["index"].to_numpy()
        y = ka.loc[ia, "label"].astype(int).to_numpy()
        r = paired_macro_auc(y, pa[ia], pb[ib], ka.loc[ia, "patient_id"].to_numpy(), n_boot=n_boot)
        out.append({"test images": name, "images": len(y), "patients": int(ka.loc[ia, "patient_id"].nunique()),
                    "whole set (large)": format_estimate(r["auc_a"], r["auc_a_low"], r["auc_a_high"]),
                    "563 images (small)": format_estimate(r["auc_b"], r["auc_b_low"], r["auc_b_high"]),
                    "large - small": format_estimate(r["diff"], r["diff_low"], r["diff_high"]), **r})
    return pd.DataFrame(out)


# ------------------------------------------------------------ pre-training size and the fine-tunes
def scale_effect(small: pd.DataFrame, large: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """The effect of the pre-training set's size on the COVID fine-tunes (issue 17): AUC of the
    fine-tune whose encoder was pre-trained on the whole ChestXRay set (``large``) minus that of the
    same fine-tune pre-trained on 563 images (``small``), on the composition's own test set, paired
    by (arch, composition, seed, pipeline) and estimated as claim C2 is
    (:func:`covid_lib.analysis.claims.paired_own_test`: one joint patient bootstrap over every
    pair, pooled as the mean over pairs). Pairs where a model did not learn or collapsed are left
    out and listed.

    Returns ``{"estimate": the ClaimEstimate, "cells": per composition, then "pooled"}``.
    """
    keys = ["arch", "composition", "seed", "pipeline"]
    labels = large[keys].merge(small[keys], on=keys).to_dict("records")
    records = pd.concat([large.assign(scale="large"), small.assign(scale="small")], ignore_index=True)
    pairs = [(label, {**label, "scale": "large"}, {**label, "scale": "small"}) for label in labels]
    est = paired_own_test(records, pairs, claim="pre-training scale", names=("auc_large", "auc_small"),
                          n_boot=n_boot, seed=seed)
    return {"estimate": est, "cells": est.by("composition", means=("auc_large", "auc_small"))}


def scale_effect_table(effect: dict, digits: int = 3) -> pd.DataFrame:
    """:func:`scale_effect` for reading: per composition (and pooled) the two mean AUCs, ΔAUC with
    its patient-level interval, and how many seed pairs were used or left out."""
    cells, left = effect["cells"], effect["estimate"].left_out
    rows = []
    for r in cells.to_dict("records"):
        name = r["composition"]
        n_left = len(left) if name == POOLED or left.empty else int((left["composition"] == name).sum())
        rows.append({"trained on": name, "AUC, whole set": f"{r['auc_large']:.{digits}f}",
                     "AUC, 563 images": f"{r['auc_small']:.{digits}f}",
                     "Δ AUC [95% CI over patients]": format_estimate(r["estimate"], r["low"], r["high"], digits),
                     "seed pairs used / left out": f"{r['n_used']} / {n_left}"})
    return pd.DataFrame(rows)


#: Issue 17's gate for the ChestXRay pre-training at the paper's scale: ResNet-18's three-class
#: macro AUC on its held-out test patients (decided on the point estimate, interval shown).
PRETRAINING_GATE = 0.93
_CLASS_NAMES = {"0": "normal (vs pneumonia)", "1": "bacterial", "2": "viral"}


def pretraining_gate(index: pd.DataFrame, profile: str = "cpu", *, gate: float = PRETRAINING_GATE) -> pd.DataFrame:
    """Every three-class ChestXRay pre-training record: one-vs-rest test AUC per class and macro,
    with patient intervals, and whether the macro AUC passes ``gate``."""
    rows = []
    pre = index[(index["task"] == "pretrain") & (index["profile"] == profile)
                & index["composition"].isin(["kermany", "kermany_full"])]
    for _, r in pre.sort_values(["composition", "arch", "input_size", "pipeline", "seed"]).iterrows():
        m = index_record(r).metrics
        per_class = m.get("test_class_auc") or {}
        macro = m.get("test_auc_interval")
        rows.append({"pre-training set": r["composition"].replace("_", " "), "arch": r["arch"],
                     "pipeline": r["pipeline"], "input px": r["input_size"], "seed": r["seed"],
                     "train images": m["splits"]["train"]["n_used"],
                     **{f"AUC {name}": (format_estimate(per_class[k]["value"], per_class[k]["low"], per_class[k]["high"])
                                        if k in per_class else "–") for k, name in _CLASS_NAMES.items()},
                     "macro AUC": format_estimate(macro["value"], macro["low"], macro["high"]) if macro else "–",
                     f"gate (macro ≥ {gate})": ("–" if not macro else "met" if macro["value"] >= gate else "not met")})
    return pd.DataFrame(rows)


def gate_summary(index: pd.DataFrame, profile: str = "cpu", *, arch: str = "resnet18",
                 gate: float = PRETRAINING_GATE) -> list[str]:
    """One line per (pipeline, input size) of the whole-set ChestXRay pre-trainings of ``arch``: the
    seeds, the range of the three-class macro AUC over them, at how many seeds the gate is met, and
    the ranges of normal-vs-pneumonia and viral-vs-rest AUC (the pair that holds the macro down).
    The paper's pipeline at the profile's input size comes first."""
    from covid_lib.profiles import get_profile

    pre = index[(index["task"] == "pretrain") & (index["profile"] == profile) & (index["composition"] == "kermany_full")
                & (index["arch"] == arch)]
    size = get_profile(profile).input_size

    def span(values: list[float]) -> str:
        return f"{min(values):.3f}" if len(values) == 1 or min(values) == max(values) else \
            f"{min(values):.3f} to {max(values):.3f}"

    lines = []
    groups = pre.groupby(["pipeline", "input_size"], sort=False)
    keys = sorted(groups.groups, key=lambda k: (k[0] != "paper", k[1] != size, k))
    for pipeline, px in keys:
        part = groups.get_group((pipeline, px)).sort_values("seed")
        metrics = [index_record(r).metrics for _, r in part.iterrows()]
        macro = [m["test_auc_interval"]["value"] for m in metrics if m.get("test_auc_interval")]
        if not macro:
            continue
        per_class = [m.get("test_class_auc") or {} for m in metrics]
        normal = [c["0"]["value"] for c in per_class if "0" in c]
        viral = [c["2"]["value"] for c in per_class if "2" in c]
        seeds = ", ".join(str(int(x)) for x in part["seed"])
        line = (f"{arch}, pipeline {pipeline}, {int(px)} px, seed{'s' if len(part) > 1 else ''} {seeds}: macro AUC "
                f"{span(macro)} (gate {gate} met at {sum(v >= gate for v in macro)} of {len(macro)})")
        if normal:
            line += f"; normal vs pneumonia {span(normal)}"
        if viral:
            line += f"; viral vs rest {span(viral)}"
        lines.append(line)
    return lines


def scale_specs(profile: str = "cpu", data_root=None, *, seed: int = 0) -> tuple | None:
    """The ResNet-18 ChestXRay pre-trainings of Table II at both scales (563 images: the parent in
    ``table2``; the whole set: the parent in ``table2_full``) for ``seed``, when both are recorded."""
    from covid_lib.grid import grid_specs
    from covid_lib.runs import Record

    out = []
    for grid, source in (("table2", "kermany"), ("table2_full", "kermany_full")):
        parent = next((s.pretrain_spec() for s in grid_specs(grid, profile, data_root=data_root)
                       if s.pretrain == source and s.arch == "resnet18" and s.seed == seed), None)
        if parent is None or Record.of(parent, need_checkpoint=False).status != "done":
            return None
        out.append(parent)
    return tuple(out)


def checkpoint_matches_record(spec, *, data_root=None, device: str = "cpu", tolerance: float | None = None,
                              loaded: tuple | None = None) -> dict:
    """Whether the checkpoint cached here is the recorded model (:func:`covid_lib.runs.checkpoint_matches_record`:
    a pre-training's class probabilities on its record's own test images against those the record
    holds; ``loaded``: its model, already loaded). A checkpoint restored by retraining on another
    machine need not match (bf16 kernels differ between CPUs), and then every number computed from
    it is a retraining's, not the record's.

    Returns ``{"images", "max_abs_diff", "matches"}``.
    """
    from covid_lib.runs import SCORE_TOLERANCE
    from covid_lib.runs import checkpoint_matches_record as matches

    return matches(spec, data_root=data_root, device=device, loaded=loaded,
                   tolerance=SCORE_TOLERANCE if tolerance is None else tolerance)
