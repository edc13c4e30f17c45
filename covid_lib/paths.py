"""Where things live: the data root, the repository, the cache.

The data root is resolved in order: an explicit argument (``data_root=`` in Python,
``--data-root`` on the command line), the ``COVID_LIB_DATA`` environment variable, then
``../shared/data`` beside the repository when it exists.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV_VAR = "COVID_LIB_DATA"
CACHE_ENV_VAR = "COVID_LIB_CACHE"


class DataRootError(FileNotFoundError):
    """The data root could not be found; the message says where we looked and what to do."""


def candidate_data_roots(root: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The places searched for the data root, in order, each with how it was chosen."""
    candidates: list[tuple[str, Path]] = []
    if root is not None:
        candidates.append(("argument", Path(root)))
    elif os.environ.get(DATA_ENV_VAR):
        candidates.append((f"${DATA_ENV_VAR}", Path(os.environ[DATA_ENV_VAR])))
    else:
        candidates.append(("default", REPO_ROOT.parent / "shared" / "data"))
    return candidates


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """Return the data root as an absolute path, or raise :class:`DataRootError` explaining why not."""
    how, path = candidate_data_roots(root)[0]
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise DataRootError(
            f"No data root at {path} (chosen by {how}). Pass --data-root PATH on the command line or "
            f"data_root=... in Python, set {DATA_ENV_VAR}=/path/to/data, or place the data at "
            f"{REPO_ROOT.parent / 'shared' / 'data'}. "
            "On a connected machine, `python -m covid_lib data download all --data-root PATH` "
            "fetches the public sources into that layout."
        )
    return path


def cache_dir(sub: str | None = None) -> Path:
    """The git-ignored cache (``$COVID_LIB_CACHE`` or ``<repo>/.cache``), created on demand."""
    base = Path(os.environ.get(CACHE_ENV_VAR, REPO_ROOT / ".cache"))
    path = base / sub if sub else base
    path.mkdir(parents=True, exist_ok=True)
    return path
