"""Figures and tables of the confounders chapter: what each composition's labels travel with,
and what a metadata-only classifier makes of it (Tartaglione et al. 2020, Sec. III "hidden biases").

Plain data in (:func:`covid_lib.data.confounders.confounder_counts`,
:func:`covid_lib.analysis.metadata_baseline.baseline_table`), DataFrames and pyplot-free figures out.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from covid_lib.data.confounders import FACTORS, level_order
from covid_lib.metrics import format_estimate
from covid_lib.report.common import SOURCE_COLORS

_LABELS = (1, 0)
_LABEL_TEXT = {1: "COVID+", 0: "COVID−"}


def _level_colors(factor: str, levels: Sequence[str]) -> dict[str, str]:
    if factor == "source":
        return {lv: SOURCE_COLORS.get(lv, "#7f7f7f") for lv in levels}
    cmap = colormaps["viridis"]
    colors = {lv: cmap(i / max(len(levels) - 1, 1)) for i, lv in enumerate(levels)}
    for missing in ("undated", "unknown"):
        if missing in colors:
            colors[missing] = "#bdbdbd"
    return colors


def plot_confounders(counts: pd.DataFrame, *, part: str = "train+val",
                     factors: Sequence[str] = FACTORS, compositions: Sequence[str] | None = None,
                     size: float = 2.3) -> Figure:
    """Stacked bars: for each factor (row) and composition (column), the share of each level among
    the COVID+ and the COVID− images of ``part``; grey marks undated / unknown."""
    c = counts[counts["part"] == part]
    compositions = list(compositions or dict.fromkeys(c["composition"]))
    fig = Figure(figsize=(size * len(compositions) + 1.8, 0.95 * len(factors) + 1.0), layout="constrained")
    axes = fig.subplots(len(factors), len(compositions), squeeze=False, sharex=True)
    for r, factor in enumerate(factors):
        levels = level_order(factor, c.loc[c["factor"] == factor, "level"])
        colors = _level_colors(factor, levels)
        for k, name in enumerate(compositions):
            ax = axes[r, k]
            cell = c[(c["composition"] == name) & (c["factor"] == factor)]
            for y, label in enumerate(_LABELS):
                left = 0.0
                for lv in levels:
                    share = cell.loc[(cell["label"] == label) & (cell["level"] == lv), "share"].sum()
                    if share > 0:
                        ax.barh(y, share, left=left, color=colors[lv], edgecolor="white", linewidth=0.5)
                    left += share
            ax.set_yticks([0, 1], [_LABEL_TEXT[lab] for lab in _LABELS] if k == 0 else ["", ""], fontsize=8)
            ax.set_xlim(0, 1)
            ax.invert_yaxis()
            ax.tick_params(axis="x", labelsize=7)
            if r == 0:
                ax.set_title(name, fontsize=9)
            if k == 0:
                ax.set_ylabel(factor, fontsize=9)
        handles = [Patch(facecolor=colors[lv]) for lv in levels]
        axes[r, -1].legend(handles, levels, fontsize=6.5, loc="center left", bbox_to_anchor=(1.02, 0.5),
                           frameon=False, ncol=1 if len(levels) <= 5 else 2)
    fig.suptitle(f"Share of each level among the {part} images, per label", fontsize=10)
    return fig


def baseline_matrix(table: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """The baseline's AUCs in the Table II layout: a row per training composition, a column per
    test set, cells ``"0.91 [0.74, 1.00]"``."""
    t = table.copy()
    t["cell"] = [format_estimate(a, lo, hi, digits) for a, lo, hi in zip(t["auc"], t["auc_low"], t["auc_high"])]
    order = list(dict.fromkeys(t["composition"]))
    tests = list(dict.fromkeys(t["test_set"]))
    wide = t.pivot_table(index="composition", columns="test_set", values="cell", aggfunc="first")
    wide = wide.loc[order, tests]
    wide.index.name, wide.columns.name = "trained on", "test set"
    return wide


def plot_baseline_matrix(table: pd.DataFrame, *, title: str = "Metadata-only AUC") -> Figure:
    """Heatmap of the baseline's AUC, training composition x test set, with the interval in each
    cell; the diagonal (own test set) is framed."""
    order = list(dict.fromkeys(table["composition"]))
    tests = list(dict.fromkeys(table["test_set"]))
    get = lambda col: table.pivot_table(index="composition", columns="test_set", values=col).loc[order, tests]
    auc, low, high = get("auc"), get("auc_low"), get("auc_high")
    fig = Figure(figsize=(1.5 * len(tests) + 2.5, 0.75 * len(order) + 1.6), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(auc.to_numpy(dtype=float), cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(order)):
        for j in range(len(tests)):
            a, lo, hi = auc.iat[i, j], low.iat[i, j], high.iat[i, j]
            text = "-" if np.isnan(a) else f"{a:.2f}\n[{lo:.2f}, {hi:.2f}]"
            ax.text(j, i, text, ha="center", va="center", fontsize=7.5)
            if order[i] == tests[j]:
                ax.add_patch(_frame(j, i))
    ax.set_xticks(range(len(tests)), tests, rotation=25, ha="right", fontsize=8)
    ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.set_xlabel("test set")
    ax.set_ylabel("trained on")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="AUC")
    return fig


def _frame(x: float, y: float) -> Rectangle:
    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5)


def importance_table(importances: pd.DataFrame) -> pd.DataFrame:
    """Permutation importance (drop of training AUC) per composition and feature group."""
    p = importances[importances["kind"] == "permutation"]
    wide = p.pivot_table(index="composition", columns="group", values="value", sort=False)
    return wide.round(3)


def top_coefficients(importances: pd.DataFrame, *, n: int = 4) -> pd.DataFrame:
    """The ``n`` largest logistic weights (in absolute value) of each composition, as
    ``"year (+2.29)"`` strings: what pushes the baseline towards COVID+ (+) or COVID− (−)."""
    c = importances[importances["kind"] == "coefficient"].copy()
    rows = {}
    for name, part in c.groupby("composition", sort=False):
        top = part.reindex(part["value"].abs().sort_values(ascending=False).index).head(n)
        rows[name] = [f"{f} ({v:+.2f})" for f, v in zip(top["feature"], top["value"])]
    return pd.DataFrame(rows, index=[f"#{i + 1}" for i in range(n)]).T.rename_axis("composition")


def ablation_table(ablation: pd.DataFrame) -> pd.DataFrame:
    """Own-test AUC with every feature group, each group alone and all groups but it."""
    a = ablation.copy()
    a["column"] = [("all" if s == "all" else f"{g} {s}") for g, s in zip(a["group"], a["setting"])]
    wide = a.pivot_table(index="composition", columns="column", values="auc", sort=False)
    groups = list(dict.fromkeys(a.loc[a["setting"] != "all", "group"]))
    columns = ["all"] + [f"{g} alone" for g in groups] + [f"{g} without" for g in groups]
    return wide[[c for c in columns if c in wide]].round(2)


def ablation_display(ablation: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """:func:`ablation_table` in a layout that fits the page: a row per feature group, a column per
    composition, cells ``"alone / without"`` (the own-test AUC of the group alone, and of all groups
    but it), and a first row ``all groups`` with the AUC of the full baseline."""
    wide = ablation_table(ablation)
    groups = [c[: -len(" alone")] for c in wide.columns if c.endswith(" alone")]
    fmt = lambda v: "–" if pd.isna(v) else f"{v:.{digits}f}"
    rows = [{"feature group": "all groups", **{n: fmt(wide.loc[n, "all"]) for n in wide.index}}]
    for g in groups:
        rows.append({"feature group": f"{g}: alone / without",
                     **{n: f"{fmt(wide.loc[n, f'{g} alone'])} / {fmt(wide.loc[n, f'{g} without'])}"
                        for n in wide.index}})
    return pd.DataFrame(rows)
