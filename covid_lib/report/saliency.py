"""Tables and figures of the saliency chapter ("Where the model looks").

For every recorded model of a list of specs (:func:`covid_lib.report.records.spec_records`), the
COVID+ saliency maps of test images of every source (:mod:`covid_lib.analysis.saliency`), grouped by
whether the model was trained on the source (``trained on``), saw it only in its pneumonia
pre-training (``pre-trained on``) or never saw it (``unseen``); the in-lung share beside the
uniform baseline, the excess over it, the effect of pre-processing (pipeline ``none`` against its
``paper`` twin, on the same images) and galleries. No model is trained here.

Example:
    >>> seen_status("nih", trained={"cohen"}, pretrained=set())
    'unseen'
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from covid_lib.analysis.embed import feature_rows
from covid_lib.analysis.saliency import SaliencyResult, excess_difference, model_saliency, share_summary
from covid_lib.data import compose, limit_rows
from covid_lib.metrics import format_estimate
from covid_lib.runs import checkpoint_path

MODEL_KEYS = ["arch", "pretrain", "pipeline", "composition", "seed", "run_id", "status"]
SEEN_ORDER = ("trained on", "pre-trained on", "unseen")


# --------------------------------------------------------------------------------------- inputs
def saliency_rows(data_root: str | os.PathLike | None = None, *, n_images: int | None = 40, seed: int = 0,
                  split_seed: int = 0) -> pd.DataFrame:
    """Test images of every source (:func:`covid_lib.analysis.embed.feature_rows`: the sets of Fig. 3 and
    Hannover), at most ``n_images`` per source, stratified by label and seeded."""
    rows = feature_rows(data_root, split_seed=split_seed)
    return limit_rows(rows, n_images, seed=seed, by=("source",)).reset_index(drop=True)


def trained_sources(spec, data_root: str | os.PathLike | None = None) -> tuple[set[str], set[str]]:
    """The sources of a run's training and validation images, and of its pre-training (if any)."""
    rows = compose(spec.composition, data_root, seed=spec.split_seed)
    trained = set(rows.loc[rows["split"].isin(["train", "val"]), "source"])
    return trained, ({spec.pretrain} if spec.pretrain else set())


def seen_status(source: str, *, trained: set[str], pretrained: set[str]) -> str:
    """``trained on``, ``pre-trained on`` (pneumonia pre-training only) or ``unseen``."""
    return "trained on" if source in trained else "pre-trained on" if source in pretrained else "unseen"


def model_label(r) -> str:
    """``resnet18 · kermany · none · CORDA`` (arch, pre-training, pipeline, composition)."""
    return f"{r['arch']} · {r['pretrain']} · {r['pipeline']} · {r['composition']}"


# ------------------------------------------------------------------------------------ the models
def collect(records: pd.DataFrame, specs, rows: pd.DataFrame, *, data_root: str | os.PathLike | None = None,
            device: str = "cpu", storage: str | os.PathLike | None = None, method: str = "gradcam"
            ) -> tuple[pd.DataFrame, dict[str, SaliencyResult], pd.DataFrame]:
    """Saliency of every recorded model of ``records`` on ``rows``.

    Returns:
        ``(per_image, results, status)``: one row per model and image (the model's keys,
        ``did_not_learn``, ``seen`` and :class:`covid_lib.analysis.saliency.SaliencyResult`'s table), the
        results by run id, and one row per model with ``state`` (``done``, ``did not learn``,
        ``missing``, ``failed`` or ``no checkpoint``).
    """
    by_id = {s.run_id: s for s in specs}
    parts, results, status = [], {}, []
    for r in records.to_dict("records"):
        state = r["status"]
        spec = by_id[r["run_id"]]
        if state in ("done", "did not learn") and not checkpoint_path(spec.run_id, storage).is_file():
            state = "no checkpoint"
        status.append({**{k: r[k] for k in MODEL_KEYS}, "state": state})
        if state not in ("done", "did not learn"):
            continue
        res = model_saliency(spec, rows, data_root=data_root, device=device, storage=storage, method=method)
        trained, pretrained = trained_sources(spec, data_root)
        t = res.table.assign(**{k: r[k] for k in MODEL_KEYS}, did_not_learn=state == "did not learn")
        t["seen"] = [seen_status(s, trained=trained, pretrained=pretrained) for s in t["source"]]
        parts.append(t)
        results[spec.run_id] = res
    per_image = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=[*MODEL_KEYS, "did_not_learn", "seen", "source", "image_id", "group_id", "label", "score", "share",
                 "baseline", "has_mask"])
    return per_image, results, pd.DataFrame(status, columns=[*MODEL_KEYS, "state"])


# ---------------------------------------------------------------------------------------- tables
def summary_table(per_image: pd.DataFrame, *, by: str = "seen", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per model and test group (``by``: ``seen`` or ``source``) with
    :func:`covid_lib.analysis.saliency.share_summary`'s columns, ``did_not_learn`` and the sources in it."""
    rows = []
    for keys, t in per_image.groupby([*MODEL_KEYS, "did_not_learn", by], sort=False):
        rows.append({**dict(zip([*MODEL_KEYS, "did_not_learn", "group"], keys)), "by": by,
                     "sources": ", ".join(sorted(t["source"].unique())),
                     **share_summary(t["share"].to_numpy(), t["baseline"].to_numpy(), t["group_id"].to_numpy(),
                                     n_boot=n_boot, seed=seed)})
    cols = [*MODEL_KEYS, "did_not_learn", "by", "group", "sources", "n", "n_patients", "n_excluded", "share",
            "share_low", "share_high", "baseline", "baseline_low", "baseline_high", "excess", "excess_low",
            "excess_high", "interval"]
    out = pd.DataFrame(rows, columns=cols)
    if by == "seen" and len(out):
        order = {g: i for i, g in enumerate(SEEN_ORDER)}
        runs = {r: i for i, r in enumerate(dict.fromkeys(out["run_id"]))}  # models in their given order
        out = out.sort_values(["run_id", "group"], key=lambda s: s.map(order if s.name == "group" else runs),
                              kind="stable").reset_index(drop=True)
    return out


def excess_statements(table: pd.DataFrame) -> str:
    """One markdown line per row of :func:`summary_table`: the in-lung share against the lung area
    share and where the excess's interval lies (above, below or across the uniform baseline);
    a row without a single positive map says so instead."""
    lines = []
    for _, r in table.iterrows():
        flag = " (this model did not learn)" if r["did_not_learn"] else ""
        head = f"- {model_label(r)}{flag}, {r['group']}: "
        if not np.isfinite(r["share"]):
            lines.append(head + "not measurable: none of its COVID+ maps has positive mass (the model's "
                         "log-odds do not rise with any part of these images).")
            continue
        where = ("above the uniform baseline" if r["excess_low"] > 0 else "below the uniform baseline"
                 if r["excess_high"] < 0 else "not distinguishable from the uniform baseline")
        lines.append(head + f"in-lung share {format_estimate(r['share'], r['share_low'], r['share_high'])} against "
                     f"a lung area share of {r['baseline']:.2f}; excess "
                     f"{format_estimate(r['excess'], r['excess_low'], r['excess_high'])}, {where}.")
    return "\n".join(lines)


def format_summary(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """:func:`summary_table` for reading: model, group, n, share / baseline / excess with intervals."""
    def est(prefix: str) -> list[str]:
        return [format_estimate(v, lo, hi, digits) for v, lo, hi in
                zip(table[prefix], table[f"{prefix}_low"], table[f"{prefix}_high"])]

    return pd.DataFrame({
        "arch": table["arch"], "pre-training": table["pretrain"], "pipeline": table["pipeline"],
        "trained on": table["composition"], "learned": table["did_not_learn"].map({False: "yes", True: "NO"}),
        "test group": table["group"], "sources": table["sources"],
        "images (patients)": [f"{n} ({p})" for n, p in zip(table["n"], table["n_patients"])],
        "in-lung share [95% CI]": est("share"), "uniform baseline [95% CI]": est("baseline"),
        "excess [95% CI]": est("excess")})


def _only(t: pd.DataFrame, keys: set) -> pd.DataFrame:
    return t[[(s, i) in keys for s, i in zip(t["source"], t["image_id"])]]


def preprocessing_effect(per_image: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Excess of the ``none``-pipeline model minus that of its ``paper`` twin (same arch,
    pre-training, composition and seed) per seen group, on the images both scored with a mask;
    the interval resamples patient groups, shared by the two models (paired)."""
    keys = ["arch", "pretrain", "composition", "seed"]
    rows = []
    none = per_image[per_image["pipeline"] == "none"]
    for k, a in none.groupby(keys, sort=False):
        b = per_image[(per_image["pipeline"] == "paper")
                      & np.logical_and.reduce([per_image[c] == v for c, v in zip(keys, k)])]
        for group in SEEN_ORDER:
            ga, gb = a[a["seen"] == group], b[b["seen"] == group]
            common = set(zip(ga["source"], ga["image_id"])) & set(zip(gb["source"], gb["image_id"]))
            if not len(ga):
                continue
            d = excess_difference(_only(ga, common), _only(gb, common), n_boot=n_boot, seed=seed) if len(gb) else \
                {"diff": np.nan, "diff_low": np.nan, "diff_high": np.nan, "n_a": 0, "n_b": 0}
            rows.append({**dict(zip(keys, k)), "group": group, "n common": len(common),
                         "did not learn": bool(a["did_not_learn"].any() or (len(gb) and gb["did_not_learn"].any())),
                         "paper twin": "recorded" if len(b) else "missing", **d})
    return pd.DataFrame(rows, columns=[*keys, "group", "n common", "did not learn", "paper twin", "diff", "diff_low",
                                       "diff_high", "n_a", "n_b"])


def seen_unseen_difference(per_image: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per model, mean excess on unseen sources minus that on the sources it was trained on
    (different patients: an unpaired cluster bootstrap over both)."""
    rows = []
    for k, t in per_image.groupby([*MODEL_KEYS, "did_not_learn"], sort=False):
        d = excess_difference(t[t["seen"] == "unseen"], t[t["seen"] == "trained on"], n_boot=n_boot, seed=seed)
        rows.append({**dict(zip([*MODEL_KEYS, "did_not_learn"], k)), **d})
    return pd.DataFrame(rows, columns=[*MODEL_KEYS, "did_not_learn", "diff", "diff_low", "diff_high", "n_a", "n_b"])


# --------------------------------------------------------------------------------------- figures
def plot_shares(table: pd.DataFrame):
    """In-lung share (dots) and uniform baseline (crosses) with 95% intervals per model and group."""
    import matplotlib.pyplot as plt

    t = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.5, 0.32 * len(t) + 1.4))
    y = np.arange(len(t))[::-1]
    colors = {"trained on": "tab:blue", "pre-trained on": "tab:green", "unseen": "tab:red"}
    for g, color in colors.items():
        m = (t["group"] == g).to_numpy()
        if not m.any():
            continue
        ax.errorbar(t["share"][m], y[m] + 0.12, xerr=[t["share"][m] - t["share_low"][m],
                                                       t["share_high"][m] - t["share"][m]],
                    fmt="o", color=color, capsize=2, label=f"in-lung share, {g}")
        ax.errorbar(t["baseline"][m], y[m] - 0.12, xerr=[t["baseline"][m] - t["baseline_low"][m],
                                                          t["baseline_high"][m] - t["baseline"][m]],
                    fmt="x", color=color, alpha=.6, capsize=2)
    labels = [model_label(r) + (" (did not learn)" if r["did_not_learn"] else "") + f" | {r['group']}"
              for _, r in t.iterrows()]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of COVID+ saliency inside the lung mask (o) vs lung area share (x), 95% CI")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def gallery(items: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]], *, ncols: int = 4, thumb: float = 1.6):
    """Image and overlay pairs: ``items`` of ``(image uint8, map, mask, caption)``; the map in
    colour over the grey image, the lung mask as a contour."""
    import matplotlib.pyplot as plt

    if not items:
        return None
    nrows = int(np.ceil(len(items) / ncols))
    # captions at 10 pt: the figure is about 13 inches wide and shown in a ~750 px column, where
    # 6 pt came out at ~5 px; room above the first row for a title the caller adds with suptitle
    height = nrows * (thumb + 0.6) + 0.35
    fig, axes = plt.subplots(nrows, 2 * ncols, figsize=(2 * ncols * thumb, height), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (img, smap, mask, caption) in enumerate(items):
        a, b = axes[k // ncols, 2 * (k % ncols)], axes[k // ncols, 2 * (k % ncols) + 1]
        a.imshow(img, cmap="gray", vmin=0, vmax=255)
        b.imshow(img, cmap="gray", vmin=0, vmax=255)
        m = np.asarray(smap, float)
        b.imshow(m / (m.max() or 1.0), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        b.contour(mask, levels=[0.5], colors="white", linewidths=0.6)
        a.set_title(caption, fontsize=10, loc="left")
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.35 / height))
    return fig


def gallery_items(per_image: pd.DataFrame, results: dict[str, SaliencyResult], picks: pd.DataFrame
                  ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """Gallery items of ``picks`` (rows of ``per_image``) from the stored results."""
    items = []
    for _, r in picks.iterrows():
        res = results[r["run_id"]]
        i = int(np.flatnonzero((res.table["source"] == r["source"]).to_numpy()
                               & (res.table["image_id"] == r["image_id"]).to_numpy())[0])
        lab = "COVID+" if r["label"] == 1 else "COVID-"
        items.append((res.images[i], res.maps[i], res.masks[i],
                      f"{r['source']} {lab}, p={r['score']:.2f}\nshare {r['share']:.2f} (area {r['baseline']:.2f})"))
    return items


def extremes(per_image: pd.DataFrame, run_id: str, k: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``k`` images of one model with the highest and the lowest in-lung share."""
    t = per_image[(per_image["run_id"] == run_id) & per_image["share"].notna()].sort_values("share")
    return t.tail(k)[::-1], t.head(k)


def per_source_picks(per_image: pd.DataFrame, run_id: str, k: int = 2, seed: int = 0) -> pd.DataFrame:
    """``k`` random images of each source for one model (seen and unseen side by side)."""
    t = per_image[(per_image["run_id"] == run_id) & per_image["share"].notna()]
    order = {g: i for i, g in enumerate(SEEN_ORDER)}
    parts = [g.sample(min(k, len(g)), random_state=seed) for _, g in t.groupby("source", sort=True)]
    picks = pd.concat(parts) if parts else t
    return picks.sort_values("seen", key=lambda s: s.map(order), kind="stable")
