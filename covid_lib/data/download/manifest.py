"""What every builder shares: walking extracted files, reading their tables, writing a source's manifest."""

from __future__ import annotations

import csv
import fnmatch
import gzip
import logging
import os
import re
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from covid_lib.data.download.encode import encode_image, encode_mask
from covid_lib.data.download.errors import BuildError
from covid_lib.data.download.registry import MANIFEST_COLUMNS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


_SKIP_DIRS = {"__MACOSX", ".git", ".svn", ".hg"}


def walk_files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` (following links), sorted, without VCS and macOS metadata."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if not name.startswith("._"):
                yield Path(dirpath) / name


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def in_mask_folder(path: Path, root: Path) -> bool:
    return any("mask" in part.lower() for part in path.relative_to(root).parent.parts)


def path_tail(path: Path, anchors: Iterable[str]) -> str:
    """The path from its first component named like one of ``anchors`` (else the file name)."""
    parts = path.parts
    wanted = {a.lower() for a in anchors}
    for i in range(len(parts) - 1):
        if parts[i].lower() in wanted:
            return "/".join(parts[i:])
    return path.name


def safe_id(text: str) -> str:
    return re.sub(r"[\\/\x00]", "_", text).strip()


def norm_int(value: str) -> str:
    """``'-3.0'`` -> ``'-3'``; other strings unchanged."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value or ""
    return str(int(number)) if number.is_integer() else value


def read_table(path: Path) -> list[dict[str, str]]:
    """A CSV (optionally .gz) as dicts with stripped, lower-case keys and stripped values."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        return [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k}
                for row in reader]


def table_header(path: Path) -> list[str]:
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            return [c.strip().lower() for c in next(csv.reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


class ManifestWriter:
    """Encodes images (and masks) into ``<out_root>/<source>/`` and writes the manifest."""

    def __init__(self, out_root: str | os.PathLike, source: str, image_ids: Iterable[str] | None = None):
        self.source = source
        self.columns = MANIFEST_COLUMNS[source]
        self.folder = Path(out_root) / source
        (self.folder / "images").mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, object]] = []
        self.done: dict[str, dict[str, object]] = {}
        self.skipped: list[str] = []
        self.image_ids = set(image_ids) if image_ids is not None else None

    def wanted(self, image_id: str) -> bool:
        return self.image_ids is None or image_id in self.image_ids

    def add(self, image_id: str, src: Path, *, masks=None, **fields) -> bool:
        """Encode ``src`` (once per image_id) and its masks; add a manifest row. False if skipped."""
        if image_id not in self.done:
            try:
                img, info = encode_image(src)
            except BuildError as err:
                self.skipped.append(str(err))
                log.warning("%s: skipping %s", self.source, err)
                return False
            img.save(self.folder / "images" / f"{image_id}.png", format="PNG")
            files = {"path": f"images/{image_id}.png", "mask_path": "", **info,
                     "width": img.size[0], "height": img.size[1]}
            if masks:
                try:
                    mask = encode_mask(masks, img.size)
                except BuildError as err:
                    log.warning("%s: no mask for %s: %s", self.source, image_id, err)
                else:
                    (self.folder / "masks").mkdir(exist_ok=True)
                    mask.save(self.folder / "masks" / f"{image_id}.png", format="PNG")
                    files["mask_path"] = f"masks/{image_id}.png"
            self.done[image_id] = files
        row = {column: "" for column in self.columns}
        row.update({k: v for k, v in fields.items() if k in row})
        row.update(self.done[image_id])
        row.update({"image_id": image_id, "source": self.source})
        self.rows.append(row)
        return True

    def write(self) -> Path:
        if not self.rows:
            raise BuildError(f"{self.source}: no image could be built"
                             + (f" ({len(self.skipped)} unreadable)" if self.skipped else "")
                             + (" (none of the requested image ids was found)" if self.image_ids is not None else ""))
        tmp = self.folder / "manifest.csv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(self.columns), lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.folder / "manifest.csv")
        masks = sum(bool(r["mask_path"]) for r in self.rows)
        log.info("%s: %d rows, %d images, %d with masks, %d skipped -> %s", self.source, len(self.rows),
                 len(self.done), masks, len(self.skipped), self.folder)
        return self.folder


def build_progress(items, source: str, progress: bool):
    return tqdm(items, desc=f"building {source}", unit="img", disable=not progress, leave=False)


def find_tables(raw_dir: Path, name_pattern: str, needed: set[str]) -> list[Path]:
    """Tables under ``raw_dir`` named like ``name_pattern`` whose header has ``needed``, shallowest first."""
    hits = [p for p in walk_files(raw_dir) if fnmatch.fnmatch(p.name.lower(), name_pattern.lower())
            and needed <= set(table_header(p))]
    return sorted(hits, key=lambda p: (len(p.parts), str(p)))
