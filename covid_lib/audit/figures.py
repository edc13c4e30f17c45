"""The audit report's figures: every measure with its interval, the label per metadata level, and
(``--model``) the model's scores per class and source."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def forest(findings: pd.DataFrame, ax=None):
    """Each predictability measure (not the leakage shares) as a point with its 95% interval, the
    chance level as a tick; flagged ones in red. Returns the axes."""
    f = findings[findings["metric"] != "share"].iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.3 * len(f) + 1))
    y = np.arange(len(f))
    colour = np.where(f["flag"], "tab:red", "tab:grey")
    ax.hlines(y, f["low"], f["high"], color=colour)
    ax.scatter(f["value"], y, c=colour, zorder=3)
    ax.scatter(f["chance"], y, marker="|", color="black", s=80)
    ax.set_yticks(y, [f"{m} -> {t} ({k})" for m, t, k in zip(f["measure"], f["target"], f["metric"])])
    ax.set_xlabel("score [95% patient-level interval]; | chance (0 for the model's gaps and shortfalls)")
    low = np.nanmin(f["low"].to_numpy(float)) if len(f) else 0.0
    ax.set_xlim(min(0.0, low - 0.02) if np.isfinite(low) else 0.0, 1.02)  # model gaps can be negative
    return ax


def counts(counts: pd.DataFrame, *, max_levels: int = 8):
    """Share of each class per level of each factor (stacked bars, levels with their image count)."""
    classes = [c for c in counts.columns if c not in ("factor", "level", "total")]
    factors = list(dict.fromkeys(counts["factor"]))
    fig, axes = plt.subplots(1, len(factors), figsize=(2.3 * len(factors), 2.8), sharey=True, squeeze=False)
    for ax, factor in zip(axes[0], factors):
        t = counts[counts["factor"] == factor].nlargest(max_levels, "total")
        share = t[classes].div(t["total"], axis=0)
        bottom = np.zeros(len(t))
        for c in classes:
            ax.bar(range(len(t)), share[c], bottom=bottom, label=c)
            bottom += share[c].to_numpy()
        ax.set_xticks(range(len(t)), [f"{lv} ({n})" for lv, n in zip(t["level"], t["total"])], rotation=60,
                      ha="right", fontsize=7)
        ax.set_title(factor, fontsize=9)
    axes[0][0].set_ylabel("share of images")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    return fig


def model_scores(scores: pd.DataFrame, *, by: str = "source", max_levels: int = 8):
    """The model's score of each image per level of ``by``, one box per class (:mod:`covid_lib.audit.model`)."""
    levels = list(scores[by].astype(str).value_counts().index[:max_levels])
    fig, ax = plt.subplots(figsize=(1.2 * len(levels) + 2, 3))
    for k, (y, colour) in enumerate(((0, "tab:blue"), (1, "tab:red"))):
        data = [scores.loc[(scores[by].astype(str) == lv) & (scores["y"] == y), "score"].to_numpy() for lv in levels]
        pos = np.arange(len(levels)) + (k - 0.5) * 0.35
        keep = [i for i, d in enumerate(data) if len(d)]
        if keep:
            ax.boxplot([data[i] for i in keep], positions=pos[keep], widths=0.3, patch_artist=True,
                       boxprops={"facecolor": colour, "alpha": 0.5}, medianprops={"color": "black"})
        ax.plot([], [], color=colour, lw=6, alpha=0.5, label="positive" if y else "negative")
    ax.set_xticks(range(len(levels)), levels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("model score (COVID+ probability)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    return fig
