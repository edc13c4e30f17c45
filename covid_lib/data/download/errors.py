"""The errors of the download package: each message says what failed and what to do."""

from __future__ import annotations


class DownloadError(OSError):
    """A download failed; the message names the URL, the reason and what to do."""


class ChecksumError(DownloadError):
    """A downloaded file does not have the expected SHA-256."""


class ManualDownloadRequired(DownloadError):
    """A part of a source cannot be fetched anonymously; the message explains how to get it."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the destination folder."""


class BuildError(ValueError):
    """The extracted files do not look like the expected source (missing table or images)."""
