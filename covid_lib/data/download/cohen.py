"""The Cohen COVID-19 image collection: metadata, V7 lung masks and git first-seen dates."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from PIL import Image, ImageDraw

from covid_lib.data.download.errors import BuildError
from covid_lib.data.download.manifest import (
    IMAGE_SUFFIXES, ManifestWriter, find_tables, in_mask_folder, is_image, build_progress, read_table,
    safe_id, walk_files,
)

log = logging.getLogger(__name__)


def _is_xray(row: dict[str, str]) -> bool:
    modality = row.get("modality", "").lower().replace("-", "").replace(" ", "")
    if modality:
        return modality.startswith("xray") or modality in {"cr", "dx", "radiograph"}
    return (row.get("view", "").upper() not in {"CT", "AXIAL", "CORONAL"}
            and row.get("folder", "images").lower() != "volumes")


def _darwin_mask(path: Path) -> tuple[str, Callable[[], Image.Image]] | None:
    """(image file name, mask renderer) of a V7 Darwin JSON annotation file, else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "annotations" not in data:
        return None
    image = data.get("image") or {}
    item = data.get("item") or {}
    slot = (item.get("slots") or [{}])[0]
    name = image.get("original_filename") or image.get("filename") or item.get("name")
    width = image.get("width") or slot.get("width")
    height = image.get("height") or slot.get("height")
    if not (name and width and height):
        return None

    def render() -> Image.Image:
        mask = Image.new("L", (int(width), int(height)), 0)
        draw = ImageDraw.Draw(mask)
        for ann in data.get("annotations", []):
            if "lung" not in str(ann.get("name", "")).lower():
                continue
            shape = ann.get("polygon") or ann.get("complex_polygon") or {}
            paths = shape.get("paths") or shape.get("path") or []
            if paths and isinstance(paths[0], dict):
                paths = [paths]
            for points in paths:
                xy = [(float(p["x"]), float(p["y"])) for p in points]
                if len(xy) >= 3:
                    draw.polygon(xy, fill=255)
        return mask

    return str(name), render


def _cohen_masks(raw_dir: Path, repo_dir: Path, masks_dir: Path | None) -> dict[str, object]:
    """Mask per Cohen file name (and stem): PNG masks named after the image, or Darwin JSON."""
    root = Path(masks_dir) if masks_dir else raw_dir
    index: dict[str, object] = {}
    for path in walk_files(root):
        if repo_dir == path or repo_dir in path.parents:
            continue  # the repository's own files are not V7 masks
        if path.suffix.lower() == ".json":
            found = _darwin_mask(path)
            if found:
                name, render = found
                index.setdefault(name, render)
                index.setdefault(Path(name).stem, render)
        elif is_image(path) and (masks_dir or in_mask_folder(path, root)):
            index.setdefault(path.name, path)
            index.setdefault(path.stem, path)
    return index


def _git_available() -> bool:
    return shutil.which("git") is not None


def git_first_seen(repo_dir: str | os.PathLike, relpath: str) -> str:
    """Date (YYYY-MM-DD) of the oldest commit that added ``relpath`` in a git clone; '' if none.

    Runs ``git log --diff-filter=A --format=%as -- <relpath>``. Needs the full history (a
    shallow clone dates everything to its cut-off commit).
    """
    result = subprocess.run(
        ["git", "-C", str(repo_dir), "log", "--diff-filter=A", "--format=%as", "--", relpath],
        capture_output=True, text=True, check=True)
    dates = result.stdout.split()
    return dates[-1] if dates else ""


def cohen_first_seen(repo_dir: str | os.PathLike, folder: str = "images") -> dict[str, str]:
    """``{file name: first_seen}`` for every file ever added under ``folder`` of a Cohen clone.

    One ``git log --diff-filter=A`` over the folder (the per-file equivalent is
    :func:`git_first_seen`). Raises :class:`BuildError` without git, outside a work tree or on a
    shallow clone (whose dates would all be the cut-off date).
    """
    if not _git_available():
        raise BuildError("git is not installed: first_seen needs `git log` on a clone of the repository")
    repo_dir = str(repo_dir)
    try:
        shallow = subprocess.run(["git", "-C", repo_dir, "rev-parse", "--is-shallow-repository"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError as err:
        raise BuildError(f"{repo_dir} is not a git work tree: {err.stderr.strip()}") from None
    if shallow == "true":
        raise BuildError(f"{repo_dir} is a shallow clone: run `git fetch --unshallow` there first")
    out = subprocess.run(
        ["git", "-C", repo_dir, "-c", "core.quotePath=false", "log", "--diff-filter=A",
         "--format=@%as", "--name-only", "--", f"{folder}/"],
        capture_output=True, text=True, check=True).stdout
    seen: dict[str, str] = {}
    date = ""
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("@"):
            date = line[1:]
        elif line:
            seen[PurePosixPath(line).name] = date  # newest first: the last write is the oldest add
    return seen


def fill_first_seen(manifest: str | os.PathLike, repo_dir: str | os.PathLike) -> int:
    """Fill the ``first_seen`` column of a Cohen manifest from a full git clone; returns rows filled.

    The original file name is taken from the ``origin`` column (``...:images/<file>``), else the
    image id is matched on the file stem.
    """
    manifest = Path(manifest)
    seen = cohen_first_seen(repo_dir)
    by_stem = {Path(name).stem: date for name, date in seen.items()}
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        rows = list(reader)
    if "first_seen" not in columns:
        raise BuildError(f"{manifest} has no first_seen column (not a Cohen manifest?)")
    filled = 0
    for row in rows:
        name = PurePosixPath(row.get("origin", "").rsplit(":", 1)[-1]).name
        date = seen.get(name) or by_stem.get(row["image_id"], "")
        if date:
            row["first_seen"] = date
            filled += 1
    tmp = manifest.with_name(manifest.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, manifest)
    return filled


def build_cohen(raw_dir: str | os.PathLike, out_root: str | os.PathLike, *, progress: bool = True,
                image_ids: Iterable[str] | None = None, masks_dir: str | os.PathLike | None = None) -> Path:
    """Cohen COVID-19 image data collection -> ``<out_root>/cohen/``.

    ``raw_dir`` holds the extracted repository (``metadata.csv`` + ``images/``) and, optionally,
    the V7 lung masks (PNG files named after the images, in a folder whose path says "mask", or
    V7 Darwin JSON files). Only X-ray rows are kept; ``covid`` is 1 when ``finding`` contains
    "COVID-19"; ``patient_id`` is ``cohen:<patientid>``. ``first_seen`` is filled when the
    repository is a full git clone and git is available, else left empty.
    """
    raw_dir = Path(raw_dir)
    tables = find_tables(raw_dir, "metadata.csv", {"filename", "finding"})
    if not tables:
        raise BuildError(f"no Cohen metadata.csv (with filename and finding columns) under {raw_dir}")
    table = tables[0]
    repo = table.parent
    rows = read_table(table)
    masks = _cohen_masks(raw_dir, repo, Path(masks_dir) if masks_dir else None)
    ref = re.match(r"covid-chestxray-dataset-(.+)$", repo.name)
    label = "github ieee8023/covid-chestxray-dataset" + (f"@{ref.group(1)}" if ref else "")
    first_seen: dict[str, str] = {}
    if (repo / ".git").exists():
        try:
            first_seen = cohen_first_seen(repo)
        except (BuildError, subprocess.CalledProcessError) as err:
            log.warning("cohen: first_seen left empty: %s", err)
    else:
        log.info("cohen: first_seen left empty (no git history in an archive; see fill_first_seen)")
    writer = ManifestWriter(out_root, "cohen", image_ids)
    missing = 0
    for row in build_progress(rows, "cohen", progress):
        filename = row.get("filename", "")
        if not filename or not _is_xray(row) or Path(filename).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        image_id = safe_id(Path(filename).stem)
        if not writer.wanted(image_id):
            continue
        folder = row.get("folder") or "images"
        src = repo / folder / filename
        if not src.is_file():
            src = repo / "images" / filename
        if not src.is_file():
            missing += 1
            continue
        mask = masks.get(filename) or masks.get(Path(filename).stem)
        finding = row.get("finding", "")
        writer.add(
            image_id, src, masks=[mask() if callable(mask) else mask] if mask else None,
            patient_id=f"cohen:{row.get('patientid', '')}",
            covid="1" if "covid-19" in finding.lower() else "0", finding=finding,
            view=row.get("view", ""), sex=row.get("sex", ""), age=row.get("age", ""),
            date=row.get("date", ""), location=row.get("location", ""),
            first_seen=first_seen.get(filename, ""), license=row.get("license", ""),
            origin=f"{label}:{src.relative_to(repo).as_posix()}",
        )
    if missing:
        log.warning("cohen: %d X-ray rows of metadata.csv have no image file; left out", missing)
    return writer.write()
