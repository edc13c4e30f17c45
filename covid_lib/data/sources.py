"""The six public sources as manifests with one common schema, validated.

Each source lives under ``<data root>/<source>/`` as ``manifest.csv`` + ``images/`` (+ ``masks/``),
the layout of ``../shared/data`` (see its README) and of what :mod:`covid_lib.data.download`
writes. :func:`load_source` returns the manifest with absolute paths and typed labels, plus a
table of every excluded row and why: nothing is dropped silently. Every image and mask is decoded
in full once (a truncated file is an exclusion, not a crash three commands later) and the verdict
cached (:mod:`covid_lib.data.integrity`). Structural problems (missing root, source, columns;
labels out of range) raise :class:`DataError` with what to do about it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from covid_lib.data.download.registry import REGISTRY
from covid_lib.data.integrity import FileCheck, check_files, files_digest, listed_files
from covid_lib.paths import resolve_data_root


class DataError(ValueError):
    """A data problem with a message that says what is wrong, where, and how to fix it."""


class ImageReadError(DataError):
    """An image or mask file that is missing or cannot be decoded."""


@dataclass(frozen=True)
class SourceSpec:
    """What the library knows of a source: labels and their allowed values, role in the paper.
    Its title, URL and license are the download registry's (one home for a source's facts)."""

    name: str
    paper_role: str
    labels: dict[str, frozenset[str]]
    required: tuple[str, ...] = ()
    has_masks: bool = False
    caveats: str = ""

    @property
    def title(self) -> str:
        """The source's title, from the download registry (:data:`covid_lib.data.download.REGISTRY`)."""
        return REGISTRY[self.name].title

    @property
    def url(self) -> str:
        """Where the source comes from (the registry's)."""
        return REGISTRY[self.name].url

    @property
    def license(self) -> str:
        """The source's license (the registry's)."""
        return REGISTRY[self.name].license


_BINARY = frozenset({"0", "1"})
#: ChestXRay's labels, the same in both copies (``kermany``, ``kermany_full``: the same patients).
_KERMANY_LABELS = {"covid": frozenset({"0"}), "pneumonia": _BINARY,
                   "kermany_class": frozenset({"normal", "bacteria", "virus"}),
                   "kermany_split": frozenset({"train", "test"})}
_KERMANY_REQUIRED = ("covid", "pneumonia", "kermany_class")

SOURCES: dict[str, SourceSpec] = {
    spec.name: spec
    for spec in (
        SourceSpec(
            "cohen", "COVID-ChestXRay (and, here, the CORDA stand-in)",
            {"covid": _BINARY}, required=("covid",), has_masks=True,
            caveats="Many hospitals and figures from papers; several images per patient; "
            "5 files listed under two patient ids; V7 lung masks include the lung behind the heart.",
        ),
        SourceSpec(
            "hannover", "a hospital COVID+ source (unseen-source test; CORDA is private)",
            {"covid": frozenset({"1"})}, required=("covid",),
            caveats="All COVID+; many intensive-care images (lines, tubes, supine AP).",
        ),
        SourceSpec(
            "kermany", "ChestXRay (COVID- pool; pneumonia pre-training)",
            _KERMANY_LABELS, required=_KERMANY_REQUIRED,
            caveats="Children aged 1-5: a model separating them from adults may measure age. "
            "The official split shares some images between train and test.",
        ),
        SourceSpec(
            "kermany_full", "ChestXRay at the paper's pre-training scale (pre-training only; a second copy of kermany)",
            _KERMANY_LABELS, required=_KERMANY_REQUIRED,
            caveats="The same patients as kermany under the same patient ids: never use both copies without "
            "joining them by patient (covid_lib.data.full_copy). This working copy was squashed to 224x224 "
            "RGB JPEG by a redistribution (aspect ratio not kept; original sizes unknown).",
        ),
        SourceSpec(
            "nih", "RSNA (COVID- pool; pneumonia pre-training)",
            {"covid": frozenset({"0"}), "pneumonia": _BINARY, "rsna_target": _BINARY},
            required=("covid", "pneumonia"),
            caveats="500 No Finding + 500 Pneumonia chosen by a third party, not at random.",
        ),
        SourceSpec(
            "montgomery", "lung segmentation training", {"tb": _BINARY}, required=("tb",), has_masks=True,
            caveats="Redistributed at 512x512: images squashed to a square.",
        ),
        SourceSpec(
            "shenzhen", "lung segmentation training", {"tb": _BINARY}, required=("tb",), has_masks=True,
            caveats="Redistributed at 512x512.",
        ),
    )
}

#: The six sources of the study: the default of :func:`load_sources`, :func:`summary_table` and
#: :func:`data_version` (so the data version, and every run id hashing it, does not change when a
#: pre-training-only source is added).
STUDY_SOURCES: tuple[str, ...] = ("cohen", "hannover", "kermany", "nih", "montgomery", "shenzhen")
#: Sources used for pre-training only, never in a composition: ``kermany_full`` (issue 17).
PRETRAIN_ONLY_SOURCES: tuple[str, ...] = ("kermany_full",)

COMMON_COLUMNS: tuple[str, ...] = (
    "image_id", "path", "mask_path", "patient_id", "source", "view", "license", "origin",
    "orig_width", "orig_height", "orig_mode", "orig_format", "width", "height",
)
#: Label columns every loaded manifest carries (nullable Int8; <NA> where the source lacks it).
LABEL_COLUMNS: tuple[str, ...] = ("covid", "pneumonia")
FRONTAL_VIEWS = frozenset({"PA", "AP", "AP Supine"})
#: Every view a manifest may name (L: lateral); a row with another view is excluded with its reason.
KNOWN_VIEWS = FRONTAL_VIEWS | {"L"}
VIEW_CHOICES = ("all", "frontal")
EXCLUSION_COLUMNS = ["source", "image_id", "patient_id", "reason"]


@dataclass
class SourceData:
    """A loaded source: the usable rows and every excluded row with its reason."""

    name: str
    root: Path
    manifest: pd.DataFrame
    exclusions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EXCLUSION_COLUMNS))

    def __repr__(self) -> str:
        return (f"SourceData({self.name!r}: {len(self.manifest)} images, "
                f"{self.manifest['patient_id'].nunique()} patients, {len(self.exclusions)} excluded)")


def _source_dir(name: str, data_root: str | os.PathLike | None) -> tuple[Path, Path]:
    if name not in SOURCES:
        raise DataError(f"unknown source {name!r}; known sources: {', '.join(SOURCES)}")
    root = resolve_data_root(data_root)
    folder = root / name
    if not (folder / "manifest.csv").is_file():
        raise DataError(
            f"source {name!r} not found: expected {folder / 'manifest.csv'} under the data root {root}. "
            f"Fetch it with `python -m covid_lib data download {name} --root {root}` on a connected "
            f"machine (original: {SOURCES[name].url})."
        )
    return root, folder


def _read_manifest(folder: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataError(f"cannot parse {folder / 'manifest.csv'}: {err}") from None


def _check_columns(df: pd.DataFrame, spec: SourceSpec, where: Path) -> None:
    needed = [*COMMON_COLUMNS, *spec.labels]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; a {spec.name} manifest needs {needed}")


def _check_labels(df: pd.DataFrame, spec: SourceSpec, where: Path) -> None:
    for column, allowed in spec.labels.items():
        values = df[column].str.strip()
        bad = ~values.isin(allowed | {""})
        if column in spec.required:
            bad |= values.eq("")
        if bad.any():
            examples = df.loc[bad, ["image_id", column]].head(5).to_dict("records")
            raise DataError(
                f"{where}: {int(bad.sum())} row(s) with {column!r} outside {sorted(allowed)}"
                f"{' (required)' if column in spec.required else ''}, e.g. {examples}"
            )


def _typed(df: pd.DataFrame, spec: SourceSpec, folder: Path) -> pd.DataFrame:
    out = df.copy()
    for column, allowed in spec.labels.items():
        if allowed <= _BINARY:
            out[column] = pd.to_numeric(out[column].replace("", None)).astype("Int8")
    for column in LABEL_COLUMNS:
        if column not in out:
            out[column] = pd.array([pd.NA] * len(out), dtype="Int8")
    for column in ("orig_width", "orig_height", "width", "height"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("Int64")
    out["image_path"] = [str(folder / p) for p in out["path"]]
    out["mask_path"] = [str(folder / p) if p else None for p in out["mask_path"]]
    out["frontal"] = out["view"].isin(FRONTAL_VIEWS)
    return out


def _exclusion(row: pd.Series, reason: str) -> dict:
    return {"source": row["source"], "image_id": row["image_id"], "patient_id": row["patient_id"],
            "reason": reason}


def _file_problem(check: FileCheck | None, path: str, expected: tuple[int, int] | None, what: str) -> str | None:
    """Why the file at ``path`` cannot be used (None when it can), from its full-decode check."""
    if check is None:
        return f"{what} file missing: {path}"
    if not check.ok:
        return f"unreadable {what} {Path(path).parent.name}/{Path(path).name}: {check.problem}"
    if expected is not None and (check.width, check.height) != expected:
        return f"{what} size {check.width}x{check.height} differs from {expected[0]}x{expected[1]}"
    return None


def _row_problem(row: pd.Series, checks: dict[str, FileCheck | None] | None) -> str | None:
    if checks is None:
        return None if os.path.isfile(row["image_path"]) else f"image file missing: {row['image_path']}"
    expected = None
    if pd.notna(row["width"]) and pd.notna(row["height"]):
        expected = (int(row["width"]), int(row["height"]))
    image = checks[row["path"]]
    problem = _file_problem(image, row["image_path"], expected, "image")
    if problem is None and row["mask_rel"]:
        problem = _file_problem(checks[row["mask_rel"]], row["mask_path"], (image.width, image.height), "mask")
    return problem


def _filter_rows(df: pd.DataFrame, views: str, checks: dict[str, FileCheck | None] | None,
                 ) -> tuple[pd.DataFrame, list[dict]]:
    excluded: list[dict] = []
    keep = np.ones(len(df), dtype=bool)
    first_patient: dict[str, str] = {}
    for i, (_, row) in enumerate(df.iterrows()):
        reason = None
        if row["image_id"] in first_patient:
            reason = (f"duplicate row: image_id already listed under patient "
                      f"{first_patient[row['image_id']]}")
        elif row["view"] not in KNOWN_VIEWS:
            reason = f"unknown view {row['view']!r} (known: {', '.join(sorted(KNOWN_VIEWS))})"
        elif views == "frontal" and not row["frontal"]:
            reason = f"{row['view']} view (frontal asked)"
        else:
            reason = _row_problem(row, checks)
        first_patient.setdefault(row["image_id"], row["patient_id"])
        if reason:
            keep[i] = False
            excluded.append(_exclusion(row, reason))
    return df.loc[keep].drop(columns="mask_rel").reset_index(drop=True), excluded


def load_source(
    name: str,
    data_root: str | os.PathLike | None = None,
    *,
    views: str = "all",
    verify: bool = True,
    strict: bool = False,
    progress: bool = False,
) -> SourceData:
    """Load one source's manifest in the common schema, with an exclusion report.

    Args:
        name: one of :data:`SOURCES`.
        data_root: folder holding ``<name>/manifest.csv``; default: ``COVID_LIB_DATA``, then
            ``../shared/data``.
        views: ``"all"`` or ``"frontal"`` (PA, AP, AP Supine; the paper uses frontal CXRs).
        verify: decode every image and mask in full and check its size (verdicts cached by file
            size and modification time, see :mod:`covid_lib.data.integrity`); else only check
            that the image files exist.
        strict: raise :class:`DataError` instead of excluding rows with file problems.
        progress: show a progress bar on stderr while images not seen before are checked (off by
            default: a bar on stderr would read as a warning in an executed chapter).

    Returns:
        :class:`SourceData`; ``manifest`` has absolute ``image_path``/``mask_path``, nullable Int8
        labels (``covid``, ``pneumonia`` and the source's own), ``frontal`` and the source's extras.
    """
    if views not in VIEW_CHOICES:
        raise DataError(f"views must be one of {VIEW_CHOICES}, got {views!r}")
    spec = SOURCES.get(name)
    root, folder = _source_dir(name, data_root)
    raw = _read_manifest(folder)
    _check_columns(raw, spec, folder / "manifest.csv")
    _check_labels(raw, spec, folder / "manifest.csv")
    if (raw["source"] != name).any():
        raise DataError(f"{folder / 'manifest.csv'}: 'source' column must be {name!r} on every row")
    checks = None
    if verify:
        checks = check_files(folder, [*raw["path"], *filter(None, raw["mask_path"])], progress=progress,
                             desc=f"checking {name} images")
    typed = _typed(raw, spec, folder)
    typed["mask_rel"] = raw["mask_path"].to_numpy()
    manifest, excluded = _filter_rows(typed, views, checks)
    exclusions = pd.DataFrame(excluded, columns=EXCLUSION_COLUMNS)
    not_file = exclusions["reason"].str.contains("duplicate row|view \\(frontal|unknown view", regex=True)
    file_problems = exclusions[~not_file]
    if strict and len(file_problems):
        raise DataError(f"{name}: {len(file_problems)} unusable file(s):\n"
                        + file_problems.to_string(index=False, max_rows=20))
    return SourceData(name, root, manifest, exclusions)


def load_sources(
    names: list[str] | tuple[str, ...] | None = None,
    data_root: str | os.PathLike | None = None,
    **kwargs,
) -> SourceData:
    """Load several sources (default: the six of :data:`STUDY_SOURCES`) into one :class:`SourceData`."""
    loaded = [load_source(n, data_root, **kwargs) for n in (names or list(STUDY_SOURCES))]
    manifest = pd.concat([s.manifest for s in loaded], ignore_index=True)
    exclusions = pd.concat([s.exclusions for s in loaded], ignore_index=True)
    return SourceData("+".join(s.name for s in loaded), loaded[0].root, manifest, exclusions)


def _label_counts(m: pd.DataFrame, spec: SourceSpec) -> str:
    parts = []
    for column in spec.labels:
        if column != "covid":
            counts = m[column].astype("string").fillna("?").value_counts().sort_index()
            parts.append(f"{column} " + "/".join(f"{v}:{n}" for v, n in counts.items()))
    return "; ".join(parts) or "-"


def summary_table(data_root: str | os.PathLike | None = None,
                  names: list[str] | tuple[str, ...] | None = None,
                  *, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per source (default: every source of :data:`SOURCES` present under the data root, the
    pre-training-only ones included): images, patients, labels, views and exclusions; and every
    exclusion reason."""
    rows, exclusions = [], []
    if not names:
        root = resolve_data_root(data_root)
        names = [n for n in SOURCES if n in STUDY_SOURCES or (root / n / "manifest.csv").is_file()]
    for name in names:
        loaded = load_source(name, data_root, progress=progress)
        m = loaded.manifest
        covid = m["covid"].value_counts().to_dict()
        rows.append({
            "source": name,
            "images": len(m),
            "patients": m["patient_id"].nunique(),
            "COVID+": covid.get(1, 0),
            "COVID-": covid.get(0, 0),
            "other labels": _label_counts(m, SOURCES[name]),
            "views": ", ".join(f"{v or '?'} {n}" for v, n in m["view"].value_counts().items()),
            "masks": int(m["mask_path"].notna().sum()),
            "excluded": len(loaded.exclusions),
        })
        exclusions.append(loaded.exclusions)
    return pd.DataFrame(rows), pd.concat(exclusions, ignore_index=True)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file as a 2-D ``uint8`` grayscale array, with a clear error when it fails."""
    try:
        with Image.open(path) as img:
            if img.mode == "I;16" or img.mode == "I":
                arr = np.asarray(img, dtype=np.float64)
                span = max(arr.max() - arr.min(), 1e-12)
                return ((arr - arr.min()) / span * 255).round().astype(np.uint8)
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"image file missing: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageReadError(f"cannot decode {path}: {type(err).__name__}: {err}") from None


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a lung mask as a 2-D ``bool`` array (pixels above 127 are lung)."""
    return read_image(path) > 127


def data_version(data_root: str | os.PathLike | None = None, *, sources: Sequence[str] | None = None,
                 progress: bool = False) -> str:
    """The data version: 12 hex digits of sha256 over every source's manifest and the size and
    content hash of every image and mask it lists. The one data hash of the project: run records,
    chapters, the pre-processing cache (per source) and the U-Net record all use it.

    Args:
        sources: only these sources (default: the six of :data:`STUDY_SOURCES`): the version of a
            cache or model built from them. Runs that use ``kermany_full`` hash the six plus it
            (:meth:`covid_lib.runs.RunSpec.data_sources`).

    Changes when a manifest changes or a listed file is edited, replaced or removed. Holds no
    modification time and no absolute path, so the same data on another machine has the same
    version. Content hashes come from the cache of :func:`covid_lib.data.integrity.check_files`.
    """
    root = resolve_data_root(data_root)
    digest = hashlib.sha256()
    for name in (STUDY_SOURCES if sources is None else sources):
        manifest = root / name / "manifest.csv"
        if manifest.is_file():
            digest.update(name.encode())
            digest.update(manifest.read_bytes())
            digest.update(files_digest(root / name, listed_files(manifest), progress=progress))
    return digest.hexdigest()[:12]


def _named_loader(name: str):
    spec = SOURCES[name]

    def loader(data_root: str | os.PathLike | None = None, **kwargs) -> SourceData:
        return load_source(name, data_root, **kwargs)

    loader.__name__ = loader.__qualname__ = f"load_{name}"
    loader.__doc__ = (f"Load ``{name}``: {spec.title}.\n\n    Original: {spec.url} ({spec.license}). "
                      f"Role: {spec.paper_role}.\n    Caveats: {spec.caveats or 'none known'}\n\n"
                      "    Keyword arguments are those of :func:`load_source`.")
    return loader


load_cohen = _named_loader("cohen")
load_hannover = _named_loader("hannover")
load_kermany = _named_loader("kermany")
load_nih = _named_loader("nih")
load_kermany_full = _named_loader("kermany_full")
load_montgomery = _named_loader("montgomery")
load_shenzhen = _named_loader("shenzhen")
