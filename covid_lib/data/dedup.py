"""Exact and near-duplicate images: pixel hashes and perceptual hashes.

The COVID-ChestXRay collection lists some files twice and holds different files with identical
pixels; the Kermany official split shares images between train and test. Two images are *exact*
duplicates when their decoded pixels are identical, *near* duplicates when their perceptual hashes
(DCT pHash, 64 bits, :mod:`imagehash`) differ in at most ``max_distance`` bits.
"""

from __future__ import annotations

import hashlib
import os

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from tqdm.std import tqdm  # plain text bar: tqdm.auto needs ipywidgets inside kernels

from covid_lib.data.sources import read_image
from covid_lib.paths import cache_dir

#: Hamming distance (of 64 pHash bits) at or under which two images count as near duplicates.
NEAR_DUPLICATE_BITS = 4


def image_hashes(paths: list[str], *, progress: bool = True) -> pd.DataFrame:
    """Pixel hash (sha1 of the decoded 8-bit pixels and shape) and 64-bit pHash of each image."""
    rows = []
    for path in tqdm(paths, desc="hashing images", disable=not progress, leave=False):
        pixels = read_image(path)
        exact = hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()
        phash = imagehash.phash(Image.fromarray(pixels))
        rows.append({"image_path": path, "pixel_hash": exact, "phash": str(phash)})
    return pd.DataFrame(rows, columns=["image_path", "pixel_hash", "phash"])


def cached_image_hashes(paths: list[str] | pd.Series, *, progress: bool = True) -> pd.DataFrame:
    """:func:`image_hashes`, cached in ``cache_dir('hashes')``; an entry is reused while the
    file's size and modification time are unchanged. Rows follow ``paths``."""
    paths = [str(p) for p in paths]
    store = cache_dir("hashes") / "hashes.csv"
    columns = ["image_path", "stat", "pixel_hash", "phash"]
    known = pd.read_csv(store, dtype=str) if store.is_file() else pd.DataFrame(columns=columns)
    stats = {p: _stat_key(p) for p in paths}
    known = known[known["image_path"].map(stats).eq(known["stat"]) | ~known["image_path"].isin(stats)]
    missing = sorted(set(paths) - set(known["image_path"]))
    if missing:
        fresh = image_hashes(missing, progress=progress)
        fresh["stat"] = fresh["image_path"].map(stats)
        known = pd.concat([known, fresh[columns]], ignore_index=True)
        known.to_csv(store, index=False)
    table = known.drop_duplicates("image_path").set_index("image_path")
    return table.loc[paths, ["pixel_hash", "phash"]].reset_index()


def _stat_key(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}-{st.st_mtime_ns}"


def _phash_bits(hex_hashes: pd.Series) -> np.ndarray:
    return np.array([[int(b) for b in f"{int(h, 16):064b}"] for h in hex_hashes], dtype=np.uint8)


def duplicate_pairs(hashes: pd.DataFrame, *, max_distance: int = NEAR_DUPLICATE_BITS) -> pd.DataFrame:
    """Every pair of rows (i < j) that are exact or near duplicates.

    Args:
        hashes: one row per image with ``pixel_hash`` and ``phash`` (as from :func:`image_hashes`).
        max_distance: largest pHash Hamming distance counted as a near duplicate.

    Returns:
        DataFrame with ``i``, ``j`` (positional indices into ``hashes``), ``distance`` and ``kind``
        (``"exact"`` when pixels are identical, else ``"near"``).
    """
    bits = _phash_bits(hashes["phash"]).astype(np.float32)  # BLAS; sums of 0/1 up to 64 are exact
    if len(bits) == 0:
        return pd.DataFrame(columns=["i", "j", "distance", "kind"])
    distance = (bits.shape[1] - (bits @ bits.T + (1 - bits) @ (1 - bits).T)).astype(np.int16)  # Hamming distance
    pixel = pd.factorize(hashes["pixel_hash"].to_numpy())[0]  # equal codes: equal pixel hashes
    i, j = np.nonzero(np.triu(distance <= max_distance, k=1) | np.triu(pixel[:, None] == pixel[None, :], k=1))
    kind = np.where(pixel[i] == pixel[j], "exact", "near")
    return pd.DataFrame({"i": i, "j": j, "distance": distance[i, j], "kind": kind})


def pair_similarity(pairs: pd.DataFrame, manifest: pd.DataFrame, *, side: int = 64, read=None) -> pd.DataFrame:
    """How alike the two images of each duplicate pair are, beyond their pHash distance.

    Both images are resized to ``side`` x ``side`` and compared: ``correlation`` (Pearson, of the
    pixels) and ``mean_abs_diff`` (grey levels, 0-255). A re-encoded or rescaled copy correlates
    near 1 with a small difference; two different X-rays of the same layout (same framing,
    collimation) share a pHash but correlate clearly less. Also ``aspect_a``, ``aspect_b``
    (original width / height).

    Args:
        pairs: rows of :attr:`covid_lib.data.SplitAudit.duplicates` (``source_a``, ``image_id_a``,
            the same with ``_b``).
        manifest: rows with ``source, image_id, image_path, orig_width, orig_height``.
    """
    read = read or read_image
    index = manifest.drop_duplicates(["source", "image_id"]).set_index(["source", "image_id"])
    out = []
    for _, p in pairs.iterrows():
        imgs, aspects = [], []
        for s in "ab":
            row = index.loc[(p[f"source_{s}"], p[f"image_id_{s}"])]
            small = Image.fromarray(read(row["image_path"])).resize((side, side), Image.BILINEAR)
            imgs.append(np.asarray(small, dtype=np.float64).ravel())
            aspects.append(float(row["orig_width"]) / float(row["orig_height"]))
        corr = float(np.corrcoef(imgs[0], imgs[1])[0, 1]) if imgs[0].std() and imgs[1].std() else float("nan")
        out.append({"correlation": corr, "mean_abs_diff": float(np.abs(imgs[0] - imgs[1]).mean()),
                    "aspect_a": aspects[0], "aspect_b": aspects[1]})
    return pd.DataFrame(out, index=pairs.index)


def pairs_in_compositions(pairs: pd.DataFrame, composed: pd.DataFrame) -> pd.Series:
    """For each duplicate pair, the compositions that train on one image and test on the other.

    Args:
        pairs: rows with ``source_a, image_id_a, source_b, image_id_b``.
        composed: rows of the compositions (``composition, source, image_id, split``).

    Returns:
        A string per pair (same index): the composition names joined by ``", "``, or ``""`` when no
        composition puts one image in train/validation and the other in its test split.
    """
    fitted = composed["split"] != "test"
    seen = {(c, s, i) for c, s, i in zip(composed["composition"], composed["source"], composed["image_id"])}
    role = {}
    for c, s, i, f in zip(composed["composition"], composed["source"], composed["image_id"], fitted):
        role.setdefault((c, s, i), set()).add("fit" if f else "test")
    names = list(dict.fromkeys(composed["composition"]))
    out = []
    for _, p in pairs.iterrows():
        a, b = (p["source_a"], p["image_id_a"]), (p["source_b"], p["image_id_b"])
        hit = [c for c in names if (c, *a) in seen and (c, *b) in seen
               and (("fit" in role[(c, *a)] and "test" in role[(c, *b)])
                    or ("test" in role[(c, *a)] and "fit" in role[(c, *b)]))]
        out.append(", ".join(hit))
    return pd.Series(out, index=pairs.index, dtype=object)
