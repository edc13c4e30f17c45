"""Read and check a user's chest X-ray manifest for :mod:`covid_lib.audit`.

A manifest is a CSV with at least ``path`` (image files, absolute or relative to the CSV's
folder, any format PIL reads) and ``label`` (0/1, or class names: two or more). Optional columns:
``patient_id``, ``source`` (or ``site``), ``view``, ``age``, ``sex``, ``date``, ``split``
(``train``/``val``/``test``), and for converted copies the original ``orig_width``,
``orig_height``, ``orig_format``, ``orig_mode`` (else read from the files). Every problem that makes the audit meaningless is a
:class:`ManifestError` with a one-line message; an unreadable image is listed, not fatal.

:func:`load_manifest` returns the rows in the book's manifest schema (``image_id``,
``image_path``, ``patient_id``, ``group_id``, ``source``, ``view``, the ``orig_*`` columns of
each file), so that the book's measurements apply to them unchanged.

Example:
    >>> parse_labels(pd.Series(["viral", "bacterial", "viral"]))[1]
    ['bacterial', 'viral']
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm.std import tqdm

REQUIRED: tuple[str, ...] = ("path", "label")
OPTIONAL: tuple[str, ...] = ("patient_id", "source", "site", "view", "age", "sex", "date", "split")
#: The original file's size, format and mode, for images that are converted copies (the book's data
#: root); when all four are given they replace what the files themselves say.
ORIGINAL: tuple[str, ...] = ("orig_width", "orig_height", "orig_format", "orig_mode")
#: Accepted spellings of the three splits.
SPLIT_NAMES: dict[str, str] = {"train": "train", "training": "train", "val": "val", "valid": "val",
                               "validation": "val", "test": "test", "testing": "test"}


class ManifestError(ValueError):
    """The manifest cannot be audited (the message is one line)."""


@dataclass
class AuditManifest:
    """A checked manifest.

    Attributes:
        rows: readable images in the book's schema; ``label`` is the class code (0..K-1),
            ``label_name`` the class as the user wrote it.
        classes: class names by code.
        unreadable: ``path, reason`` of each image that could not be read (left out of ``rows``).
        given: the optional columns the manifest has.
        path: the manifest file.
    """

    rows: pd.DataFrame
    classes: list[str]
    unreadable: pd.DataFrame
    given: tuple[str, ...]
    path: Path
    notes: list[str] = field(default_factory=list)

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def has_test_split(self) -> bool:
        """A ``split`` column with both test and train/val rows: measures fit on train+val, score on test."""
        split = self.rows["split"]
        return bool((split == "test").any() and split.isin(["train", "val"]).any())


def parse_labels(labels: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Class codes and names: 0/1 (numbers or booleans) keep their meaning; any other labels must be
    names (not numbers), coded in sorted order. One class only, an empty label, or numbers other
    than 0 and 1 are :class:`ManifestError`."""
    text = labels.astype(str).str.strip()
    empty = labels.isna() | (text == "") | text.str.lower().isin(["nan", "none"])
    if empty.any():
        raise ManifestError(f"{int(empty.sum())} row(s) have no label (first at row {int(np.flatnonzero(empty)[0]) + 2} "
                            "of the CSV); give every image a label")
    lowered = text.str.lower().replace({"true": "1", "false": "0"})
    numeric = pd.to_numeric(lowered, errors="coerce")
    if numeric.notna().all():
        values = sorted(set(numeric))
        if not set(values) <= {0.0, 1.0}:
            shown = ", ".join(f"{v:g}" for v in values[:6])
            raise ManifestError(f"labels must be 0/1 or class names, got the numbers {shown}; "
                                "write multi-class labels as names (e.g. normal, bacterial, viral)")
        codes, classes = numeric.astype(int).to_numpy(), ["0", "1"]
    elif numeric.notna().any():
        mixed = sorted(set(text[numeric.notna()]))[:3]
        raise ManifestError(f"labels mix numbers ({', '.join(mixed)}) and names; use one kind")
    else:
        classes = sorted(set(text))
        codes = text.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=int)
    present = sorted(set(codes))
    if len(present) < 2:
        raise ManifestError(f"every image has the label {classes[present[0]]!r}: "
                            "the audit needs at least two classes")
    return codes, classes


def _splits(values: pd.Series) -> pd.Series:
    text = values.fillna("").astype(str).str.strip().str.lower()
    bad = sorted(set(text[~text.isin(list(SPLIT_NAMES)) & (text != "")]))
    if bad:
        raise ManifestError(f"unknown split value(s) {', '.join(map(repr, bad[:5]))}; use train, val or test")
    if (text == "").any():
        raise ManifestError(f"{int((text == '').sum())} row(s) have no split; give every row one or drop the column")
    return text.map(SPLIT_NAMES)


def image_info(path: str | os.PathLike) -> dict:
    """Original width, height, file format and mode of an image (decoded fully, so a truncated file
    fails here); raises ``OSError``/``ValueError`` when PIL cannot read it."""
    with Image.open(path) as img:
        info = {"orig_width": img.width, "orig_height": img.height, "orig_format": img.format or "unknown",
                "orig_mode": img.mode}
        img.load()
    return info


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ManifestError(f"cannot read {path} as CSV: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    frame.columns = [c.strip().lower() for c in frame.columns]
    return frame


def load_manifest(path: str | os.PathLike, *, progress: bool = False) -> AuditManifest:
    """Read, check and normalise a manifest (see the module docstring). Every image is opened once.

    Raises:
        ManifestError: missing columns, no rows, bad labels or splits, one class, or no readable image.
    """
    path = Path(path).resolve()
    raw = _read_csv(path)
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise ManifestError(f"{path.name} lacks the column(s) {', '.join(missing)}; "
                            f"it has {', '.join(raw.columns) or 'none'} (required: {', '.join(REQUIRED)})")
    if raw.empty:
        raise ManifestError(f"{path.name} has no rows")
    if (raw["path"].str.strip() == "").any():
        raise ManifestError(f"{int((raw['path'].str.strip() == '').sum())} row(s) have an empty path")
    given = tuple(c for c in OPTIONAL if c in raw.columns)
    codes, classes = parse_labels(raw["label"])
    rows = pd.DataFrame(index=raw.index)
    rows["image_path"] = [str((path.parent / p.strip()).resolve()) for p in raw["path"]]
    ids = raw["path"].str.strip()
    repeat = ids.groupby(ids).cumcount()  # a path listed twice is two rows: keep their ids distinct
    rows["image_id"] = ids.where(repeat == 0, ids + "#" + (repeat + 1).astype(str))
    rows["label"] = codes
    rows["label_name"] = [classes[c] for c in codes]
    notes = []
    if "patient_id" in raw and (raw["patient_id"].str.strip() != "").all():
        rows["patient_id"] = raw["patient_id"].str.strip()
    else:
        rows["patient_id"] = [f"image:{i}" for i in raw.index]
        notes.append("no patient_id (or some empty): each image counts as its own patient, so intervals "
                     "are too narrow and leakage cannot be checked if a patient has several images")
    rows["group_id"] = rows["patient_id"]
    site = raw["source"] if "source" in raw else raw["site"] if "site" in raw else None
    rows["source"] = site.str.strip().replace("", "unknown") if site is not None else "unknown"
    for col in ("view", "age", "sex", "date"):
        rows[col] = raw[col].str.strip().replace("", np.nan) if col in raw else np.nan
    rows["split"] = _splits(raw["split"]) if "split" in raw else "all"
    info, bad = [], []
    for i, p in enumerate(tqdm(rows["image_path"], desc="reading images", disable=not progress, leave=False)):
        try:
            info.append(image_info(p))
        except FileNotFoundError:
            bad.append({"path": raw["path"].iat[i], "reason": "file missing"})
            info.append(None)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            bad.append({"path": raw["path"].iat[i], "reason": f"{type(err).__name__}: {err}".splitlines()[0]})
            info.append(None)
    ok = np.array([x is not None for x in info])
    if not ok.any():
        raise ManifestError(f"none of the {len(rows)} images could be read (first: {bad[0]['path']}: {bad[0]['reason']})")
    meta = pd.DataFrame([x for x in info if x is not None], index=rows.index[ok])
    if all(c in raw for c in ORIGINAL):
        given_orig = raw.loc[ok, list(ORIGINAL)].replace("", np.nan)
        for c in ORIGINAL:
            known = given_orig[c].notna()
            meta.loc[known, c] = pd.to_numeric(given_orig.loc[known, c]) if c in ("orig_width", "orig_height") \
                else given_orig.loc[known, c]
        notes.append("original sizes, formats and modes taken from the manifest's orig_* columns")
    rows = rows[ok].join(meta).reset_index(drop=True)
    if rows["label"].nunique() < 2:
        raise ManifestError("the readable images hold one class only: the audit needs at least two")
    rows["width"], rows["height"] = rows["orig_width"], rows["orig_height"]
    return AuditManifest(rows, classes, pd.DataFrame(bad, columns=["path", "reason"]), given, path, notes)
