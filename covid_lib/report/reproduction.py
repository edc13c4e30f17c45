"""The cross-dataset matrix (Tartaglione et al. 2020, Sec. IV-A, Table II): ours beside the paper's,
heatmaps, the metadata-only baseline, seeds and the verdict on claim C1.

Every number comes from a run record (:mod:`covid_lib.report.records`); a cell whose record is
missing, failed or did not learn is shown as such. Our test sets are nested: each CORDA&X test set
is the CORDA test set plus the COVID- images of X, so the off-diagonal cells of one model share
images and patients; the C1 bootstrap resamples patients jointly over all of them.

Example:
    >>> matrix_table(matrix_long(spec_records([]))).empty
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from covid_lib.analysis.seeds import SEED_COLUMNS, seed_summary, seed_summary_table
from covid_lib.grid import COMPOSITION_ORDER
from covid_lib.metrics import METRIC_LABELS, METRICS, format_estimate
from covid_lib.report.records import (PAIRED_COLUMNS, PAPER_TEST_SETS, PRETRAIN_LABELS, TEST_SETS, cell_scores,
                                      has_record, paired_auc, spec_records)
from covid_lib.stats import bootstrap_replicates, percentile_interval, weighted_auc

__all__ = ["spec_records", "matrix_table", "with_baseline", "heatmap_inputs", "plot_heatmaps", "seed_table",
           "diagonal_gap", "c1_table", "c1_paired", "AUGMENTED"]

#: The compositions that add COVID- images from another dataset to CORDA (the claim C1 is about them).
AUGMENTED: tuple[str, ...] = COMPOSITION_ORDER[1:4]
PRETRAINS = ("none", "kermany", "nih")
DEPARTURES = ("cpu profile: 128 px, AdamW one-cycle, at most 30 epochs, trained from scratch without ImageNet; "
              "pre-training sets of about 560 images (the paper: 5,857 ChestXRay and 26,684 RSNA, on top of "
              "ImageNet); our CORDA is a public stand-in (Cohen images of many hospitals, not one); classes "
              "balanced exactly; splits by patient")


def _cell(v: float, lo: float, hi: float, digits: int) -> str:
    return "–" if pd.isna(v) else format_estimate(v, lo, hi, digits)


def with_baseline(long: pd.DataFrame, baseline: pd.DataFrame | None, *, model: str | None = None) -> pd.DataFrame:
    """``long`` with the metadata-only AUC of its (training composition, test set) as ``baseline_auc``,
    ``baseline_low``, ``baseline_high`` (NaN without a baseline). ``baseline`` has the columns of
    ``covid_lib.analysis.metadata_baseline.baseline_table``; ``model`` picks one of its models (default: the first)."""
    out = long.copy()
    if baseline is None or baseline.empty:
        out[["baseline_auc", "baseline_low", "baseline_high"]] = np.nan
        return out
    b = baseline[baseline["model"] == (model or baseline["model"].iloc[0])]
    b = b.rename(columns={"auc": "baseline_auc", "auc_low": "baseline_low", "auc_high": "baseline_high"})
    return out.merge(b[["composition", "test_set", "baseline_auc", "baseline_low", "baseline_high"]],
                     on=["composition", "test_set"], how="left")


def matrix_table(long: pd.DataFrame, *, metrics: Iterable[str] = METRICS, digits: int = 2) -> pd.DataFrame:
    """The long table of intervals: one row per (pre-training, training composition, test set), each
    metric as ``ours [95% CI]`` beside the paper's value (``–``: not in the paper), the status of the
    record, and the metadata-only AUC when :func:`with_baseline` added it."""
    out = pd.DataFrame({"pre-training": long["pretrain"].map(PRETRAIN_LABELS), "trained on": long["composition"],
                        "tested on": long["test_set"], "status": long["status"],
                        "n (rejected)": [("–" if pd.isna(n) else f"{int(n)} ({0 if pd.isna(r) else int(r)})")
                                         for n, r in zip(long["n"], long["n_rejected"])]})
    for m in metrics:
        out[f"{METRIC_LABELS[m]} ours"] = [_cell(*x, digits) for x in
                                           zip(long[m], long[f"{m}_low"], long[f"{m}_high"])]
        if f"paper_{m}" in long:
            out[f"{METRIC_LABELS[m]} paper"] = ["–" if pd.isna(v) else format_estimate(v, digits=digits)
                                                for v in long[f"paper_{m}"]]
    if "baseline_auc" in long:
        out["metadata-only AUC"] = [_cell(*x, digits) for x in
                                    zip(long["baseline_auc"], long["baseline_low"], long["baseline_high"])]
    return out.reset_index(drop=True)


def matrix_display(long: pd.DataFrame, *, metrics: Iterable[str] = METRICS, digits: int = 2) -> pd.DataFrame:
    """:func:`matrix_table` in a layout that fits the page's column: the model in one column
    (training composition and pre-training), the test set, the record's status with ``n
    (rejected)``, and each metric in one column, ``ours [95% CI] · paper value`` (``· –``: not in
    the paper), then the metadata-only AUC when there is one. Same rows, same numbers."""
    t = matrix_table(long, metrics=metrics, digits=digits)
    out = pd.DataFrame({"trained on (pre-training)": t["trained on"] + " (" + t["pre-training"].astype(str) + ")",
                        "tested on": t["tested on"],
                        "status, n (rejected)": t["status"].astype(str) + ", " + t["n (rejected)"]})
    for m in metrics:
        label = METRIC_LABELS[m]
        ours, paper = t[f"{label} ours"], t.get(f"{label} paper")
        out[f"{label}: ours · paper" if paper is not None else label] = ours if paper is None else ours + " · " + paper
    if "metadata-only AUC" in t:
        out["metadata-only AUC"] = t["metadata-only AUC"]
    return out


# -------------------------------------------------------------------------------------- heatmaps
def heatmap_inputs(long: pd.DataFrame, metric: str, *, arch: str = "resnet18", pretrains: Iterable[str] = PRETRAINS,
                   compositions: Iterable[str] = COMPOSITION_ORDER, test_sets: Iterable[str] = TEST_SETS
                   ) -> dict[str, dict[str, pd.DataFrame]]:
    """Per pre-training: ``ours`` and ``paper`` (rows = training composition, columns = test set) and
    ``status`` (``done`` / ``did not learn`` / ``failed`` / ``missing``) of ``long`` (after
    :func:`~covid_lib.report.records.beside_paper`)."""
    rows, cols = list(compositions), list(test_sets)
    out = {}
    for p in pretrains:
        sub = long[(long["arch"] == arch) & (long["pretrain"] == p)].set_index(["composition", "test_set"])
        grid = {}
        for key, col in (("ours", metric), ("paper", f"paper_{metric}"), ("status", "status")):
            values = sub[col] if col in sub else pd.Series(np.nan, index=sub.index)
            grid[key] = values.unstack().reindex(index=rows, columns=cols) if len(sub) else \
                pd.DataFrame(np.nan, index=rows, columns=cols)
        grid["status"] = grid["status"].fillna("missing").astype(object)
        out[p] = grid
    return out


def _panel(ax, values: pd.DataFrame, status: pd.DataFrame | None, metric: str, title: str, missing_text: str):
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    v = values.to_numpy(dtype=float)
    shown = np.log10(np.clip(v, 1e-3, 1e4)) if metric == "dor" else v
    norm = mcolors.TwoSlopeNorm(vmin=-2.5, vcenter=0.0, vmax=2.5) if metric == "dor" else \
        mcolors.TwoSlopeNorm(vmin=0.0, vcenter=0.5, vmax=1.0)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.88")
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=norm, aspect="auto")
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            state = status.iat[i, j] if status is not None else "done"
            if np.isnan(v[i, j]):
                text = state if state in ("missing", "failed") else missing_text
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="0.35")
                continue
            text = f"{v[i, j]:.3g}" if metric == "dor" else f"{v[i, j]:.2f}"
            if state == "did not learn":
                ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, fill=False, hatch="///", edgecolor="0.3", lw=0))
                text += "†"
            elif state == "collapsed":
                ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, fill=False, hatch="..", edgecolor="0.3", lw=0))
                text += "‡"
            dark = abs(norm(shown[i, j]) - 0.5) > 0.3
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
            if values.index[i] == values.columns[j]:
                ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, fill=False, edgecolor="black", lw=1.5))
    ax.set_xticks(range(v.shape[1]), values.columns, fontsize=7, rotation=30, ha="right")
    ax.set_yticks(range(v.shape[0]), values.index, fontsize=7)
    ax.set_title(title, fontsize=9)
    return im


def plot_heatmaps(long: pd.DataFrame, metric: str, *, arch: str = "resnet18", pretrains: Iterable[str] = PRETRAINS,
                  ours_label: str = "ours (cpu profile)", threshold_label: str = "threshold 0.5 (the paper's)"):
    """Heatmaps of ``metric`` (BA, AUC; DOR on a log scale): one row per pre-training, ours beside
    the paper's; rows = training composition, columns = test set; the diagonal outlined, "did not
    learn" cells hatched and marked †, missing records and cells the paper lacks in grey.
    ``threshold_label`` names the threshold rule of ``long`` (the paper's panels are at 0.5)."""
    import matplotlib.pyplot as plt

    pretrains = list(pretrains)
    inputs = heatmap_inputs(long, metric, arch=arch, pretrains=pretrains)
    fig, axes = plt.subplots(len(pretrains), 2, figsize=(10.5, 3.3 * len(pretrains)), squeeze=False,
                             constrained_layout=True)
    for row, p in zip(axes, pretrains):
        im = _panel(row[0], inputs[p]["ours"], inputs[p]["status"], metric, f"{PRETRAIN_LABELS[p]}: {ours_label}", "n/a")
        _panel(row[1], inputs[p]["paper"], None, metric, f"{PRETRAIN_LABELS[p]}: paper", "not in\npaper")
        row[0].set_ylabel("trained on", fontsize=8)
    bar = fig.colorbar(im, ax=axes, shrink=0.6)
    bar.set_label("log10 DOR" if metric == "dor" else METRIC_LABELS[metric])
    what = "" if metric == "auc" else f", {threshold_label}"
    fig.suptitle(f"{METRIC_LABELS[metric]}, {arch}{what}; diagonal outlined; hatched †: did not learn, "
                 "dotted ‡: collapsed", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------- seeds
SEED_CELL = ["arch", "pretrain", "composition", "test_set"]


def seed_table(long: pd.DataFrame, *, metrics: Iterable[str] = ("auc", "balanced_accuracy", "specificity"),
               seeds: Iterable[int] = (0, 1, 2), digits: int = 2) -> pd.DataFrame:
    """Per (arch, pre-training, composition, test set) of :func:`~covid_lib.report.records.matrix_long`
    rows: each metric's mean ± SD over the seeds that learned
    (:func:`covid_lib.analysis.seeds.seed_summary`) beside seed 0's interval, and the seeds in the
    mean, did not learn, collapsed or missing (of ``seeds``)."""
    metrics = list(metrics)
    if long.empty:
        return pd.DataFrame()
    summary = seed_summary(long, SEED_CELL, metrics, seeds=seeds)
    shown = seed_summary_table(summary, metrics, digits=digits)
    seed0 = summary[SEED_CELL].merge(long[long["seed"] == 0].drop_duplicates(SEED_CELL), on=SEED_CELL, how="left")
    out = pd.DataFrame({"pre-training": summary["pretrain"].map(PRETRAIN_LABELS), "trained on": summary["composition"],
                        "tested on": summary["test_set"]})
    for m in metrics:
        out[f"{METRIC_LABELS[m]} mean ± SD"] = shown[f"{METRIC_LABELS[m]} mean ± SD"]
        out[f"{METRIC_LABELS[m]} seed 0 [95% CI]"] = [_cell(*x, digits) for x in zip(
            seed0[m], seed0[f"{m}_low"], seed0[f"{m}_high"])]
    return pd.concat([out, shown[list(SEED_COLUMNS.values())]], axis=1)


# ------------------------------------------------------------------------------------------- C1
def diagonal_gap(path: str | Path, composition: str, *, test_sets: Iterable[str] = PAPER_TEST_SETS,
                 n_boot: int = 2000, seed: int = 0) -> dict:
    """One model's AUC on its own test set minus its mean AUC on the other test sets (``test_sets``,
    default the paper's four), with a patient-cluster bootstrap interval that resamples patients
    jointly over every test set (they share images: the CORDA test is inside each CORDA&X test)."""
    names = [composition, *[t for t in test_sets if t != composition]]
    parts = [cell_scores(path, t) for t in names]
    keep = [(n, p) for n, p in zip(names, parts) if len(p) and p["label"].nunique() == 2]
    if not keep or keep[0][0] != composition or len(keep) < 2:
        return {"auc_own": np.nan, "auc_off": np.nan, "gap": np.nan, "gap_low": np.nan, "gap_high": np.nan,
                "n_off_sets": len(keep) - 1 if keep else 0, "n_images_own": len(parts[0]), "n_patients": 0}
    y = np.concatenate([p["label"].to_numpy() for _, p in keep])
    s = np.concatenate([p["score"].to_numpy() for _, p in keep])
    g = np.concatenate([p["group_id"].astype(str).to_numpy() for _, p in keep])
    bounds = np.cumsum([0, *[len(p) for _, p in keep]])
    slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def stat(w: np.ndarray) -> np.ndarray:
        aucs = np.stack([weighted_auc(y[sl], s[sl], w[:, sl]) for sl in slices], axis=1)
        return aucs[:, 0] - aucs[:, 1:].mean(axis=1)

    aucs = [float(weighted_auc(y[sl], s[sl], np.ones((1, sl.stop - sl.start)))[0]) for sl in slices]
    low, high = (np.nan, np.nan)
    if n_boot:
        low, high, _ = percentile_interval(bootstrap_replicates(stat, len(y), groups=g, n_boot=n_boot, seed=seed))
    return {"auc_own": aucs[0], "auc_off": float(np.mean(aucs[1:])), "gap": aucs[0] - float(np.mean(aucs[1:])),
            "gap_low": low, "gap_high": high, "n_off_sets": len(aucs) - 1, "n_images_own": len(keep[0][1]),
            "n_patients": len(set(g))}


def c1_table(records: pd.DataFrame, *, test_sets: Iterable[str] = PAPER_TEST_SETS, n_boot: int = 2000) -> pd.DataFrame:
    """:func:`diagonal_gap` of every record (NaN for records that are missing or failed)."""
    rows = []
    for r in records.to_dict("records"):
        gap = diagonal_gap(r["path"], r["composition"], test_sets=test_sets, n_boot=n_boot) \
            if has_record(r["path"]) else {}
        rows.append({k: r[k] for k in ("arch", "pretrain", "composition", "seed", "status", "run_id")} | gap)
    cols = ["arch", "pretrain", "composition", "seed", "status", "run_id", "auc_own", "auc_off", "gap", "gap_low",
            "gap_high", "n_off_sets", "n_images_own", "n_patients"]
    return pd.DataFrame(rows).reindex(columns=cols)


def c1_paired(records: pd.DataFrame, *, base: str = "CORDA", n_boot: int = 2000) -> pd.DataFrame:
    """Each augmented-composition model (a) against the ``base``-only model (b) of the same arch,
    pre-training and seed, on the ``base`` test set and on a's own test set: paired DeLong on the
    same images and a patient-cluster interval of the AUC difference."""
    rows = []
    bases = records[records["composition"] == base]
    for a in records[records["composition"].isin(AUGMENTED)].to_dict("records"):
        b = bases[(bases["arch"] == a["arch"]) & (bases["pretrain"] == a["pretrain"]) & (bases["seed"] == a["seed"])]
        b = b.iloc[0].to_dict() if len(b) else {"status": "missing", "path": None}
        for t in (base, a["composition"]):
            row = {k: a[k] for k in ("arch", "pretrain", "composition", "seed")} | {
                "test_set": t, "status_a": a["status"], "status_b": b["status"],
                "did_not_learn": "did not learn" in (a["status"], b["status"])}
            if has_record(a["path"]) and has_record(b["path"]):
                row |= paired_auc(cell_scores(a["path"], t), cell_scores(b["path"], t), n_boot=n_boot)
            rows.append(row)
    cols = ["arch", "pretrain", "composition", "seed", "test_set", "status_a", "status_b", "did_not_learn"]
    return pd.DataFrame(rows).reindex(columns=[*cols, *PAIRED_COLUMNS])



# ------------------------------------------------------------------------------------ calibration
def calibration_table(records: pd.DataFrame, *, n_bins: int = 10, n_boot: int = 2000) -> pd.DataFrame:
    """Calibration of each model that learned, on its own test set (issue 16, item 5): the Brier
    score with a patient-cluster interval beside that of always predicting the test set's
    prevalence, the mean score against the share of COVID+ images, and the expected calibration
    error over ``n_bins`` equal-width bins. Models that did not learn or collapsed are listed
    with their status and no numbers."""
    from covid_lib.stats import bootstrap_ci

    rows = []
    for r in records.to_dict("records"):
        row = {"pretrain": r["pretrain"], "composition": r["composition"], "seed": r["seed"], "status": r["status"]}
        if r["status"] != "done" or not has_record(r["path"]):
            rows.append(row)
            continue
        s = cell_scores(r["path"], r["composition"])
        y, p = s["label"].to_numpy(float), s["score"].to_numpy(float)
        sq = (p - y) ** 2
        low, high = bootstrap_ci(sq, groups=s["group_id"].to_numpy(), n_boot=n_boot)
        bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
        ece = sum(abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).mean() for b in np.unique(bins))
        rows.append({**row, "images": len(y), "Brier": format_estimate(sq.mean(), low, high, 3),
                     "Brier of the prevalence": round(float(y.mean() * (1 - y.mean())), 3),
                     "mean score": round(float(p.mean()), 3), "share COVID+": round(float(y.mean()), 3),
                     "ECE": round(float(ece), 3)})
    out = pd.DataFrame(rows)
    return out.astype({"images": "Int64"}) if "images" in out else out


def plot_reliability(records: pd.DataFrame, *, n_bins: int = 10):
    """Reliability curves (mean score against the share of COVID+ per bin, own test set) of the
    models that learned: points on the diagonal are calibrated."""
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for r in records[records["status"] == "done"].to_dict("records"):
        s = cell_scores(r["path"], r["composition"])
        frac, mean = calibration_curve(s["label"], s["score"], n_bins=n_bins)
        ax.plot(mean, frac, marker="o", ms=3, label=f"{r['composition']} ({r['pretrain']}, s{r['seed']})")
    ax.set_xlabel("mean score in the bin")
    ax.set_ylabel("share of COVID+ images in the bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
