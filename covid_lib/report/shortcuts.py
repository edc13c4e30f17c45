"""Age as a shortcut, read from run records, and the figures of the shortcuts chapter.

The ChestXRay stand-in (Kermany) holds children aged 1-5 only, the RSNA stand-in (NIH) adults
only, and both are COVID-. Every COVID record scores every composition's test set, so the same
Kermany and NIH test images are scored by every model (Tartaglione et al., Table II). If a
model's COVID score separates children from adults *at the same disease status* (pneumonia or
not), it reads age or source, not COVID: :func:`age_table`. No model is trained here.

Example:
    >>> import pandas as pd
    >>> age_status(pd.DataFrame(columns=["task"]), ["CORDA"], [None])["state"].tolist()
    ['missing']
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from covid_lib.analysis.shortcuts import image_features
from covid_lib.metrics import format_estimate
from covid_lib.report.common import _color, label_panels
from covid_lib.report.training import run_row
from covid_lib.stats import bootstrap_ci, weighted_auc

#: Where each COVID- source is found in a record's scores: the test set that borrows it.
AGE_TEST_SETS = {"kermany": "CORDA&ChestXRay", "nih": "CORDA&RSNA"}
#: The groups compared (positives "children", negatives "adults"), as (name, children rule, adults rule).
AGE_COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("children with pneumonia vs adults without COVID (all NIH)", "kermany pneumonia", "nih all"),
    ("children with pneumonia vs adults with pneumonia", "kermany pneumonia", "nih pneumonia"),
    ("children without pneumonia vs adults without finding", "kermany normal", "nih normal"),
    ("all children vs all adults", "kermany all", "nih all"),
    ("within children: pneumonia vs normal", "kermany pneumonia", "kermany normal"),
    ("within adults: pneumonia vs no finding", "nih pneumonia", "nih normal"),
)


def age_status(index: pd.DataFrame, compositions, pretrains, *, arch: str = "resnet18", profile: str = "cpu",
               seed: int = 0, pipeline: str = "paper") -> pd.DataFrame:
    """One row per expected COVID record: ``composition, pretrain, run_id, state`` (``done``,
    ``did not learn`` or ``missing``), so that a chapter shows what it lacks."""
    rows = []
    for c in compositions:
        for p in pretrains:
            r = None if index.empty else run_row(index, task="covid", composition=c, arch=arch, pretrain=p,
                                                 profile=profile, seed=seed, pipeline=pipeline)
            state = "missing" if r is None else ("did not learn" if r["did_not_learn"] else "done")
            rows.append({"arch": arch, "composition": c, "pretrain": p or "none",
                         "run_id": None if r is None else r["run_id"], "state": state,
                         "path": None if r is None else r["path"]})
    return pd.DataFrame(rows, columns=["arch", "composition", "pretrain", "run_id", "state", "path"])


def age_scores(status: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """COVID scores of the Kermany and NIH test images for each available record of ``status``,
    with ``age_group`` (children / adults), ``pneumonia`` (0/1) and the record's ``state``.

    ``manifest`` supplies ``pneumonia`` and ``age`` per ``(source, image_id)`` (e.g. from
    :func:`covid_lib.data.global_splits`).
    """
    meta = manifest[manifest["source"].isin(list(AGE_TEST_SETS))][["source", "image_id", "pneumonia", "age"]]
    meta = meta.drop_duplicates(["source", "image_id"])
    parts = []
    for _, r in status[status["state"] != "missing"].iterrows():
        s = pd.read_csv(r["path"] / "scores.csv", dtype={"image_id": str, "group_id": str, "patient_id": str})
        for source, test_set in AGE_TEST_SETS.items():
            part = s[(s["test_set"] == test_set) & (s["source"] == source)]
            parts.append(part.assign(arch=r["arch"], composition=r["composition"], pretrain=r["pretrain"],
                                     run_id=r["run_id"], state=r["state"]))
    cols = ["arch", "composition", "pretrain", "run_id", "state", "source", "image_id", "group_id", "score",
            "pneumonia", "age", "age_group"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True).merge(meta, on=["source", "image_id"], how="left",
                                                     validate="many_to_one")
    out["age_group"] = out["source"].map({"kermany": "children (1-5)", "nih": "adults"})
    out["pneumonia"] = out["pneumonia"].astype(int)
    return out[cols]


def _select(scores: pd.DataFrame, rule: str) -> pd.Series:
    source, which = rule.split()
    sel = scores["source"] == source
    if which == "pneumonia":
        sel &= scores["pneumonia"] == 1
    elif which == "normal":
        sel &= scores["pneumonia"] == 0
    return sel


def group_auc(scores: pd.DataFrame, positive: pd.Series, negative: pd.Series, *, n_boot: int = 2000,
              seed: int = 0) -> dict:
    """AUC of ``score`` for positive against negative rows, with a patient-cluster bootstrap
    interval (``group_id`` resampled whole); NaN when a side is empty."""
    both = scores[positive | negative]
    y = positive[positive | negative].to_numpy()
    out = {"n children": int(y.sum()), "n adults": int((~y).sum())}
    if y.all() or not y.any():
        return {**out, "auc": math.nan, "auc_low": math.nan, "auc_high": math.nan}
    s = both["score"].to_numpy(float)
    auc = float(weighted_auc(y, s, np.ones((1, len(y))))[0])
    low, high = bootstrap_ci(y, lambda w: weighted_auc(y, s, w), groups=both["group_id"].astype(str).to_numpy(),
                             n_boot=n_boot, seed=seed)
    return {**out, "auc": auc, "auc_low": low, "auc_high": high}


def age_table(scores: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per record and comparison of :data:`AGE_COMPARISONS`: the AUC of the COVID score for the
    first group against the second (0.5: the score ignores the difference; 1: the first group
    always scores higher), with its patient-cluster interval. The last two rows compare disease
    within one age group, for contrast. Records that did not learn keep their rows, flagged."""
    rows = []
    for (arch, comp, pre, run_id, state), s in scores.groupby(["arch", "composition", "pretrain", "run_id", "state"],
                                                              sort=False):
        s = s.reset_index(drop=True)
        for name, pos, neg in AGE_COMPARISONS:
            g = group_auc(s, _select(s, pos), _select(s, neg), n_boot=n_boot, seed=seed)
            rows.append({"arch": arch, "trained on": comp, "pretrain": pre, "comparison": name, **g,
                         "AUC [95% CI]": format_estimate(g["auc"], g["auc_low"], g["auc_high"]),
                         "learned": "no: did not learn" if state == "did not learn" else "yes", "run_id": run_id})
    return pd.DataFrame(rows)


def with_model_label(age_auc: pd.DataFrame) -> pd.DataFrame:
    """:func:`age_table` with a ``model`` column: ``"resnet18 · CORDA · kermany"``, ``(did not learn)``
    appended where the model did not learn."""
    out = age_auc.copy()
    out["model"] = (out["arch"] + " · " + out["trained on"] + " · " + out["pretrain"]
                    + out["learned"].map({"yes": "", "no: did not learn": " (did not learn)"}))
    return out


def age_matrix(age_auc: pd.DataFrame) -> pd.DataFrame:
    """:func:`with_model_label`'s table as a matrix for reading: a row per model, a column per
    comparison of :data:`AGE_COMPARISONS` (in their order), cells ``"0.81 [0.70, 0.93]"``."""
    wide = age_auc.pivot_table(index="model", columns="comparison", values="AUC [95% CI]", aggfunc="first", sort=False)
    wide.columns.name = None
    return wide[[c[0] for c in AGE_COMPARISONS if c[0] in wide]].reset_index()


def age_group_sizes(age_auc: pd.DataFrame) -> pd.DataFrame:
    """How many images each comparison of :data:`AGE_COMPARISONS` compares (the same for every model)."""
    n = age_auc.drop_duplicates("comparison")[["comparison", "n children", "n adults"]]
    return n.rename(columns={"n children": "n first group", "n adults": "n second group"}).reset_index(drop=True)


def probe_display(table: pd.DataFrame) -> pd.DataFrame:
    """The source probe's table (:attr:`covid_lib.analysis.shortcuts.source_probe`'s ``table``) for
    reading: per step, the pipeline, the images and test patients, accuracy and balanced accuracy
    with their intervals, and chance."""
    from covid_lib.analysis.shortcuts import PROBE_STEPS

    t = table
    return pd.DataFrame({
        "step": t["step"], "pipeline": t["step"].map(PROBE_STEPS),
        "train / test images": t["n train"].astype(str) + " / " + t["n test"].astype(str),
        "test patients": t["test patients"],
        "accuracy [95% CI]": [format_estimate(v, lo, hi) for v, lo, hi in
                              zip(t["accuracy"], t["accuracy_low"], t["accuracy_high"])],
        "balanced accuracy [95% CI]": [format_estimate(v, lo, hi) for v, lo, hi in
                                       zip(t["balanced_accuracy"], t["balanced_accuracy_low"],
                                           t["balanced_accuracy_high"])],
        "chance (accuracy / balanced)": [f"{a:.2f} / {b:.2f}" for a, b in
                                         zip(t["chance accuracy"], t["chance balanced accuracy"])]})


def mask_display(masks: pd.DataFrame) -> pd.DataFrame:
    """The mask baseline (:func:`covid_lib.analysis.shortcuts.mask_baseline`) for reading: per
    composition, the images, the test sources, the rejections and the AUC with its interval."""
    return masks.assign(**{"AUC [95% CI]": [format_estimate(v, lo, hi) for v, lo, hi in
                                            zip(masks["auc"], masks["auc_low"], masks["auc_high"])]})[
        ["composition", "n train", "test COVID+/COVID-", "test sources", "rejected by the chain", "AUC [95% CI]",
         "interval"]].reset_index(drop=True)


def plot_age_scores(scores: pd.DataFrame):
    """Strip plot of COVID scores per record: children / adults, with and without pneumonia."""
    import matplotlib.pyplot as plt

    runs = scores.drop_duplicates("run_id")
    ncol = min(max(len(runs), 1), 4)
    nrow = math.ceil(max(len(runs), 1) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.3 * nrow), sharey=True, squeeze=False)
    cats = [("kermany", 0, "children\nnormal"), ("kermany", 1, "children\npneumonia"),
            ("nih", 0, "adults\nno finding"), ("nih", 1, "adults\npneumonia")]
    rng = np.random.default_rng(0)
    for ax in axes.ravel()[len(runs):]:
        ax.set_visible(False)
    for ax, (_, r) in zip(axes.ravel(), runs.iterrows()):
        s = scores[scores["run_id"] == r["run_id"]]
        for x, (src, pn, _) in enumerate(cats):
            v = s[(s["source"] == src) & (s["pneumonia"] == pn)]["score"]
            ax.scatter(x + rng.uniform(-0.2, 0.2, len(v)), v, s=8, alpha=0.6, color=_color(src))
            if len(v):
                ax.hlines(v.median(), x - 0.3, x + 0.3, color="black")
        flag = " (did not learn)" if r["state"] == "did not learn" else ""
        ax.set_title(f"{r['arch']} on {r['composition']}\npretrain {r['pretrain']}{flag}", fontsize=8)
        ax.set_xticks(range(len(cats)), [c[2] for c in cats], fontsize=7)
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    for row in axes:
        row[0].set_ylabel("COVID score (all COVID-)")
    fig.tight_layout()
    return fig


def plot_confusions(confusion: dict[str, pd.DataFrame]):
    """One row-normalised confusion matrix per step (share of each true source's test images)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(confusion), figsize=(2.9 * len(confusion), 3.0), squeeze=False)
    for ax, (step, cm) in zip(axes[0], confusion.items()):
        share = cm.div(cm.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
        ax.imshow(share.to_numpy(), vmin=0, vmax=1, cmap="Blues")
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, int(cm.iat[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share.iat[i, j] > 0.6 else "black")
        ax.set_xticks(range(cm.shape[1]), cm.columns, rotation=45, fontsize=7)
        ax.set_yticks(range(cm.shape[0]), cm.index, fontsize=7)
        ax.set_title(step, fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
    axes[0][0].set_ylabel("true source", fontsize=8)
    fig.tight_layout()
    return fig


def plot_mean_images(images: dict[str, np.ndarray], sources: np.ndarray, *, side: int = 32):
    """The mean down-sampled image per source (rows) and step (columns): what the probe averages."""
    import matplotlib.pyplot as plt

    names = sorted(set(sources))
    fig, axes = plt.subplots(len(names), len(images), figsize=(1.6 * len(images), 1.6 * len(names)), squeeze=False)
    for j, imgs in enumerate(images.values()):
        small = image_features(imgs, side=side, bins=1)[:, : side * side]
        for i, src in enumerate(names):
            axes[i][j].imshow(small[sources == src].mean(axis=0).reshape(side, side), cmap="gray", vmin=0, vmax=1)
    label_panels(axes, images, names)
    fig.tight_layout()
    return fig


def plot_intervals(table: pd.DataFrame, label: str, *, value: str = "auc", chance: float | None = 0.5,
                   xlabel: str = ""):
    """Point and interval per row of ``table`` (columns ``value``, ``value_low``, ``value_high``)."""
    import matplotlib.pyplot as plt

    t = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.5, 0.22 * len(t) + 1.1))  # 0.22 in a row: two lines of its 8-pt label
    ax.errorbar(t[value], t.index, xerr=[t[value] - t[f"{value}_low"], t[f"{value}_high"] - t[value]],
                fmt="o", mfc="white", mec="black", ecolor="tab:blue", capsize=2)
    if chance is not None:
        ax.axvline(chance, color="grey", lw=0.8, ls="--")
    ax.set_yticks(t.index, t[label], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel(xlabel or f"{value} (95% CI over patients)")
    fig.tight_layout()
    return fig


def mask_sentence(masks: pd.DataFrame, *, near_perfect: float = 0.9) -> str:
    """What the lung-mask baseline (:func:`covid_lib.analysis.shortcuts.mask_baseline`) says, per
    composition, as Markdown: its AUC with the interval, and whether the interval lies above 0.5,
    under it, or holds it; then how close the strongest comes to a perfect label.

    Example:
        >>> t = pd.DataFrame({"composition": ["A", "B"], "auc": [0.61, 0.81], "auc_low": [0.47, 0.7],
        ...                   "auc_high": [0.76, 0.9]})
        >>> print(mask_sentence(t).splitlines()[0])
        - **A**: AUC 0.61 [0.47, 0.76]: the interval holds 0.5, so no evidence that the mask carries the label.
    """
    lines, done = [], masks[masks["auc"].notna()]
    for r in done.itertuples():
        if r.auc_low > 0.5:
            word = "the interval lies above 0.5, so the mask alone carries part of the label"
        elif r.auc_high < 0.5:
            word = "the interval lies under 0.5, so the mask shape runs against the label"
        else:
            word = "the interval holds 0.5, so no evidence that the mask carries the label"
        lines.append(f"- **{r.composition}**: AUC {format_estimate(r.auc, r.auc_low, r.auc_high)}: {word}.")
    if len(done):
        top = done.loc[done["auc"].idxmax()]
        closeness = ("close to a perfect label" if top["auc"] >= near_perfect
                     else "far from a perfect label (AUC 1), yet above chance")
        if top["auc_low"] <= 0.5:
            closeness = "not distinguishable from chance"
        lines.append(f"\nThe strongest, {top['composition']} at AUC {top['auc']:.2f}, is {closeness}: "
                     "this much of the label is in the lungs' outline, without a single grey level of the image.")
    return "\n".join(lines) or "no mask baseline computed"
