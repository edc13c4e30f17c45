"""Lung masks by label, and a visual audit of masks where no reference mask exists (chapter 02).

The paper (Tartaglione et al. 2020, Sec. III-B) masks every image with a U-Net and reports no
segmentation quality. Two questions follow that the V7 scores of the COVID collection cannot
answer, because V7 masks exist only for COVID-positive images of one source:

* does the mask cut more on one label than on the other? :func:`mask_shape` measures, per mask,
  the share of each side of the image it covers and whether it holds one lung only;
  :func:`label_table` compares mask area, one-lung masks and refusals (chain and ROI crop of
  Ben Ahmed et al. 2021) by source and label, and :func:`label_gap` gives the COVID+ minus
  COVID- difference, each with a 95 % interval over patients;
* how often does the mask fail on the sources without reference masks? :func:`audit_sample`
  draws one image per patient (seeded), :func:`plot_audit_sheet` draws contact sheets for a reader
  to judge, and :func:`audit_summary` turns the reader's verdicts (a CSV, :data:`VERDICTS`) into
  failure rates with Wilson intervals.

Intervals: a rate over images that cluster in patients comes from the library's cluster bootstrap
(:func:`covid_lib.stats.bootstrap_replicates`), as in :mod:`covid_lib.metrics`; with no event, or
only events, the bootstrap interval degenerates, so the Wilson interval over *patients* is used
instead (a conservative choice: fewer units). With one image per patient it is Wilson over images.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import ndimage

from covid_lib import stats
from covid_lib.metrics import Estimate, format_estimate, mean_estimate
from covid_lib.preprocess import equalize, iter_image_batches, probability_to_mask
from covid_lib.report.common import SOURCE_COLORS
from covid_lib.report.segmentation import panel_grid

#: A mask whose smaller image half holds under this share of its larger half, and whose second
#: component is under this share of its first, holds one lung.
ONE_LUNG_BALANCE = 0.25
#: Verdicts of the visual audit, from best to worst.
VERDICTS = ("ok", "partial", "failed")
#: Columns of the audit CSV (``book/audit/mask_audit.csv``).
AUDIT_COLUMNS = ("source", "image_id", "verdict", "note", "auditor")
_NAN = float("nan")


# ----------------------------------------------------------------------------- one mask


def mask_shape(mask: np.ndarray, *, balance: float = ONE_LUNG_BALANCE) -> dict[str, float | int | bool]:
    """Shape of one (cleaned) lung mask: how many components, and how its area splits.

    Returns:
        ``components`` (4-connected components), ``component_ratio`` (second-largest component over
        the largest; 0 with one component, NaN for an empty mask), ``side_balance`` (mask area in
        the smaller half of the image, left or right of the centre column, over the larger half;
        NaN for an empty mask) and ``one_lung``: both ratios under ``balance``, i.e. a single lung
        (plus at most a small fragment) on one side of the image. Two lungs joined into one
        component straddle the centre and are not counted as one lung.
    """
    m = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(m)
    if n == 0:
        return {"components": 0, "component_ratio": _NAN, "side_balance": _NAN, "one_lung": False}
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
    ratio = float(sizes[1] / sizes[0]) if n > 1 else 0.0
    half = m.shape[1] / 2.0
    cols = np.arange(m.shape[1]) + 0.5
    per_col = m.sum(axis=0)
    left, right = float(per_col[cols < half].sum()), float(per_col[cols >= half].sum())
    side = min(left, right) / max(left, right)
    return {"components": int(n), "component_ratio": ratio, "side_balance": side,
            "one_lung": bool(ratio < balance and side < balance)}


# ----------------------------------------------------------------------------- intervals


def rate_estimate(flags, groups=None, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Estimate:
    """Share of true ``flags`` with a ``1 - alpha`` interval, patients as the unit.

    Wilson over images when every group holds one image (or no groups); otherwise the cluster
    bootstrap over groups, except when no image (or every image) is flagged, where the bootstrap
    interval collapses to a point and the Wilson interval over groups is used.
    """
    f = np.asarray(flags, dtype=bool)
    if f.size == 0:
        return Estimate(_NAN, _NAN, _NAN, "none", "no images")
    k = int(f.sum())
    n_groups = f.size if groups is None else len(set(map(str, groups)))
    if n_groups == f.size:
        low, high = stats.wilson_interval(k, f.size, alpha)
        return Estimate(k / f.size, low, high, "Wilson")
    if k in (0, f.size):
        low, high = stats.wilson_interval(0 if k == 0 else n_groups, n_groups, alpha)
        return Estimate(k / f.size, low, high, f"Wilson over {n_groups} patients")
    e = mean_estimate(f.astype(float), groups=groups, n_boot=n_boot, seed=seed, alpha=alpha)
    return Estimate(k / f.size, e.low, e.high, e.method)


def _fmt(e: Estimate, *, percent: bool = True, digits: int = 1) -> str:
    scale = 100.0 if percent else 1.0
    return format_estimate(e.value * scale, e.low * scale, e.high * scale, digits)


# ----------------------------------------------------------------------------- by label


def _labelled(diag: pd.DataFrame) -> pd.DataFrame:
    """Rows with a COVID label, with the refusal flags and a ``label`` column (COVID+ / COVID-)."""
    if "covid" not in diag:
        raise ValueError("diag needs a 'covid' column (chain_diagnostics of a manifest with labels)")
    d = diag[diag["covid"].notna()].copy()
    d["label"] = np.where(d["covid"].astype(int) == 1, "COVID+", "COVID-")
    d["chain_refused"] = d["chain_rejection"] != ""
    d["crop_refused"] = d["chain_refused"] | (d["crop_rejection"] != "")
    d["patient_id"] = d["patient_id"].astype(str)
    return d


def label_table(diag: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per source and label: mask area, one-lung masks and refusals, each with a 95 % interval.

    ``diag`` is :func:`covid_lib.report.chain.chain_diagnostics` output with ``covid`` and the
    :func:`mask_shape` columns. Mask area (share of the image) and one-lung masks are over the
    images with a non-empty mask; "refused by the chain" and "refused with the ROI crop" (chain or
    crop rule) over all images. Patients are the bootstrap unit.
    """
    d = _labelled(diag)
    rows = []
    for (source, label), part in d.groupby(["source", "label"], sort=False):
        masked = part[part["mask_area"].notna() & (part["mask_area"] > 0)]
        g, gm = part["patient_id"], masked["patient_id"]
        area = mean_estimate(masked["mask_area"], groups=gm, n_boot=n_boot, seed=seed)
        rows.append({
            "source": source, "label": label, "images": len(part), "patients": g.nunique(),
            "mask area, mean % [95% CI]": _fmt(area),
            "mask area, median %": round(float(masked["mask_area"].median() * 100), 1),
            "one-lung masks, % [95% CI]": _fmt(rate_estimate(masked["one_lung"], gm, n_boot=n_boot, seed=seed)),
            "one-lung masks": int(masked["one_lung"].sum()),
            "refused by the chain, % [95% CI]": _fmt(rate_estimate(part["chain_refused"], g, n_boot=n_boot, seed=seed)),
            "refused with the ROI crop, % [95% CI]": _fmt(rate_estimate(part["crop_refused"], g, n_boot=n_boot, seed=seed)),
            "refused with the ROI crop": int(part["crop_refused"].sum()),
        })
    return pd.DataFrame(rows).set_index(["source", "label"])


def label_gap(diag: pd.DataFrame, column: str, *, sources: Sequence[str] | None = None,
              n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Estimate:
    """COVID+ mean minus COVID- mean of ``column`` (a number or a flag) over ``sources``, with a
    cluster-bootstrap interval (patients resampled with all their images, both labels at once).

    ``mask_area`` and ``one_lung`` are taken over images with a non-empty mask, the refusal flags
    (``chain_refused``, ``crop_refused``) over all images.
    """
    d = _labelled(diag)
    if sources is not None:
        d = d[d["source"].isin(list(sources))]
    if column in ("mask_area", "one_lung", "side_balance", "component_ratio"):
        d = d[d["mask_area"].notna() & (d["mask_area"] > 0)]
    return mean_gap(d[column], d["label"] == "COVID+", d["label"] == "COVID-", d["patient_id"],
                    n_boot=n_boot, seed=seed, alpha=alpha)


def mean_gap(values, in_a, in_b, groups, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Estimate:
    """Mean of ``values`` over the rows ``in_a`` minus their mean over ``in_b``, with a cluster
    bootstrap interval (``groups``, the patients, resampled with all their rows, both sets at once,
    so a patient in both is handled). NaN when a set is empty."""
    x = np.asarray(values, dtype=float)
    a, b = np.asarray(in_a, dtype=float), np.asarray(in_b, dtype=float)
    keep = ~np.isnan(x)
    x, a, b, g = x[keep], a[keep], b[keep], np.asarray(groups)[keep]
    if not a.any() or not b.any():
        return Estimate(_NAN, _NAN, _NAN, "none", "needs rows in both sets")

    def statistic(w: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ (x * a)) / (w @ a) - (w @ (x * b)) / (w @ b)

    value = float(statistic(np.ones((1, len(x))))[0])
    reps = stats.bootstrap_replicates(statistic, len(x), groups=g, n_boot=n_boot, seed=seed)
    low, high, _ = stats.percentile_interval(reps, alpha)
    n_groups = len(set(map(str, g)))
    return Estimate(value, low, high, f"cluster bootstrap (n_boot={n_boot}, {n_groups} patients)")


def view_gaps(scores: pd.DataFrame, columns: Sequence[str] = ("dice", "coverage"), *, reference: str = "PA",
              n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Each view's mean score minus the ``reference`` view's (segmentation scores of
    :func:`covid_lib.segment.score_masks`, one row per image with ``view`` and ``patient_id``),
    with a patient cluster-bootstrap interval; an interval that excludes 0 separates the views."""
    views = [v for v in dict.fromkeys(scores["view"]) if v != reference]
    out = {}
    for view in sorted(views):
        out[f"{view} minus {reference}"] = {
            f"{c}": mean_gap(scores[c], scores["view"] == view, scores["view"] == reference,
                             scores["patient_id"].astype(str), n_boot=n_boot, seed=seed).format(3)
            for c in columns}
    return pd.DataFrame(out).T


def label_gaps(diag: pd.DataFrame, groups: dict[str, Sequence[str]], *, n_boot: int = 2000,
               seed: int = 0) -> pd.DataFrame:
    """:func:`label_gap` of mask area, one-lung masks and both refusals for each named group of
    sources, in percentage points."""
    columns = {"mask area": "mask_area", "one-lung masks": "one_lung", "refused by the chain": "chain_refused",
               "refused with the ROI crop": "crop_refused"}
    out = {}
    for name, sources in groups.items():
        out[name] = {f"{k}, COVID+ minus COVID- (points)": _fmt(label_gap(diag, c, sources=sources,
                                                                          n_boot=n_boot, seed=seed))
                     for k, c in columns.items()}
    return pd.DataFrame(out).T


# ----------------------------------------------------------------------------- visual audit


def audit_sample(manifest: pd.DataFrame, per_source: int, *, seed: int = 0) -> pd.DataFrame:
    """A seeded sample of at most ``per_source`` images per source, one image per patient.

    Patients are drawn first (so images are independent and Wilson intervals apply), then one
    image of each drawn patient. Rows keep the manifest's columns, sorted by source and image id.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for source, rows in manifest.groupby("source", sort=True):
        patients = np.array(sorted(rows["patient_id"].astype(str).unique()))
        chosen = rng.choice(patients, size=min(per_source, len(patients)), replace=False)
        pick = rows[rows["patient_id"].astype(str).isin(set(chosen))]
        parts.append(pick.groupby(pick["patient_id"].astype(str)).sample(n=1, random_state=seed))
    out = pd.concat(parts) if parts else manifest.head(0)
    return out.sort_values(["source", "image_id"]).reset_index(drop=True)


def read_audit(path) -> pd.DataFrame:
    """The audit CSV, checked: the :data:`AUDIT_COLUMNS`, verdicts in :data:`VERDICTS`, no image twice."""
    audit = pd.read_csv(path, dtype=str).fillna("")
    missing = [c for c in AUDIT_COLUMNS if c not in audit]
    if missing:
        raise ValueError(f"audit CSV lacks columns {missing}")
    bad = sorted(set(audit["verdict"]) - set(VERDICTS))
    if bad:
        raise ValueError(f"unknown verdicts {bad}; expected one of {VERDICTS}")
    if audit.duplicated(["source", "image_id"]).any():
        raise ValueError("an image is judged twice in the audit CSV")
    return audit


def audit_summary(audit: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per source (and all): images judged, each verdict, and the failure rate ("failed") and the
    rate of masks not ok ("partial" or "failed"), in %, with Wilson intervals (one image per
    patient: independent images)."""
    rows = []
    for source, part in list(audit.groupby("source", sort=False)) + [("all", audit)]:
        n = len(part)
        counts = part["verdict"].value_counts().reindex(VERDICTS, fill_value=0)
        failed, not_ok = int(counts["failed"]), int(counts["partial"] + counts["failed"])
        rows.append({"source": source, "images": n, **{v: int(counts[v]) for v in VERDICTS},
                     "failed, % [95% CI]": _fmt(rate_estimate(np.arange(n) < failed, alpha=alpha)),
                     "partial or failed, % [95% CI]": _fmt(rate_estimate(np.arange(n) < not_ok, alpha=alpha))})
    return pd.DataFrame(rows).set_index("source")


def audit_against_checks(audit: pd.DataFrame, diag: pd.DataFrame) -> pd.DataFrame:
    """Per verdict: how many audited masks the automatic checks flag, i.e. the chain refuses, the
    ROI crop refuses, or :func:`mask_shape` calls one lung (``diag`` from
    :func:`covid_lib.report.chain.chain_diagnostics`, matched on source and image id). Audited
    images missing from ``diag`` (a capped profile) are counted as "not diagnosed", not as passed."""
    keys = diag[["source", "image_id"]].drop_duplicates().assign(_diagnosed=True)
    m = audit.merge(diag, on=["source", "image_id"], how="left").merge(keys, on=["source", "image_id"], how="left")
    m["not diagnosed"] = m["_diagnosed"].isna()
    m["refused by the chain"] = m["chain_rejection"].fillna("") != ""
    m["refused with the ROI crop"] = m["refused by the chain"] | (m["crop_rejection"].fillna("") != "")
    m["one-lung mask"] = m["one_lung"].fillna(False).astype(bool)
    m["any check"] = m[["refused with the ROI crop", "one-lung mask"]].any(axis=1)
    cols = ["not diagnosed", "refused by the chain", "refused with the ROI crop", "one-lung mask", "any check"]
    out = m.groupby("verdict")[cols].sum().astype(int).reindex(list(VERDICTS), fill_value=0)
    out.insert(0, "images", m.groupby("verdict").size().reindex(list(VERDICTS), fill_value=0))
    return out


_VERDICT_COLORS = {"ok": "#2ca02c", "partial": "#ff7f0e", "failed": "#d62728"}


def plot_audit_sheet(cases: Sequence[dict], *, ncols: int = 6, size: float = 2.0, title: str | None = None,
                     color: str | None = None) -> Figure:
    """A contact sheet: each image (equalised) with its predicted mask's contour (yellow).

    Args:
        cases: dicts with ``image`` (2-D uint8), ``mask`` (bool, same shape), ``label`` (written
            above the image) and optionally ``verdict`` (colours the label: ok green, partial
            orange, failed red).
        color: frame colour (e.g. the source's, :data:`covid_lib.report.common.SOURCE_COLORS`).
    """
    fig, axes = panel_grid(len(cases), ncols, size, row_height=1.1, extra_height=0.4)
    for ax, case in zip(axes.ravel(), cases):
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        ax.imshow(case["image"], cmap="gray", vmin=0, vmax=255)
        if case["mask"].any():
            ax.contour(case["mask"], levels=[0.5], colors=["#ffd400"], linewidths=1.0)
        ax.set_title(case.get("label", ""), fontsize=6.5,
                     color=_VERDICT_COLORS.get(case.get("verdict", ""), "black"))
        for spine in ax.spines.values():
            spine.set_color(color or "black")
    if title:
        fig.suptitle(title, fontsize=10, color=color or "black")
    return fig


def audit_cases(rows: pd.DataFrame, model, *, audit: pd.DataFrame | None = None, batch_size: int = 32,
                device: str = "cpu", read=None) -> list[dict]:
    """The equalised image and predicted mask of each manifest row, for :func:`plot_audit_sheet`,
    labelled ``"k. id · view"`` (and, given ``audit``, the verdict and note)."""
    verdicts = {} if audit is None else {(r.source, r.image_id): r for r in audit.itertuples()}
    out = []
    for batch in iter_image_batches(rows, model, read=read, check=False, batch_size=batch_size, device=device):
        for rec, img, prob in batch.items():
            mask, _ = probability_to_mask(prob, img.shape)
            v = verdicts.get((rec["source"], rec["image_id"]))
            label = f"{len(out) + 1}. {rec['image_id'][:18]} · {rec['view']}"
            if v is not None:
                label += f"\n{v.verdict}" + (f": {v.note[:34]}" if v.note else "")
            out.append({"source": rec["source"], "image_id": rec["image_id"], "image": equalize(img, "global"),
                        "mask": mask, "label": label, "verdict": "" if v is None else v.verdict})
    return out


def source_color(source: str) -> str:
    """The source's colour in the book's figures."""
    return SOURCE_COLORS.get(source, "#7f7f7f")


__all__ = [
    "ONE_LUNG_BALANCE", "VERDICTS", "AUDIT_COLUMNS", "mask_shape", "rate_estimate", "label_table", "label_gap",
    "mean_gap", "view_gaps", "audit_against_checks",
    "label_gaps", "audit_sample", "read_audit", "audit_summary", "plot_audit_sheet", "audit_cases", "source_color",
]
