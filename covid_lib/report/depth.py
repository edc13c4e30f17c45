"""How deep to go (Tartaglione et al. 2020, Sec. IV-D, Table III; Conv8) and the pre-processing
ablation (Sec. IV-C), each as paired comparisons of two models on the same test images.

- C3: ResNet-50 (and Conv8) against ResNet-18 with the same pre-training, composition and seed.
- C6: the pipeline ``none`` (no equalisation, no lung mask) against the paper's chain, same model.

Each compared cell gets a paired DeLong test (:func:`covid_lib.stats.delong_test`) on the images
both models scored (the chain may reject images: the intersection is used and counted) and a
patient-cluster bootstrap interval of the AUC difference (:mod:`covid_lib.report.records`). These
cells describe; the claims are decided by the protocol (:mod:`covid_lib.analysis.protocol`,
:func:`covid_lib.report.judge.claim_markdown`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from covid_lib.metrics import format_estimate
from covid_lib.report.records import PRETRAIN_LABELS, TEST_SETS, paired_cells, paired_table

#: Numbers the paper gives only in its text (Sec. IV-A, IV-C and IV-D), not in its tables.
PAPER_TEXT = pd.DataFrame([
    {"claim": "C3", "what": "Conv8 trained on CORDA (encoder not stated), tested on CORDA", "balanced_accuracy": 0.61,
     "dor": 2.38, "where": "Sec. IV-D"},
    {"claim": "C3", "what": "ResNet-18, RSNA pre-training, trained on CORDA, tested on CORDA (quoted beside it)",
     "balanced_accuracy": 0.67, "dor": 4.78, "where": "Sec. IV-D"},
    {"claim": "C6", "what": "ResNet-18, ChestXRay pre-training, CORDA&ChestXRay, no pre-processing, tested on CORDA",
     "balanced_accuracy": 0.73, "dor": 8.31, "where": "Sec. IV-C"},
    {"claim": "C6", "what": "the same with pre-processing, tested on CORDA&ChestXRay (the comparison the paper draws)",
     "balanced_accuracy": 0.91, "dor": 122.67, "where": "Sec. IV-A, Table II"},
])
#: A median AUC difference this small counts as "not better" (below what ~100-image test sets resolve).
TOLERANCE = 0.02


def depth_cells(other: pd.DataFrame, resnet18: pd.DataFrame, *, n_boot: int = 2000) -> pd.DataFrame:
    """Each record of ``other`` (ResNet-50 or Conv8) against ResNet-18 with the same pre-training,
    composition and seed, on every test set (a = other, b = ResNet-18)."""
    ref = resnet18[(resnet18["arch"] == "resnet18") & (resnet18["pipeline"] == "paper")]
    cells = paired_cells(other, ref, on=("pretrain", "composition", "seed"), n_boot=n_boot)
    cells.insert(0, "arch", other["arch"].iloc[0] if len(other) else None)
    return cells


def ablation_cells(without: pd.DataFrame, with_chain: pd.DataFrame, *, n_boot: int = 2000) -> pd.DataFrame:
    """Each pipeline-``none`` record against the paper-pipeline record of the same arch, pre-training,
    composition and seed, on every test set (a = without the chain, b = with it)."""
    ref = with_chain[with_chain["pipeline"] == "paper"]
    return paired_cells(without, ref, on=("arch", "pretrain", "composition", "seed"), n_boot=n_boot)


def paper_depth(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's own AUC difference, Table III (ResNet-50) minus Table II (ResNet-18), per cell."""
    keys = ["pretrain", "composition", "test_set"]
    r50 = paper[paper["arch"] == "resnet50"].set_index(keys)["auc"]
    r18 = paper[(paper["arch"] == "resnet18") & (paper["paper_table"] == "II")].set_index(keys)["auc"]
    out = pd.DataFrame({"paper_auc_resnet50": r50, "paper_auc_resnet18": r18.reindex(r50.index)})
    out["paper_diff"] = out["paper_auc_resnet50"] - out["paper_auc_resnet18"]
    return out.reset_index()


def _not_better(s: dict, min_cells: int) -> str:
    if s["n_cells"] < min_cells:
        return "inconclusive"
    if s["n_better"] > s["n_worse"] and s["median_diff"] > 0:
        return "not reproduced"
    if s["n_better"] <= s["n_worse"] and s["median_diff"] <= TOLERANCE:
        return "reproduced"
    return "inconclusive"


def plot_paired(cells: pd.DataFrame, *, title: str, label: str = "ΔAUC", alpha: float = 0.05):
    """ΔAUC (a - b) of paired cells, one panel per pre-training: rows = training composition,
    columns = test set; ``*`` marks paired DeLong p < ``alpha``, "did not learn" cells are hatched,
    cells without a pair are grey."""
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from covid_lib.grid import COMPOSITION_ORDER

    pretrains = list(dict.fromkeys(cells["pretrain"]))
    fig, axes = plt.subplots(1, max(len(pretrains), 1), figsize=(5.4 * max(len(pretrains), 1), 3.6), squeeze=False,
                             constrained_layout=True)
    norm = mcolors.TwoSlopeNorm(vmin=-0.3, vcenter=0.0, vmax=0.3)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.88")
    im = None
    for ax, p in zip(axes[0], pretrains):
        sub = cells[cells["pretrain"] == p].set_index(["composition", "test_set"])
        rows = [c for c in COMPOSITION_ORDER if c in set(sub.index.get_level_values(0))]
        grid = {k: sub[k].unstack().reindex(index=rows, columns=list(TEST_SETS)) for k in ("diff", "p", "did_not_learn")}
        d = grid["diff"].to_numpy(dtype=float)
        im = ax.imshow(np.ma.masked_invalid(d), cmap=cmap, norm=norm, aspect="auto")
        for i in range(d.shape[0]):
            for j in range(d.shape[1]):
                if np.isnan(d[i, j]):
                    ax.text(j, i, "no pair", ha="center", va="center", fontsize=7, color="0.35")
                    continue
                star = "*" if grid["p"].iat[i, j] < alpha else ""
                ax.text(j, i, f"{d[i, j]:+.2f}{star}", ha="center", va="center", fontsize=8)
                if grid["did_not_learn"].iat[i, j] in (True, 1):
                    ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, fill=False, hatch="///", edgecolor="0.3", lw=0))
                if rows[i] == TEST_SETS[j]:
                    ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, fill=False, edgecolor="black", lw=1.5))
        ax.set_xticks(range(len(TEST_SETS)), TEST_SETS, fontsize=7, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(PRETRAIN_LABELS.get(p, p), fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8).set_label(label)
    fig.suptitle(f"{title} (* paired DeLong p < {alpha:g}; hatched: a model did not learn)", fontsize=10)
    return fig


def ablation_table(long_without: pd.DataFrame, long_with: pd.DataFrame, cells: pd.DataFrame, *,
                   digits: int = 2) -> pd.DataFrame:
    """BA, DOR and AUC without and with the chain on every test set (``matrix_long`` of both record
    sets), beside the paired ΔAUC of :func:`ablation_cells`."""
    keys = ["arch", "pretrain", "composition", "seed", "test_set"]
    cols = ["status", "n", "balanced_accuracy", "balanced_accuracy_low", "balanced_accuracy_high", "dor", "dor_low",
            "dor_high", "auc", "auc_low", "auc_high"]
    both = long_without[keys + cols].merge(long_with[keys + cols], on=keys, how="left", suffixes=("_none", "_chain"))
    both = both.merge(cells[keys + ["diff", "boot_low", "boot_high", "p", "n_common"]], on=keys, how="left")

    def est(row: pd.Series, m: str, k: str) -> str:
        v = row[f"{m}_{k}"]
        return "–" if pd.isna(v) else format_estimate(v, row[f"{m}_low_{k}"], row[f"{m}_high_{k}"], digits)

    out = pd.DataFrame({"pre-training": both["pretrain"].map(PRETRAIN_LABELS), "trained on": both["composition"],
                        "tested on": both["test_set"]})
    for m, label in (("balanced_accuracy", "BA"), ("dor", "DOR"), ("auc", "AUC")):
        for k, name in (("none", "no chain"), ("chain", "chain")):
            out[f"{label} {name}"] = [est(r, m, k) for _, r in both.iterrows()]
    out["ΔAUC [patient 95% CI]"] = [("–" if pd.isna(d) else format_estimate(d, lo, hi, digits))
                                    for d, lo, hi in zip(both["diff"], both["boot_low"], both["boot_high"])]
    out["DeLong p"] = both["p"].map(lambda p: "–" if pd.isna(p) else f"{p:.3f}")
    out["n common"] = both["n_common"].map(lambda n: "–" if pd.isna(n) else str(int(n)))
    out["status (no chain / chain)"] = both["status_none"] + " / " + both["status_chain"].fillna("missing")
    return out


__all__ = ["PAPER_TEXT", "TOLERANCE", "TEST_SETS", "depth_cells", "ablation_cells", "paired_table", "paper_depth",
           "ablation_table",
           "plot_paired"]
