"""The audit report's two figures: every measure with its interval, and the label per metadata level."""

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
    ax.set_xlabel("score [95% patient-level interval]; | chance")
    ax.set_xlim(0, 1.02)
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
