"""Provenance, one home: the git state, the software environment and the data version.

Every record the project writes (a run under ``results/``, an executed chapter, a weights file)
says which code, which environment and which data produced it. The data version itself is
computed by :func:`covid_lib.data.data_version` (the one hash of the data root); this module only
asks for it, returning None where there is no data.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any, Sequence

from covid_lib import __version__
from covid_lib.paths import REPO_ROOT, resolve_data_root
from covid_lib.profiles import resolve_device

#: What the book's runner writes (executed chapters and the page of their runtimes): a chapter
#: executed earlier in the same run does not make the tree "dirty" for the next one's record.
BOOK_OUTPUTS = ("book/chapters", "book/reproduce.md")
#: Libraries whose versions every record carries.
LIBRARIES = ("torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "papermill", "jupytext")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True,
                             timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state(source: str | os.PathLike | None = None, *, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The commit, whether the work tree is dirty, and whether ``source`` differs from that commit.

    Args:
        source: a file whose own committed state is also reported (``source_committed``).
        exclude: repository paths whose changes do not count as "dirty" (e.g. a runner's outputs).
    """
    state: dict[str, Any] = {"commit": _git("rev-parse", "HEAD")}
    porcelain = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                     *(f":(exclude){path}" for path in exclude))
    state["dirty"] = None if porcelain is None else bool(porcelain)
    if source is not None:
        rel = os.path.relpath(Path(source).resolve(), REPO_ROOT)
        mine = _git("status", "--porcelain", "--", rel)
        state["source_committed"] = None if mine is None else not mine
    return state


def data_version(data_root: str | os.PathLike | None = None) -> str | None:
    """:func:`covid_lib.data.data_version` of the data root, or None when there is no data root."""
    try:
        root = resolve_data_root(data_root)
    except FileNotFoundError:
        return None
    # lazy: the data layer loads pandas; `covid_lib.book` (book list/status) stays light
    from covid_lib.data import data_version as _data_version

    return str(_data_version(root))


def _version(dist: str) -> str | None:
    try:
        return _metadata.version(dist)
    except _metadata.PackageNotFoundError:
        return None


def environment(device: str = "auto") -> dict[str, Any]:
    """Python, library versions, CPU count and the device (with the GPU's name on CUDA)."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpu_count": os.cpu_count(),
        "covid_lib": __version__,
        **{name: _version(name) for name in LIBRARIES},
    }
    try:
        env["device"] = resolve_device(device)
        if env["device"].startswith("cuda"):
            import torch

            env["gpu"] = torch.cuda.get_device_name(0)
    except (ImportError, ValueError) as err:
        env["device"] = f"{device} ({err})"
    return env
