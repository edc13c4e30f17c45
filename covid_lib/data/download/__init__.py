"""Fetch the original public sources and rebuild the data layout from them.

For users on a connected machine: ``python -m covid_lib data download SOURCE|all --data-root PATH``
downloads each source from its original URL (or a listed mirror), extracts it and writes the
layout :mod:`covid_lib.data.sources` reads: ``<root>/<source>/manifest.csv``, ``images/`` and,
where lung masks exist, ``masks/``. Nothing here runs during the tests or the book: they use a
local HTTP server and the working copy of the data.

Modules, each usable on its own:

- :mod:`.transfer`: :func:`fetch` streams one URL to a file (``.part`` first, resumed with an HTTP ``Range`` when
  the server allows it, restarted cleanly otherwise), checks a SHA-256 when one is given, and
  turns HTTP errors and timeouts into :class:`DownloadError` messages that say what to do.
  :func:`extract` unpacks zip, tar(.gz/.bz2/.xz) and single-file gzip, refusing members that
  would land outside the destination (absolute paths, ``..``, links pointing out).
- :mod:`.encode`: :func:`encode_image` / :func:`encode_mask` implement the encoding of the data README: 8-bit
  grayscale (alpha composited on black; 16-bit and other high-bit-depth images scaled by their
  own min/max), Lanczos resize so that the shorter side is 256 px (never upscaled); masks binary
  0/255 at the size of their image (bilinear resize, threshold 127).
- :mod:`.cohen` and :mod:`.builders`: ``build_<source>(raw_dir, out_root)`` turn the extracted
  original files (searched recursively under ``raw_dir``) into ``<out_root>/<source>/`` with the
  manifest columns of the working copy (:data:`MANIFEST_COLUMNS`), through the shared
  :class:`~.manifest.ManifestWriter` (:mod:`.manifest`).
- :mod:`.registry`: :data:`REGISTRY` says what each source is made of; :data:`SOURCES_INFO`
  describes every source (URL, license, citation, notes) for the book.
- :mod:`.run`: :func:`download_source` ties them together per source; :func:`run_download` is the
  body of ``python -m covid_lib data download`` (its arguments live in :mod:`covid_lib.cli.data`).
- :mod:`.errors`: the exceptions, each with a message that says what to do.

Sources that cannot be fetched anonymously (Kaggle: RSNA labels, Shenzhen masks; the NIH Box
folder's web page) take a pre-downloaded file or folder with ``archive=`` / ``--archive PATH``;
the error message for a missing part says where to get it.

A rebuilt copy is not byte-identical to the working copy under ``../shared/data``: that copy was
taken from redistributions (Montgomery/Shenzhen at 512x512, Kermany and NIH subsets, Cohen as of
2020-06-27), while this module encodes the originals as they are served today. Use
``--ids-from <manifest.csv>`` to restrict a build to the image ids of a reference manifest.
"""

from __future__ import annotations

import logging

from covid_lib.data.download.builders import (
    BUILDERS, build_hannover, build_kermany, build_kermany_full, build_montgomery, build_nih, build_shenzhen,
)
from covid_lib.data.download.cohen import build_cohen, cohen_first_seen, fill_first_seen, git_first_seen
from covid_lib.data.download.encode import (
    MASK_THRESHOLD, TARGET_SHORT_SIDE, encode_image, encode_mask, target_size, to_gray8,
)
from covid_lib.data.download.errors import (
    BuildError, ChecksumError, DownloadError, ManualDownloadRequired, UnsafeArchiveError,
)
from covid_lib.data.download.transfer import extract, fetch, file_sha256, is_archive
from covid_lib.data.download.registry import (
    MANIFEST_COLUMNS, REGISTRY, SOURCES_INFO, Resource, SourceInfo, sources_table,
)
from covid_lib.data.download.run import RAW_DIRNAME, download_source, run_download

#: The package logger; every module of the package logs to a child of it.
log = logging.getLogger(__name__)

__all__ = [
    "BUILDERS", "MANIFEST_COLUMNS", "MASK_THRESHOLD", "RAW_DIRNAME", "REGISTRY", "SOURCES_INFO",
    "TARGET_SHORT_SIDE", "BuildError", "ChecksumError", "DownloadError", "ManualDownloadRequired",
    "Resource", "SourceInfo", "UnsafeArchiveError", "build_cohen", "build_hannover", "build_kermany", "build_kermany_full",
    "build_montgomery", "build_nih", "build_shenzhen", "cohen_first_seen", "download_source",
    "encode_image", "encode_mask", "extract", "fetch", "file_sha256", "fill_first_seen",
    "git_first_seen", "is_archive", "run_download", "sources_table", "target_size", "to_gray8",
]
