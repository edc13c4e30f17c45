"""Tables and figures of the saliency chapter ("Where the model looks").

For every recorded model of a list of specs (:func:`covid_lib.report.records.spec_records`), the
COVID+ saliency maps of test images of every source (:mod:`covid_lib.analysis.saliency`), grouped by
whether the model was trained on the source (``trained on``), saw it only in its pneumonia
pre-training (``pre-trained on``) or never saw it (``unseen``); the in-lung share beside the
uniform baseline, the excess over it, the effect of pre-processing (pipeline ``none`` against its
``paper`` twin, on the same images) and galleries. Every table counts the maps that place nothing
(not measurable) beside those measured, and the conclusion is worded from the numbers at the
maps' resolution (:func:`excess_verdict`), after the maps are checked on planted-mark models
(:func:`planted_check`). No model is trained here.

Example:
    >>> seen_status("nih", trained={"cohen"}, pretrained=set())
    'unseen'
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from covid_lib.metrics import format_estimate
from covid_lib.runs.fidelity import DIFFERS
from covid_lib.analysis.saliency import (SaliencyResult, excess_difference, mark_check, model_saliency,
                                         planted_saliency, share_summary, status_counts)

MODEL_KEYS = ["arch", "pretrain", "pipeline", "composition", "seed", "run_id", "status"]
SEEN_ORDER = ("trained on", "pre-trained on", "unseen")


# --------------------------------------------------------------------------------------- inputs
#: The ChestXRay pre-training whose models the chapter maps by default: the whole set (grids
#: ``ablation_full`` and ``table2_full``), whose checkpoints were trained on this machine kind; the
#: 563-image models (``kermany``: grids ``ablation``, ``table2``) cannot be restored here.
DEFAULT_PRETRAIN = "kermany_full"
#: The state of a model whose run has no record yet (its grid is still running).
NOT_YET = "not yet recorded"


def mapped_specs(profile: str = "cpu", pretrain: str | None = DEFAULT_PRETRAIN, *,
                 data_root: str | os.PathLike | None = None, data_version: str | None = None) -> list:
    """The ResNet-18 COVID models the chapter maps: the pipeline-``none`` runs of the ablation grid
    of ``pretrain`` (:func:`covid_lib.grid.ablation_grid`), then their ``paper``-pipeline twins of
    its Table II grid (:func:`covid_lib.grid.table2_grid`: the same arch, pre-training, composition
    and seed), whether recorded yet or not."""
    from covid_lib.grid import ablation_grid, grid_specs, table2_grid

    kw = dict(data_root=data_root, data_version=data_version)
    without = [s for s in grid_specs(ablation_grid(pretrain), profile, **kw) if s.task == "covid"]
    keys = {(s.arch, s.pretrain, s.composition, s.seed) for s in without}
    twins = [s for s in grid_specs(table2_grid(pretrain), profile, **kw)
             if s.task == "covid" and (s.arch, s.pretrain, s.composition, s.seed) in keys]
    return [s for s in without + twins if s.arch == "resnet18"]


def verify_checkpoints(specs, *, data_root: str | os.PathLike | None = None, device: str = "cpu",
                       storage: str | os.PathLike | None = None) -> pd.DataFrame:
    """Whether each cached checkpoint of a recorded run of ``specs`` is its record's model: one
    cached without a comparison (before the checkpoint guard) is re-scored on its record's test
    images and the outcome noted beside it (:func:`covid_lib.runs.checkpoint_matches_record`), so a
    retraining that differs is refused from then on; nothing is trained.

    Returns:
        one row per cached checkpoint: ``run_id``, ``images``, ``max_abs_diff``, ``matches``.
    """
    from covid_lib.runs import Record, checkpoint_matches_record

    rows, seen = [], set()
    for spec in specs:
        record = Record.of(spec, storage=storage)
        if spec.run_id in seen or not record.recorded or record.checkpoint is None:
            continue
        seen.add(spec.run_id)
        rows.append({"run_id": spec.run_id, **checkpoint_matches_record(spec, data_root=data_root, device=device,
                                                                        storage=storage)})
    return pd.DataFrame(rows, columns=["run_id", "images", "max_abs_diff", "matches"])


def saliency_rows(data_root: str | os.PathLike | None = None, *, n_images: int | None = 40, seed: int = 0,
                  split_seed: int = 0) -> pd.DataFrame:
    """Test images of every source (:func:`covid_lib.analysis.embed.feature_rows`: the sets of Fig. 3 and
    Hannover), at most ``n_images`` per source, stratified by label and seeded."""
    from covid_lib.data import limit_rows
    from covid_lib.analysis.embed import feature_rows

    rows = feature_rows(data_root, split_seed=split_seed)
    return limit_rows(rows, n_images, seed=seed, by=("source",)).reset_index(drop=True)


def trained_sources(spec, data_root: str | os.PathLike | None = None) -> tuple[set[str], set[str]]:
    """The sources of a run's training and validation images, and of its pre-training (if any)."""
    from covid_lib.data import compose

    from covid_lib.data.full_copy import BASE_COPY, FULL_COPY

    rows = compose(spec.composition, data_root, seed=spec.split_seed)
    trained = set(rows.loc[rows["split"].isin(["train", "val"]), "source"])
    # the whole ChestXRay set is the source kermany's images come from (its test patients left out)
    pretrained = {BASE_COPY if spec.pretrain == FULL_COPY else spec.pretrain} if spec.pretrain else set()
    return trained, pretrained


def seen_status(source: str, *, trained: set[str], pretrained: set[str]) -> str:
    """``trained on``, ``pre-trained on`` (pneumonia pre-training only) or ``unseen``."""
    return "trained on" if source in trained else "pre-trained on" if source in pretrained else "unseen"


def model_label(r) -> str:
    """``resnet18 · kermany · none · CORDA`` (arch, pre-training, pipeline, composition)."""
    return f"{r['arch']} · {r['pretrain']} · {r['pipeline']} · {r['composition']}"


# ------------------------------------------------------------------------------------ the models
def checkpoint_state(status: str, run_id: str, storage: str | os.PathLike | None = None) -> str:
    """A model's state for the saliency tables: its record's ``status`` (``not yet recorded`` for
    a run without a record), or ``no checkpoint`` when it learned but its weights are not cached
    here, or ``retrained here, differs from record`` when the cached weights do not reproduce the
    record (never measured as the recorded model)."""
    from covid_lib.runs import Record
    from covid_lib.runs.records import MISSING

    if status == MISSING:
        return NOT_YET
    if status not in ("done", "did not learn"):
        return status
    record = Record.of(run_id, storage=storage)
    if record.checkpoint is None:
        return "no checkpoint"
    return DIFFERS if record.checkpoint_differs else status


def checkpoint_text(run_id: str, storage: str | os.PathLike | None = None) -> str:
    """What the note beside a cached checkpoint says of it against its record: ``matches its
    record (max |Δ score| 0 on 454 test images)``, ``differs from its record (...)``, ``not
    checked against its record`` or ``not cached here``."""
    from covid_lib.runs import Record

    record = Record.of(run_id, storage=storage)
    if record.checkpoint is None:
        return "not cached here"
    note = record.checkpoint_note
    if note.get("max_abs_diff") is None:
        return "not checked against its record"
    how = f"max |Δ score| {float(note['max_abs_diff']):.2g} on {int(note.get('images') or 0)} recorded test images"
    return f"{'matches' if note.get('matches_record') else 'differs from'} its record ({how})"


def collect(records: pd.DataFrame, specs, rows: pd.DataFrame, *, data_root: str | os.PathLike | None = None,
            device: str = "cpu", storage: str | os.PathLike | None = None, method: str = "gradcam",
            layer: str | None = "auto") -> tuple[pd.DataFrame, dict[str, SaliencyResult], pd.DataFrame]:
    """Saliency of every recorded model of ``records`` on ``rows``, at ``layer``
    (:func:`covid_lib.analysis.saliency.model_saliency`; ``"auto"``: at least 16x16 cells).

    Returns:
        ``(per_image, results, status)``: one row per model and image (the model's keys,
        ``did_not_learn``, ``seen`` and :class:`covid_lib.analysis.saliency.SaliencyResult`'s table), the
        results by run id, and one row per model with ``state`` (``done``, ``did not learn``,
        ``not yet recorded``, ``failed``, ``no checkpoint`` or ``retrained here, differs from
        record``) and ``checkpoint`` (:func:`checkpoint_text`).
    """
    by_id = {s.run_id: s for s in specs}
    parts, results, status = [], {}, []
    for r in records.to_dict("records"):
        spec = by_id[r["run_id"]]
        state = checkpoint_state(r["status"], spec.run_id, storage)
        status.append({**{k: r[k] for k in MODEL_KEYS}, "state": state,
                       "checkpoint": checkpoint_text(spec.run_id, storage)})
        if state not in ("done", "did not learn"):
            continue
        res = model_saliency(spec, rows, data_root=data_root, device=device, storage=storage, method=method,
                             layer=layer)
        trained, pretrained = trained_sources(spec, data_root)
        t = res.table.assign(**{k: r[k] for k in MODEL_KEYS}, did_not_learn=state == "did not learn",
                             layer=res.layer, cells=res.cells)
        t["seen"] = [seen_status(s, trained=trained, pretrained=pretrained) for s in t["source"]]
        parts.append(t)
        results[spec.run_id] = res
    per_image = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=[*MODEL_KEYS, "did_not_learn", "seen", "source", "image_id", "group_id", "label", "score", "share",
                 "baseline", "has_mask", "map_status", "layer", "cells"])
    return per_image, results, pd.DataFrame(status, columns=[*MODEL_KEYS, "state", "checkpoint"])


# ---------------------------------------------------------------------------------------- tables
COUNT_COLUMNS = ["n_images", "n_no_mask", "n_no_positive_mass", "n_constant", "n_not_measurable"]


def _statuses(t: pd.DataFrame) -> np.ndarray:
    """``map_status`` of a per-image table; tables without it: from ``has_mask`` and ``share``."""
    if "map_status" in t:
        return t["map_status"].to_numpy()
    has_mask = t["has_mask"].to_numpy(bool) if "has_mask" in t else np.ones(len(t), bool)
    return np.where(~has_mask, "no mask", np.where(t["share"].isna(), "no positive mass", "measured"))


def summary_table(per_image: pd.DataFrame, *, by: str = "seen", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per model and test group (``by``: ``seen`` or ``source``) with
    :func:`covid_lib.analysis.saliency.share_summary`'s columns (``n``: measured maps), the images
    of the group and how many gave no share, by reason (:func:`covid_lib.analysis.saliency.status_counts`),
    the map's ``cells`` a side, ``did_not_learn`` and the sources in it."""
    rows = []
    for keys, t in per_image.groupby([*MODEL_KEYS, "did_not_learn", by], sort=False):
        status = _statuses(t)
        counts = status_counts(status)
        share = np.where(status == "measured", t["share"].to_numpy(float), np.nan)
        rows.append({**dict(zip([*MODEL_KEYS, "did_not_learn", "group"], keys)), "by": by,
                     "sources": ", ".join(sorted(t["source"].unique())),
                     "cells": int(t["cells"].iloc[0]) if "cells" in t else np.nan,
                     "n_images": len(t), **{k: counts[k] for k in COUNT_COLUMNS[1:]},
                     **share_summary(share, t["baseline"].to_numpy(), t["group_id"].to_numpy(),
                                     n_boot=n_boot, seed=seed)})
    cols = [*MODEL_KEYS, "did_not_learn", "by", "group", "sources", "cells", *COUNT_COLUMNS, "n", "n_patients",
            "n_excluded", "share", "share_low", "share_high", "baseline", "baseline_low", "baseline_high", "excess",
            "excess_low", "excess_high", "interval"]
    out = pd.DataFrame(rows, columns=cols)
    if by == "seen" and len(out):
        order = {g: i for i, g in enumerate(SEEN_ORDER)}
        runs = {r: i for i, r in enumerate(dict.fromkeys(out["run_id"]))}  # models in their given order
        out = out.sort_values(["run_id", "group"], key=lambda s: s.map(order if s.name == "group" else runs),
                              kind="stable").reset_index(drop=True)
    return out


def not_measurable_text(r) -> str:
    """``"3 of 40 (no positive mass 2, constant 1)"`` from a :func:`summary_table` row; ``"0 of 40"``."""
    parts = [f"{label} {int(r[k])}" for k, label in (("n_no_positive_mass", "no positive mass"),
                                                        ("n_constant", "constant")) if r.get(k, 0)]
    n_maps = int(r["n_images"] - r.get("n_no_mask", 0))
    return f"{int(r['n_not_measurable'])} of {n_maps}" + (f" ({', '.join(parts)})" if parts else "")


def excess_verdict(excess: float, low: float, high: float, *, n_measured: int, n_patients: int, n_maps: int,
                   cells: int, input_size: int | None = None, validated: bool | None = None,
                   min_patients: int = 10) -> str:
    """What an in-lung excess (share minus the uniform baseline, with its interval) supports, in
    one sentence, at the map's resolution (``cells`` a side) and given whether the same maps found a
    planted mark the model uses (``validated``; None: not checked).

    Only an interval wholly below zero agrees with DeGrave et al. (2021: saliency outside the
    lungs); an interval across zero is inconclusive (Ben Ahmed et al. 2021's reading), one above
    zero is not evidence of reading pathology (the lungs also carry the source's contrast). No
    sentence claims a reproduction: the method (Grad-CAM, not expected gradients) and the models differ.

    Example:
        >>> excess_verdict(-0.01, -0.05, 0.03, n_measured=80, n_patients=40, n_maps=90, cells=16)[:34]
        'not distinguishable from the unifor'
    """
    grid = f"{cells}x{cells} cells" + (f" (one cell {input_size / cells:.0f} px)" if input_size and cells else "")
    lost = f"; {n_maps - n_measured} of {n_maps} maps not measurable" if n_maps > n_measured else ""
    if n_measured == 0:
        return (f"not measurable at {grid}: none of its {n_maps} maps places any positive COVID+ evidence, "
                "so no conclusion")
    if n_patients < min_patients:
        return (f"too few measurable maps to conclude at {grid}: {n_measured} of {n_maps} maps, from "
                f"{n_patients} patients (fewer than {min_patients})")
    if validated is False:
        return (f"no conclusion at {grid}: the same maps did not find a planted mark that the model uses, so "
                f"where they fall is not evidence{lost}")
    est = format_estimate(excess, low, high)
    if low > 0:
        out = (f"above the uniform baseline at {grid} (excess {est}): the COVID+ evidence sits on the lungs more "
               "than an even spread would put it; DeGrave et al.'s pattern is not seen at this resolution, and this "
               "does not show that the model reads pathology (the lungs carry the source's contrast too)")
    elif high < 0:
        out = (f"below the uniform baseline at {grid} (excess {est}): the COVID+ evidence sits outside the lung "
               "mask more than an even spread would put it, the pattern DeGrave et al. found with other methods "
               "and models; at this resolution the maps cannot say what outside the lungs is used")
    else:
        out = (f"not distinguishable from the uniform baseline at {grid} (excess {est}): inconclusive at this "
               "resolution and sample size (Ben Ahmed et al.'s reading); neither DeGrave et al.'s pattern nor its "
               "opposite is shown")
    check = "" if validated else "; the maps were not checked on a planted mark"
    return out + lost + check


def row_verdict(r, *, input_size: int | None = None, validated: bool | None = None, min_patients: int = 10) -> str:
    """:func:`excess_verdict` of one :func:`summary_table` row."""
    return excess_verdict(r["excess"], r["excess_low"], r["excess_high"], n_measured=int(r["n"]),
                          n_patients=int(r["n_patients"]), n_maps=int(r["n_images"] - r.get("n_no_mask", 0)),
                          cells=int(r["cells"]) if pd.notna(r.get("cells", np.nan)) else 0, input_size=input_size,
                          validated=validated, min_patients=min_patients)


def excess_statements(table: pd.DataFrame, *, input_size: int | None = None, validated: bool | None = None,
                      min_patients: int = 10) -> str:
    """One markdown line per row of :func:`summary_table`: :func:`row_verdict`, worded at the
    resolution of the maps and from the numbers (never typed)."""
    lines = []
    for _, r in table.iterrows():
        flag = " (this model did not learn)" if r["did_not_learn"] else ""
        lines.append(f"- {model_label(r)}{flag}, {r['group']}: "
                     + row_verdict(r, input_size=input_size, validated=validated, min_patients=min_patients) + ".")
    return "\n".join(lines)


def excess_brief(table: pd.DataFrame, digits: int = 2) -> str:
    """One short markdown line per row of :func:`summary_table` (for an answer box): the model, the
    test group and its excess with the interval, the maps measured and the maps' grid; the full
    wording is :func:`excess_statements`."""
    lines = []
    for _, r in table.iterrows():
        flag = " (did not learn)" if r["did_not_learn"] else ""
        cells = f", {int(r['cells'])}x{int(r['cells'])} cells" if "cells" in r and pd.notna(r["cells"]) else ""
        lines.append(f"- {model_label(r)}{flag}, {r['group']}: excess "
                     f"{format_estimate(r['excess'], r['excess_low'], r['excess_high'], digits=digits)} "
                     f"({int(r['n'])} maps{cells})")
    return "\n".join(lines)


def excess_tally(table: pd.DataFrame, digits: int = 2) -> str:
    """One markdown line per test group of :func:`summary_table` rows (for an answer box that must
    stay short however many models are mapped): how many models' excess intervals lie above 0,
    include it, or lie below it, and the range of their excesses; models that did not learn are
    counted apart. :func:`excess_brief` gives the line per model."""
    lines = []
    for group, part in table.groupby("group", sort=False):
        learned = part[~part["did_not_learn"].astype(bool)]
        unmeasured = int(learned["excess"].isna().sum())
        learned = learned[learned["excess"].notna()]
        above = int((learned["excess_low"] > 0).sum())
        below = int((learned["excess_high"] < 0).sum())
        line = (f"- {group}: {len(learned)} model{'s' if len(learned) != 1 else ''}, interval above 0 for {above}, "
                f"below 0 for {below}, including 0 for {len(learned) - above - below}")
        if len(learned):
            line += (f"; excess {learned['excess'].min():+.{digits}f} to {learned['excess'].max():+.{digits}f}"
                     if len(learned) > 1 else f"; excess {learned['excess'].iloc[0]:+.{digits}f}")
        if unmeasured:
            line += f" ({unmeasured} with no measurable map not counted)"
        if len(part) > len(learned) + unmeasured:
            line += f" ({len(part) - len(learned) - unmeasured} that did not learn not counted)"
        lines.append(line)
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
        "map cells": [f"{int(c)}x{int(c)}" if pd.notna(c) else "–" for c in table.get("cells", [np.nan] * len(table))],
        "measured (patients)": [f"{n} ({p})" for n, p in zip(table["n"], table["n_patients"])],
        "not measurable": [not_measurable_text(r) for _, r in table.iterrows()],
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


# ---------------------------------------------------------------------- the check on planted marks
CHECK_COLUMNS = ["mark", "pipeline", "run_id", "state", "checkpoint", "auc_marked", "auc_marked_low", "auc_marked_high",
                 "auc_flipped", "auc_flipped_low", "auc_flipped_high", "auc_diff", "auc_diff_low", "auc_diff_high",
                 "uses_mark", "mark_in_box", "layer", "cells", "n_images"]


def uses_mark(auc_diff_low: float) -> bool:
    """A planted model uses its mark when its test AUC with the mark on COVID+ (as trained) minus
    its AUC with the mark on COVID- (flipped), on the same images, has an interval above zero
    (:mod:`covid_lib.runs.planted`: a model that ignores the mark scores both alike)."""
    return bool(np.isfinite(auc_diff_low) and auc_diff_low > 0)


def mark_in_box(spec) -> bool:
    """Whether a planted run's mark can reach its model as a mark in the corner: its pipeline keeps
    the image outside the lungs. The paper's chain blanks it (:mod:`covid_lib.analysis.planted`
    measures the residue); what is left of the mark there acts through the whole image (the
    global histogram equalisation, the lung mask's shape), so no map can be asked to find it in
    the corner, and such a run validates nothing."""
    from covid_lib.preprocess import get_pipeline

    return not get_pipeline(spec.pipeline, image_size=spec.resize_size).resolved().mask


def variant_aucs(table: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Test AUC of a planted model with the mark on its COVID+ images (``marked``, as trained), on
    its COVID- images (``flipped``) and their difference (``diff``: paired, the same images), from
    :class:`covid_lib.analysis.saliency.PlantedSaliency`'s scores of both copies, with
    patient-cluster bootstrap percentile intervals (one set of resamples): the model whose maps
    are checked, measured on the spot (a restored checkpoint need not be the recorded one)."""
    from covid_lib import stats

    y = table["label"].to_numpy(int)
    s = {v: np.where(marked, table["score_marked"], table["score_unmarked"]).astype(float)
         for v, marked in (("marked", y == 1), ("flipped", y == 0))}

    def stat(w: np.ndarray) -> np.ndarray:
        a, b = stats.weighted_auc(y, s["marked"], w), stats.weighted_auc(y, s["flipped"], w)
        return np.column_stack([a, b, a - b])

    reps = stats.bootstrap_replicates(stat, len(y), groups=table["group_id"].astype(str).to_numpy(), n_boot=n_boot,
                                      seed=seed)
    point = stat(np.ones((1, len(y))))[0]
    out = {}
    for j, name in enumerate(("auc_marked", "auc_flipped", "auc_diff")):
        low, high, _ = stats.percentile_interval(reps[:, j], alpha)
        out.update({name: float(point[j]), f"{name}_low": low, f"{name}_high": high})
    return out


def planted_check(specs, *, results=None, data_root: str | os.PathLike | None = None, device: str = "cpu",
                  storage: str | os.PathLike | None = None,
                  views: tuple[tuple[str, str | None], ...] = (("gradcam", "auto"), ("gradcam", None)),
                  n_boot: int = 2000, seed: int = 0, trained_here: bool = False) -> tuple[pd.DataFrame, dict]:
    """The saliency check on planted-mark runs (``specs``: e.g. the ``corner`` runs of the grid
    ``planted``): for each recorded run with a checkpoint and each ``(method, layer)`` of ``views``,
    :func:`covid_lib.analysis.saliency.mark_check` of its maps on its test images, marked and not,
    beside the model's test AUC marked and flipped (:func:`variant_aucs`; ``uses_mark``:
    :func:`uses_mark`).

    The check validates a map on a model whose use of the mark is measured on the spot, on the
    same checkpoint; none of its numbers is a verdict's. With ``trained_here``, a cached planted
    checkpoint that does not reproduce its record (a model trained on this machine) is measured
    too, its ``state`` saying so (:data:`covid_lib.runs.DIFFERS`) and ``checkpoint`` by how much
    (:func:`checkpoint_text`); without it such a run keeps a row, not measured.

    Returns:
        ``(table, results)``: one row per run and map (``layer``: ``"method · layer"``;
        :data:`CHECK_COLUMNS` and ``mark_check``'s
        keys; runs not measured keep a row with their ``state``), and the
        :class:`covid_lib.analysis.saliency.PlantedSaliency` by run id.
    """
    from covid_lib.report.planted import planted_records

    specs = list(specs)
    records = planted_records(specs, results)
    by_id = {s.run_id: s for s in specs}
    rows, out = [], {}
    for r in records.to_dict("records"):
        state = checkpoint_state(r["status"], r["run_id"], storage)
        head = {"mark": r["mark"], "pipeline": r["pipeline"], "run_id": r["run_id"], "state": state,
                "checkpoint": checkpoint_text(r["run_id"], storage)}
        if state not in ("done", "did not learn", *((DIFFERS,) if trained_here else ())):
            rows.append(head)
            continue
        res = planted_saliency(by_id[r["run_id"]], data_root=data_root, device=device, storage=storage, views=views,
                               allow_mismatch=trained_here)
        out[r["run_id"]] = res
        head.update(variant_aucs(res.table, n_boot=n_boot, seed=seed))
        head["uses_mark"] = uses_mark(head["auc_diff_low"])
        head["mark_in_box"] = mark_in_box(by_id[r["run_id"]])
        head.update({k: float(res.table[k].mean()) for k in ("change_in_box", "change_outside")})
        groups = res.table["group_id"].to_numpy()
        for name, side in res.cells.items():
            check = mark_check(res.marked_maps[name], res.plain_maps[name], res.boxes[name], groups,
                               n_boot=n_boot, seed=seed)
            rows.append({**head, "layer": name, "cells": side, "n_images": len(res.table), **check})
    return pd.DataFrame(rows), out


def check_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`planted_check` for reading: per run and layer, the AUCs, the share of the map in the
    mark's box on marked and unmarked copies against the box's area share, the paired difference
    and how many maps were not measurable."""
    if table.empty or "layer" not in table:
        return pd.DataFrame()
    t = table[table["layer"].notna()]

    def est(prefix: str) -> list[str]:
        return [format_estimate(v, lo, hi) for v, lo, hi in zip(t[prefix], t[f"{prefix}_low"], t[f"{prefix}_high"])]

    return pd.DataFrame({
        "mark · pipeline": t["mark"] + " · " + t["pipeline"],
        "model": [("trained here, not the recorded model" if st == DIFFERS else "the recorded model")
                  for st in t.get("state", pd.Series("", index=t.index))],
        "test AUC marked / flipped": [f"{a} / {b}" for a, b in zip(est("auc_marked"), est("auc_flipped"))],
        "AUC marked − flipped [95% CI]": est("auc_diff"),
        "uses the mark": t["uses_mark"].map({True: "yes", False: "not shown"}),
        "mark in the input's corner (input change in box / outside)": [
            f"{'yes' if k else 'no, blanked'} ({a:.3f} / {b:.3f})"
            for k, a, b in zip(t["mark_in_box"], t["change_in_box"], t["change_outside"])],
        "map · layer (cells)": [f"{lay} ({int(c)}x{int(c)})" for lay, c in zip(t["layer"], t["cells"])],
        "box area share": [f"{b:.3f}" for b in t["marked_baseline"]],
        "share in box, marked [95% CI]": est("marked_share"),
        "share in box, unmarked": est("unmarked_share"),
        "marked − unmarked [95% CI]": est("diff"),
        "not measurable (marked / unmarked)": [f"{int(a)} / {int(b)} of {int(n)}" for a, b, n in
                                               zip(t["marked_n_not_measurable"], t["unmarked_n_not_measurable"],
                                                   t["n_images"])],
        "mark found": [("yes" if f else "no") if k else "– (not a check)" for f, k in zip(t["found"], t["mark_in_box"])]
        }).reset_index(drop=True)


def layer_validated(check: pd.DataFrame, layer: str) -> bool | None:
    """Whether the maps at ``layer`` found the mark in every planted run that uses it where it
    reaches the model as a mark (:func:`uses_mark`, :func:`mark_in_box`; None: no such run
    measured, so the maps are unchecked)."""
    if check.empty or "layer" not in check:
        return None
    t = check[(check["layer"] == layer) & check["uses_mark"] & check.get("mark_in_box", True)]
    return bool(t["found"].all()) if len(t) else None
