"""HTTP downloads (resumable, checksummed, retried) and safe archive extraction."""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import http.client
import logging
import os
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Sequence

from tqdm import tqdm

from covid_lib.data.download.errors import ChecksumError, DownloadError, UnsafeArchiveError

log = logging.getLogger(__name__)

USER_AGENT = "covid_lib-download/0.1 (+https://github.com; python urllib)"
_CHUNK = 1 << 20
_RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}


def _urlopen(request: urllib.request.Request, timeout: float):
    """The one place that opens a URL (tests replace it to forbid anything but localhost)."""
    return urllib.request.urlopen(request, timeout=timeout)


class _Transient(Exception):
    """A failure worth retrying (timeout, dropped connection, 5xx)."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _http_hint(code: int) -> str:
    if code in (401, 403):
        return " (the server wants a login: download the file in a browser and pass it with --archive)"
    if code == 404:
        return " (the file has moved or is gone: see the source's notes for mirrors, or pass a copy with --archive)"
    return ""


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) of a ``Content-Range`` header; None where absent or ``*``."""
    m = re.match(r"bytes\s+(\d+|\*)(?:-\d+)?/(\d+|\*)", value or "")
    if not m:
        return None, None
    first = int(m.group(1)) if m.group(1) != "*" else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return first, total


def _fetch_once(url: str, part: Path, *, timeout: float, progress: bool, reject_html: bool,
                desc: str, allow_resume: bool = True) -> None:
    offset = part.stat().st_size if (allow_resume and part.exists()) else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = _urlopen(request, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            _, total = _content_range(err.headers.get("Content-Range") if err.headers else None)
            if total == offset:
                return  # the .part already holds the whole file
            part.unlink()
            return _fetch_once(url, part, timeout=timeout, progress=progress, reject_html=reject_html,
                               desc=desc, allow_resume=False)
        if err.code in _RETRYABLE_HTTP:
            raise _Transient(f"HTTP {err.code} {err.reason} for {url}") from None
        raise DownloadError(f"HTTP {err.code} {err.reason} for {url}{_http_hint(err.code)}") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise _Transient(f"timed out after {timeout:g} s connecting to {url}") from None
        raise _Transient(f"cannot reach {url}: {err.reason}") from None
    except TimeoutError:
        raise _Transient(f"timed out after {timeout:g} s waiting for {url}") from None
    except (ConnectionError, http.client.HTTPException, OSError) as err:
        raise _Transient(f"connection to {url} failed: {type(err).__name__}: {err}") from None

    with response:
        content_type = response.headers.get("Content-Type", "")
        if reject_html and content_type.lower().startswith("text/html"):
            raise DownloadError(
                f"{url} answered with a web page instead of a file: the link may need a login or a "
                "click-through; download the file in a browser and pass it with --archive")
        start = 0
        if offset and response.status == 206:
            first, _ = _content_range(response.headers.get("Content-Range"))
            if first == offset:
                start = offset
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        mode = "ab" if start else "wb"
        try:
            with open(part, mode) as fh, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                              unit_divisor=1024, desc=desc, disable=not progress,
                                              leave=False) as bar:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    bar.update(len(chunk))
        except TimeoutError:
            raise _Transient(f"timed out after {timeout:g} s reading {url}") from None
        except (ConnectionError, http.client.HTTPException) as err:
            raise _Transient(f"connection to {url} dropped: {type(err).__name__}: {err}") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Transient(f"connection to {url} closed after {size} of {total} bytes")


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
    reject_html: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    The bytes go to ``dest + ".part"`` first and are renamed only when complete (and, if
    ``sha256`` is given, verified). An existing ``.part`` from an earlier attempt at the same URL
    is resumed with an HTTP ``Range`` request; a server that ignores the range restarts the
    file from zero. An existing ``dest`` is returned as is (after a checksum check when given).

    Args:
        url: http(s) URL.
        dest: destination file; its folder is created.
        sha256: expected hex SHA-256; a mismatch deletes the download and raises :class:`ChecksumError`.
        progress: show a tqdm progress bar.
        timeout: seconds to wait for the connection and for each read.
        retries: extra attempts after a timeout, a dropped connection or an HTTP 5xx/429.
        reject_html: treat a ``text/html`` answer as a failure (a login page instead of a file).

    Raises:
        DownloadError: HTTP error (with status and URL), timeout or connection failure after the retries.
        ChecksumError: the completed file does not have ``sha256``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = sha256.lower() if sha256 else None
    if dest.exists():
        if expected is None or file_sha256(dest) == expected:
            return dest
        log.info("%s exists with another checksum; downloading it again", dest)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    marker = dest.with_name(dest.name + ".part.url")
    if part.exists() and (not marker.exists() or marker.read_text().strip() != url):
        part.unlink()  # a .part from another URL cannot be resumed safely
    marker.write_text(url)
    attempt = 0
    while True:
        try:
            _fetch_once(url, part, timeout=timeout, progress=progress, reject_html=reject_html,
                        desc=dest.name)
            break
        except DownloadError:
            if not part.exists():
                marker.unlink(missing_ok=True)
            raise
        except _Transient as err:
            attempt += 1
            if attempt > retries:
                kept = f"; {part.stat().st_size} bytes kept in {part}, run again to resume" if part.exists() else ""
                raise DownloadError(f"{err} (after {attempt} attempt{'s' * (attempt > 1)}){kept}") from None
            wait = min(2 ** attempt, 30)
            log.warning("%s; retrying in %d s", err, wait)
            time.sleep(wait)
    if expected is not None:
        actual = file_sha256(part)
        if actual != expected:
            part.unlink()
            marker.unlink(missing_ok=True)
            raise ChecksumError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}; the download "
                "was deleted (a changed upstream file or a broken transfer; try again or check the source)")
    os.replace(part, dest)
    marker.unlink(missing_ok=True)
    return dest


# -------------------------------------------------------------------------------------- extract


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def is_archive(path: str | os.PathLike) -> bool:
    """Whether :func:`extract` can unpack ``path`` (zip, tar, gzip), judged by content."""
    path = Path(path)
    return path.is_file() and (zipfile.is_zipfile(path) or tarfile.is_tarfile(path) or _is_gzip(path))


def _skip_member(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return any(p == "__MACOSX" for p in parts) or (bool(parts) and parts[-1].startswith("._"))


def _safe_target(name: str, dest: Path, archive: Path) -> Path:
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", clean) or ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: it would be written outside {dest}")
    target = (dest / path).resolve()
    if not target.is_relative_to(dest):
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: it resolves outside {dest}")
    return target


def _wanted(name: str, include: Sequence[str] | None) -> bool:
    if not include:
        return True
    base = PurePosixPath(name.replace("\\", "/")).name
    return any(fnmatch.fnmatch(base.lower(), p.lower()) or fnmatch.fnmatch(name.lower(), p.lower())
               for p in include)


def extract(archive: str | os.PathLike, dest: str | os.PathLike, *,
            include: Sequence[str] | None = None) -> Path:
    """Unpack a zip, tar (plain, gz, bz2, xz) or single-file gzip ``archive`` into ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` components and
    links that point outside ``dest`` raise :class:`UnsafeArchiveError`. macOS ``__MACOSX/`` and
    ``._*`` entries are skipped. ``include`` (glob patterns on the member name or its base name)
    extracts only matching files. Returns ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not _skip_member(m.filename)]
            targets = [(m, _safe_target(m.filename, dest, archive)) for m in members]
            for member, target in targets:
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not _wanted(member.filename, include):
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
        return dest
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            chosen = []
            for member in tf.getmembers():
                if _skip_member(member.name):
                    continue
                target = _safe_target(member.name, dest, archive)
                if member.issym() or member.islnk():
                    link = PurePosixPath(member.linkname.replace("\\", "/"))
                    base = target.parent if member.issym() else dest
                    if link.is_absolute() or not (base / link).resolve().is_relative_to(dest):
                        raise UnsafeArchiveError(
                            f"{archive}: refusing link {member.name!r} -> {member.linkname!r}: "
                            f"it points outside {dest}")
                elif not (member.isfile() or member.isdir()):
                    raise UnsafeArchiveError(f"{archive}: refusing special member {member.name!r} (device or fifo)")
                if member.isdir() or _wanted(member.name, include):
                    chosen.append(member)
            tf.extractall(dest, members=chosen, filter="data")
        return dest
    if _is_gzip(archive):
        name = archive.name[:-3] if archive.name.lower().endswith(".gz") else archive.name + ".out"
        with gzip.open(archive, "rb") as src, open(dest / name, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
        return dest
    raise ValueError(f"{archive}: not a zip, tar or gzip archive")
