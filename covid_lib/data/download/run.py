"""One source end to end (:func:`download_source`) and the ``data download`` command body (:func:`run_download`)."""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Iterable, Sequence

from covid_lib.data.download.builders import BUILDERS
from covid_lib.data.download.errors import (
    BuildError, DownloadError, ManualDownloadRequired, UnsafeArchiveError,
)
from covid_lib.data.download.transfer import extract, fetch, is_archive
from covid_lib.data.download.registry import REGISTRY, Resource, SourceInfo

log = logging.getLogger(__name__)

#: Folder under the data root that holds downloads and extracted files while a source is built.
RAW_DIRNAME = ".raw"


def _as_paths(archive) -> list[Path]:
    if archive is None:
        return []
    if isinstance(archive, (str, os.PathLike)):
        return [Path(archive).expanduser()]
    return [Path(a).expanduser() for a in archive]


def _recognised(info: SourceInfo, path: Path) -> str | None:
    """Key of the resource ``path`` (a file or folder given by the user) is, judged by its name."""
    return next((r.key for r in info.resources if r.matches(path.name)), None)


_DOWNLOAD_SUFFIXES = {".zip", ".gz", ".tgz", ".tar", ".xz", ".bz2", ".csv", ".json"}


def _looks_downloaded(path: Path) -> bool:
    """A file in a user's folder that may be one of the downloads (not a ReadMe or an image)."""
    return path.is_file() and path.suffix.lower() in _DOWNLOAD_SUFFIXES


def _assign_archives(info: SourceInfo, archives: Sequence[Path], *, strict: bool = False) -> dict[str, list[Path]]:
    """Which resource each user-supplied file or folder stands for.

    A folder holding files named like resources gives those files; otherwise a file or folder is
    matched by name (:attr:`Resource.accept`). Anything unrecognised is taken, in order, as the
    first resource not yet given (the main archive first) unless ``strict``.
    """
    assigned: dict[str, list[Path]] = {}
    leftovers: list[Path] = []
    for path in archives:
        if not path.exists():
            raise FileNotFoundError(f"--archive {path}: no such file or folder")
        if path.is_dir():
            inside = [(r.key, child) for child in sorted(path.iterdir()) if _looks_downloaded(child)
                      for r in info.resources if r.matches(child.name)]
            if inside:
                for key, child in inside:
                    assigned.setdefault(key, []).append(child)
                continue
        key = _recognised(info, path)
        if key:
            assigned.setdefault(key, []).append(path)
        elif not strict:
            leftovers.append(path)
    for path in leftovers:
        satisfied = {r.group for r in info.resources if r.group and r.key in assigned}
        target = next((r for r in info.resources if r.key not in assigned and not (r.group and r.group in satisfied)),
                      None)
        if target is None:
            names = ", ".join(r.filename for r in info.resources)
            raise ValueError(f"{info.name}: cannot tell what {path} is; expected one of: {names}")
        log.info("%s: taking %s as %s", info.name, path, target.filename)
        assigned[target.key] = [path]
    return assigned


def _materialise(resource: Resource, path: Path, dest: Path) -> None:
    """Put one obtained file or folder under ``dest`` (extract, copy or link)."""
    dest.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        link = dest / path.name
        try:
            os.symlink(path.resolve(), link, target_is_directory=True)
        except OSError:
            shutil.copytree(path, link)
    elif resource.kind == "archive" and is_archive(path):
        extract(path, dest, include=resource.include or None)
    else:
        shutil.copy2(path, dest / path.name)


def _obtain(info: SourceInfo, resource: Resource, downloads: Path, progress: bool) -> Path | None:
    """Download ``resource`` from its URLs in turn; None (with a message) when optional and impossible."""
    failures = []
    for url in resource.urls:
        log.info("%s: downloading %s from %s", info.name, resource.filename, url)
        try:
            return fetch(url, downloads / resource.filename, sha256=resource.sha256, progress=progress,
                         reject_html=resource.kind == "archive")
        except DownloadError as err:
            failures.append(f"  {url}: {err}")
            log.warning("%s: %s", info.name, err)
    how = f"Get {resource.manual}." if resource.manual else ""
    if resource.optional:
        log.warning("%s: %s not available (optional)%s %s Pass it with --archive PATH to include it.",
                    info.name, resource.filename, ":\n" + "\n".join(failures) if failures else ".", how)
        return None
    if not failures:
        raise ManualDownloadRequired(
            f"{info.name}: {resource.filename} cannot be downloaded automatically. {how} "
            f"Then run again with --archive PATH (archive=PATH).")
    raise DownloadError(f"{info.name}: could not download {resource.filename}:\n" + "\n".join(failures)
                        + f"\n{how} Then run again with --archive PATH (archive=PATH).")


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def download_source(
    name: str,
    root: str | os.PathLike,
    *,
    archive: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    keep_raw: bool = False,
    force: bool = False,
    progress: bool = True,
    image_ids: Iterable[str] | None = None,
    strict_archives: bool = False,
) -> Path:
    """Download (or take from ``archive``), extract and build one source under ``root``.

    Args:
        name: a key of :data:`REGISTRY` (``cohen``, ``hannover``, ``kermany``, ``nih``,
            ``montgomery``, ``shenzhen``).
        root: data root; the source is written to ``<root>/<name>/`` and downloads go to
            ``<root>/.raw/<name>/`` meanwhile.
        archive: pre-downloaded file(s) or folder(s) to use instead of downloading: needed for the
            parts that cannot be fetched anonymously (Kaggle), and useful offline. Matched to the
            source's parts by name (see :data:`REGISTRY`); a git clone of the Cohen repository
            gives ``first_seen``. They are read, never moved or deleted.
        keep_raw: keep ``<root>/.raw/<name>/`` (downloads and extracted files) after the build.
        force: rebuild even when ``<root>/<name>/manifest.csv`` exists (the old folder is replaced
            only once the new one is complete).
        progress: progress bars for downloads and encoding.
        image_ids: build only these image ids (e.g. those of a reference manifest).
        strict_archives: ignore ``archive`` entries this source does not recognise by name
            (used by ``all``) instead of guessing.

    Returns:
        ``<root>/<name>``.

    Raises:
        ManualDownloadRequired: a required part has no anonymous URL and was not given.
        DownloadError: every URL of a required part failed (the message lists them and says how
            to get the file by hand).
        BuildError: the files do not contain what the source needs.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(REGISTRY)}")
    info = REGISTRY[name]
    root = Path(root).expanduser().resolve()
    out = root / name
    if (out / "manifest.csv").is_file() and not force:
        log.info("%s: %s already exists; pass force=True (--force) to rebuild it", name, out / "manifest.csv")
        return out
    if out.exists() and not force and any(out.iterdir()):
        raise FileExistsError(f"{out} exists without manifest.csv; pass force=True (--force) to replace it")
    assigned = _assign_archives(info, _as_paths(archive), strict=strict_archives)
    raw = root / RAW_DIRNAME / name
    downloads, extracted, staging = raw / "downloads", raw / "extracted", raw / "build"

    obtained: dict[str, list[Path]] = {}
    groups_given = {r.group for r in info.resources if r.group and r.key in assigned}
    for resource in info.resources:
        if resource.key in assigned:
            obtained[resource.key] = assigned[resource.key]
        elif resource.group and resource.group in groups_given:
            continue
        elif resource.requires and resource.requires not in obtained:
            continue
        else:
            path = _obtain(info, resource, downloads, progress)
            if path is not None:
                obtained[resource.key] = [path]

    for path in (extracted, staging):
        _remove_tree(path)
    for key, paths in obtained.items():
        for path in paths:
            log.info("%s: unpacking %s", name, path)
            _materialise(info.resource(key), path, extracted / key)

    built = BUILDERS[name](extracted, staging, progress=progress, image_ids=image_ids)
    if out.exists():
        _remove_tree(out)
    shutil.move(str(built), str(out))
    if keep_raw:
        _remove_tree(staging)
    else:
        for path in (downloads, extracted, staging):
            _remove_tree(path)
        for folder in (raw, raw.parent):
            try:
                folder.rmdir()
            except OSError:
                pass
    return out


def _read_ids(manifest: Path) -> set[str]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "image_id" not in (reader.fieldnames or []):
            raise ValueError(f"{manifest}: no image_id column")
        return {row["image_id"] for row in reader}


def run_download(args: argparse.Namespace) -> int:
    """Run the download command; returns the exit status (1 when any source failed)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger(__package__).setLevel(logging.INFO)  # the package logger: every module logs below it
    names = list(REGISTRY) if args.source == "all" else [args.source]
    archives = [Path(a).expanduser() for a in (getattr(args, "archive", None) or [])]
    ids = _read_ids(args.ids_from) if getattr(args, "ids_from", None) else None
    missing = [a for a in archives if not a.exists()]
    if missing:
        print(f"error: --archive: no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    if len(names) > 1:
        unknown = [a for a in archives if not any(_assign_archives(REGISTRY[n], [a], strict=True)
                                                  for n in names)]
        if unknown:
            print(f"error: with 'all', each --archive must be named like a source's file; "
                  f"unrecognised: {', '.join(map(str, unknown))}", file=sys.stderr)
            return 2
    failed = []
    for name in names:
        try:
            out = download_source(name, args.root, archive=archives, keep_raw=args.keep_raw, force=args.force,
                                  progress=getattr(args, "progress", True), image_ids=ids,
                                  strict_archives=len(names) > 1)
        except (DownloadError, BuildError, UnsafeArchiveError, ValueError, FileNotFoundError,
                FileExistsError) as err:
            failed.append(name)
            print(f"error: {name}: {err}", file=sys.stderr)
            continue
        print(f"{name}: {out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
