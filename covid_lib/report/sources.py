"""Chapter 01 (the data): data cards, image grids, acquisition statistics, original formats,
cross-source duplicates and the image-level split's leakage (the sources of the paper's Sec. III-A, Datasets).

Each function takes plain data (a manifest DataFrame from :func:`covid_lib.data.load_sources`)
and returns a DataFrame or a :class:`matplotlib.figure.Figure` built without pyplot, as in
:mod:`covid_lib.report.common`.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from covid_lib.data import read_image
from covid_lib.report.common import _color


def _values(series: pd.Series, top: int = 4) -> str:
    counts = series.astype("string").fillna("unknown").replace("", "unknown").value_counts()
    shown = [f"{k} {v}" for k, v in counts.head(top).items()]
    if len(counts) > top:
        shown.append(f"+{len(counts) - top} more")
    return ", ".join(shown)


def data_cards(manifest: pd.DataFrame, specs: dict | None = None,
               exclusions: pd.DataFrame | None = None) -> pd.DataFrame:
    """One card (a column) per source: origin, license, role, images, patients, labels, views, caveats.

    Args:
        manifest: loaded rows of one or more sources (all views).
        specs: ``covid_lib.data.SOURCES`` (title, url, license, role in the paper, caveats).
        exclusions: the loader's exclusion table; when given, the card counts excluded rows.
    """
    cards = {}
    for source, rows in manifest.groupby("source", sort=False):
        spec = (specs or {}).get(source)
        per_patient = rows.groupby("patient_id").size()
        labels = []
        for column in ("covid", "pneumonia", "kermany_class", "finding", "rsna_target", "tb"):
            if column in rows and rows[column].notna().any() and rows[column].astype("string").ne("").any():
                labels.append(f"{column}: {_values(rows[column], 3)}")
        card = {
            "title": getattr(spec, "title", source),
            "origin": getattr(spec, "url", ""),
            "license": getattr(spec, "license", _values(rows["license"], 2)),
            "role in the paper": getattr(spec, "paper_role", ""),
            "images": len(rows),
            "patients": rows["patient_id"].nunique(),
            "images per patient (max)": int(per_patient.max()),
            "labels": "; ".join(labels),
            "views": _values(rows["view"]),
            "lung masks": int(rows["mask_path"].notna().sum()) if "mask_path" in rows else 0,
            "caveats": getattr(spec, "caveats", ""),
        }
        if exclusions is not None:
            card["excluded rows"] = int((exclusions["source"] == source).sum())
        cards[source] = card
    return pd.DataFrame(cards)


#: The fields of a data card that :func:`data_card_overview` shows as numbers, one row per source;
#: :func:`data_card_details` holds the rest (the text).
CARD_NUMBERS = ("images", "patients", "images per patient (max)", "views", "lung masks", "excluded rows")


def data_card_overview(cards: pd.DataFrame) -> pd.DataFrame:
    """The data cards at a glance: one row per source, its role in the paper and its numbers.

    Args:
        cards: :func:`data_cards` (a column per source).
    """
    fields = ["role in the paper", *[f for f in CARD_NUMBERS if f in cards.index]]
    return cards.loc[fields].T.rename_axis("source").reset_index()


def data_card_details(cards: pd.DataFrame) -> pd.DataFrame:
    """The text of the data cards, one row per source and field (title, origin, license, labels,
    caveats): what :func:`data_card_overview` leaves out. The source is named on its first row only."""
    fields = [f for f in cards.index if f not in CARD_NUMBERS and f != "role in the paper"]
    rows = []
    for source in cards.columns:
        for k, field in enumerate(fields):
            rows.append({"source": source if k == 0 else "", "field": field, "text": str(cards.loc[field, source])})
    return pd.DataFrame(rows)


def near_pairs_judged(across: pd.DataFrame, splits: pd.DataFrame, composed: pd.DataFrame) -> pd.DataFrame:
    """Every near-duplicate pair across splits with what judges it: each image's patient and split,
    the pHash distance, how alike the two images are (:func:`covid_lib.data.dedup.pair_similarity`,
    rounded), what the manifests say of the patients (``age, sex, location a`` and ``b``) and the
    compositions that train on one image and test on the other (``trained on one, tested on the
    other in``, "" for none).

    Args:
        across: :attr:`covid_lib.data.SplitAudit.near_across`.
        splits: the rows of :func:`covid_lib.data.global_splits` (image paths, age, sex, location).
        composed: the rows of every composition (``composition, source, image_id, split``).
    """
    from covid_lib.data.dedup import pair_similarity, pairs_in_compositions

    who = splits.drop_duplicates(["source", "image_id"]).set_index(["source", "image_id"])
    judged = across[["source_a", "patient_id_a", "split_a", "source_b", "patient_id_b", "split_b",
                     "distance", "same_patient"]].copy()
    judged = judged.join(pair_similarity(across, splits)[["correlation", "mean_abs_diff"]].round(3))
    for side in "ab":
        keys = list(zip(across[f"source_{side}"], across[f"image_id_{side}"]))
        judged[f"age, sex, location {side}"] = [
            " ".join(str(v) for v in who.loc[k, ["age", "sex", "location"]] if pd.notna(v) and str(v).strip())
            or "-" for k in keys]
    judged["trained on one, tested on the other in"] = pairs_in_compositions(across, composed)
    return judged


def _age(text: str) -> str:
    """``"27.0 M Italy"`` as ``"27 M Italy"`` (the manifests' ages are floats)."""
    head, _, rest = text.partition(" ")
    try:
        return f"{float(head):.0f} {rest}".strip()
    except ValueError:
        return text


def near_pairs_table(judged: pd.DataFrame) -> pd.DataFrame:
    """:func:`near_pairs_judged` for reading, in seven columns that fit the page: each image as
    "patient (split) · age sex location", the pHash distance, whether the two patient ids are the
    same, the two similarities and the compositions that train on one and test on the other."""
    def image(r, side: str) -> str:
        about = _age(r[f"age, sex, location {side}"])
        return f"{r[f'patient_id_{side}']} ({r[f'split_{side}']})" + ("" if about == "-" else f" · {about}")

    return pd.DataFrame({
        "image a": [image(r, "a") for _, r in judged.iterrows()],
        "image b": [image(r, "b") for _, r in judged.iterrows()],
        "pHash bits apart": judged["distance"].to_numpy(),
        "same patient id": ["yes" if s else "no" for s in judged["same_patient"]],
        "correlation": judged["correlation"].to_numpy(),
        "mean abs. grey diff.": judged["mean_abs_diff"].to_numpy(),
        "trained on one, tested on the other in": [v or "–" for v in judged["trained on one, tested on the other in"]],
    })


def image_grid(manifest: pd.DataFrame, *, per_source: int = 6, seed: int = 0,
               label: str | tuple[str, ...] | None = ("covid", "tb"), read=None, size: float = 1.5) -> Figure:
    """A grid of example images: one row per source, ``per_source`` random images each.

    Args:
        manifest: rows with ``source``, ``image_path`` (and ``view``, the ``label`` column).
        per_source: images per row.
        seed: which images are drawn.
        label: column (or columns, the first one present is shown) written under each image
            with its view; None: the view only.
        read: image reader (default :func:`covid_lib.data.read_image`).
        size: inches per image.
    """
    if read is None:
        read = read_image
    sources = list(dict.fromkeys(manifest["source"]))
    fig = Figure(figsize=(size * per_source, size * 1.15 * len(sources)), layout="constrained")
    axes = fig.subplots(len(sources), per_source, squeeze=False)
    for r, source in enumerate(sources):
        rows = manifest[manifest["source"] == source]
        picks = rows.sample(n=min(per_source, len(rows)), random_state=seed)
        for c in range(per_source):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color(_color(source))
                spine.set_linewidth(2)
            if c >= len(picks):
                ax.set_axis_off()
                continue
            row = picks.iloc[c]
            ax.imshow(read(row["image_path"]), cmap="gray", vmin=0, vmax=255)
            text = str(row.get("view", ""))
            for column in ((label,) if isinstance(label, str) else tuple(label or ())):
                if column in row and pd.notna(row[column]) and str(row[column]) != "":
                    text += f" · {column} {row[column]}"
                    break
            ax.set_xlabel(text, fontsize=7)
            if c == 0:
                ax.set_ylabel(source, fontsize=9, color=_color(source), fontweight="bold")
    return fig


def intensity_statistics(manifest: pd.DataFrame, *, bins: int = 64, read=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-image intensity statistics and per-source mean histograms of the stored 8-bit images.

    Returns:
        ``(per_image, histograms)``: ``per_image`` has one row per image (``source``, ``image_id``,
        ``mean``, ``std``, ``p01``, ``p99``, ``black`` and ``white``: the share of pixels at most 5
        or at least 250, and ``border_mean``: mean of the outer 5 % frame, where text and
        collimation live); ``histograms`` has one row per source and ``bins`` columns (bin left
        edges), each row the mean of the images' normalised histograms.
    """
    if read is None:
        read = read_image
    edges = np.linspace(0, 256, bins + 1)
    rows, hists = [], {}
    for source, part in manifest.groupby("source", sort=False):
        acc = np.zeros(bins)
        for _, r in part.iterrows():
            img = read(r["image_path"]).astype(np.float32)
            h, _ = np.histogram(img, bins=edges)
            acc += h / img.size
            bh, bw = max(1, img.shape[0] // 20), max(1, img.shape[1] // 20)
            frame = np.concatenate([img[:bh].ravel(), img[-bh:].ravel(), img[:, :bw].ravel(), img[:, -bw:].ravel()])
            p01, p99 = np.percentile(img, [1, 99])
            rows.append({"source": source, "image_id": r["image_id"], "mean": float(img.mean()),
                         "std": float(img.std()), "p01": float(p01), "p99": float(p99),
                         "black": float((img <= 5).mean()), "white": float((img >= 250).mean()),
                         "border_mean": float(frame.mean())})
        hists[source] = acc / max(len(part), 1)
    histograms = pd.DataFrame.from_dict(hists, orient="index", columns=[int(e) for e in edges[:-1]])
    return pd.DataFrame(rows), histograms


def plot_intensity(per_image: pd.DataFrame, histograms: pd.DataFrame) -> Figure:
    """Per-source mean histograms (left) and the spread of image mean and contrast (right)."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax_h, ax_m, ax_s = fig.subplots(1, 3, width_ratios=[2, 1, 1])
    width = float(np.diff(np.asarray(histograms.columns, dtype=float))[0]) if histograms.shape[1] > 1 else 256.0
    centres = np.asarray(histograms.columns, dtype=float) + width / 2
    for source, hist in histograms.iterrows():
        ax_h.plot(centres, hist.to_numpy() / width, color=_color(source), label=source, lw=1.6)
    ax_h.set_xlabel("pixel value (stored 8-bit image)")
    ax_h.set_ylabel("share of pixels per grey level")
    ax_h.set_yscale("log")
    ax_h.legend(fontsize=8, ncols=2)
    ax_h.set_title("mean intensity histogram per source", fontsize=10)
    sources = list(histograms.index)
    for ax, column, title in ((ax_m, "mean", "image mean"), (ax_s, "std", "image contrast (std)")):
        data = [per_image.loc[per_image["source"] == s, column].to_numpy() for s in sources]
        parts = ax.boxplot(data, orientation="horizontal", tick_labels=sources, patch_artist=True, widths=0.6,
                           flierprops={"markersize": 2})
        for patch, s in zip(parts["boxes"], sources):
            patch.set_facecolor(_color(s))
            patch.set_alpha(0.6)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
    ax_s.set_yticklabels([])
    return fig


def original_formats(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per source: original file formats and modes, and the spread of original sizes (pixels)."""
    out = {}
    for source, rows in manifest.groupby("source", sort=False):
        w, h = rows["orig_width"].astype(float), rows["orig_height"].astype(float)
        out[source] = {
            "formats": _values(rows["orig_format"]),
            "modes": _values(rows["orig_mode"]),
            "width (median, min-max)": f"{w.median():.0f} ({w.min():.0f}-{w.max():.0f})",
            "height (median, min-max)": f"{h.median():.0f} ({h.min():.0f}-{h.max():.0f})",
            "aspect h/w (median)": f"{(h / w).median():.2f}",
            "distinct sizes": int(rows[["orig_width", "orig_height"]].drop_duplicates().shape[0]),
        }
    return pd.DataFrame(out).T.rename_axis("source")


def plot_original_sizes(manifest: pd.DataFrame) -> Figure:
    """Original width against height per source (log axes): each source has its own signature."""
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.subplots()
    for source, rows in manifest.groupby("source", sort=False):
        jitter = np.random.default_rng(0).normal(1, 0.004, size=(2, len(rows)))
        ax.scatter(rows["orig_width"].astype(float) * jitter[0], rows["orig_height"].astype(float) * jitter[1],
                   s=8, alpha=0.5, color=_color(source), label=f"{source} ({len(rows)})")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("original width (px)")
    ax.set_ylabel("original height (px)")
    ax.legend(fontsize=8, markerscale=2)
    ax.set_title("original image sizes, before the common 256 px encoding", fontsize=10)
    return fig


def image_level_split_leakage(manifest: pd.DataFrame, *, label: str = "covid", test_size: float = 0.3,
                              seeds: Iterable[int] = range(10)) -> pd.DataFrame:
    """What splitting by *image* (the paper's code: stratified ``train_test_split``) does to patients.

    For each seed, splits the rows 70/30 by image, stratified on ``label``, and counts the test
    images whose patient also has an image in the training part.

    Returns:
        One row per seed: ``test_images``, ``patients_in_both``, ``test_images_leaked`` and their share.
    """
    from sklearn.model_selection import train_test_split

    rows = manifest.reset_index(drop=True)
    y = rows[label].astype("string").fillna("?")
    out = []
    for seed in seeds:
        train, test = train_test_split(rows.index, test_size=test_size, stratify=y, random_state=seed)
        train_patients = set(rows.loc[train, "patient_id"])
        test_rows = rows.loc[test]
        leaked = test_rows["patient_id"].isin(train_patients)
        out.append({"seed": seed, "test_images": len(test_rows),
                    "patients_in_both": int(test_rows.loc[leaked, "patient_id"].nunique()),
                    "test_images_leaked": int(leaked.sum()),
                    "share_leaked": float(leaked.mean())})
    return pd.DataFrame(out)


def duplicate_examples(pairs: pd.DataFrame, manifest: pd.DataFrame, *, n: int = 4, per_row: int = 2,
                       read=None, size: float = 2.2) -> Figure:
    """Show up to ``n`` duplicate pairs side by side, ``per_row`` pairs per row.

    ``pairs`` has the columns of :attr:`covid_lib.data.SplitAudit.duplicates` (``source_a``,
    ``image_id_a``, ``patient_id_a``, ``split_a``, the same with ``_b``, ``kind``, ``distance``).
    """
    if read is None:
        read = read_image
    index = manifest.drop_duplicates(["source", "image_id"]).set_index(["source", "image_id"])["image_path"]
    shown = pairs.head(n)
    if shown.empty:
        fig = Figure(figsize=(4, 1), layout="constrained")
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no duplicate pairs", ha="center", va="center")
        return fig
    rows = -(-len(shown) // per_row)
    fig = Figure(figsize=(size * 2 * per_row, size * 1.35 * rows), layout="constrained")
    axes = fig.subplots(rows, 2 * per_row, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, (_, p) in enumerate(shown.iterrows()):
        r, c = divmod(k, per_row)
        for side, ax in zip("ab", axes[r, 2 * c: 2 * c + 2]):
            ax.set_axis_on()
            ax.imshow(read(index[(p[f"source_{side}"], p[f"image_id_{side}"])]), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{p[f'patient_id_{side}']} · {p[f'split_{side}']}", fontsize=8)
        what = "identical pixels" if p["kind"] == "exact" else f"pHash {p['distance']} bits apart"
        axes[r, 2 * c].set_title(f"{p['kind']}: {what}", fontsize=9, loc="left")
    return fig


def demographics(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per source: how many images state age and sex, the age quartiles and the share of women."""
    out = {}
    for source, rows in manifest.groupby("source", sort=False):
        age = pd.to_numeric(rows["age"].replace("", None), errors="coerce") if "age" in rows else pd.Series(dtype=float)
        sex = rows["sex"].astype("string").str.upper().replace("", pd.NA) if "sex" in rows else pd.Series(dtype="string")
        known = sex.dropna()
        out[source] = {
            "age known": int(age.notna().sum()),
            "age median (IQR)": (f"{age.median():.0f} ({age.quantile(0.25):.0f}-{age.quantile(0.75):.0f})"
                                 if age.notna().any() else "-"),
            "age range": f"{age.min():.0f}-{age.max():.0f}" if age.notna().any() else "-",
            "sex known": int(known.size),
            "women": f"{(known == 'F').mean():.0%}" if known.size else "-",
        }
    return pd.DataFrame(out).T.rename_axis("source")


def intensity_summary(per_image: pd.DataFrame) -> pd.DataFrame:
    """Per-source means of :func:`intensity_statistics`, rounded, shares in per cent."""
    stats = per_image.groupby("source", sort=False)[["mean", "std", "black", "white", "border_mean"]].mean()
    stats[["black", "white"]] *= 100
    return stats.rename(columns={"mean": "mean grey level", "std": "contrast (std)", "black": "black pixels %",
                                 "white": "white pixels %", "border_mean": "border grey level"}).round(1)
