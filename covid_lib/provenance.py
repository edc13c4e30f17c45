"""Provenance, one home: the git state, the software environment, the machine kind and the data version.

Every record the project writes (a run under ``results/``, an executed chapter, a weights file)
says which code, which environment and which data produced it. The data version itself is
computed by :func:`covid_lib.data.data_version` (the one hash of the data root); this module only
asks for it, returning None where there is no data.
"""

from __future__ import annotations

import datetime as _dt
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
#: CPU flags (``/proc/cpuinfo``) that say whether bf16 runs natively: bf16 training on CPUs that
#: differ in them gives different weights from the same run id.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: Where Linux lists the CPU's model name and flags.
CPUINFO = Path("/proc/cpuinfo")
#: The first day run records carry their machine kind (``timings.json``, ``runtime.machine``).
MACHINE_KIND_SINCE = "2026-12-03"


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
    changed = changed_paths(exclude=exclude)
    state["dirty"] = None if changed is None else bool(changed)
    if source is not None:
        rel = os.path.relpath(Path(source).resolve(), REPO_ROOT)
        mine = _git("status", "--porcelain", "--", rel)
        state["source_committed"] = None if mine is None else not mine
    return state


def commit_times(*log_args: str) -> list[str]:
    """UTC ISO times (``YYYY-MM-DDTHH:MM:SS+00:00``) of the commits ``git log <log_args>`` lists,
    newest first; [] outside git. UTC whatever the committer's zone, so that they compare as
    strings with the records' ``created`` times (UTC ISO)."""
    out = _git("log", "--format=%ct", *log_args)
    stamps = [int(t) for t in (out or "").split() if t.isdigit()]
    return [_dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds") for t in stamps]


def changed_paths(*, exclude: Sequence[str] = ()) -> set[str] | None:
    """Tracked repository paths that differ from the commit (``exclude`` aside); None without git."""
    porcelain = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                     *(f":(exclude){path}" for path in exclude))
    if porcelain is None:
        return None
    return {line.split(None, 1)[1].split(" -> ")[-1] for line in porcelain.splitlines() if line.strip()}


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


def _cpuinfo() -> tuple[dict[str, str], set[str] | None]:
    """The first CPU's fields and flags from :data:`CPUINFO`; ``({}, None)`` where it cannot be read."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return {}, None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags") or fields.get("Features")
    return fields, set(flags.split()) if flags is not None else None


def machine_kind(device: str = "cpu") -> dict[str, Any]:
    """What a run's numbers depend on beyond its run id: the CPU model (name, and vendor, family,
    model and stepping where ``/proc/cpuinfo`` gives them: virtual machines often mask the name),
    whether it computes bf16 natively (:data:`BF16_FLAGS`; from ``/proc/cpuinfo``, else torch's own
    checks, else None), the torch version and, on CUDA, the GPU's name."""
    import torch

    fields, flags = _cpuinfo()
    fallback = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    name = fields.get("model name") or fields.get("Hardware") or platform.processor() or platform.machine()
    kind: dict[str, Any] = {"cpu": name or "unknown"}
    if "cpu family" in fields:
        names = {"vendor_id": "", "cpu family": "family ", "model": "model ", "stepping": "stepping "}
        kind["cpu_id"] = " ".join(f"{label}{fields[k]}" for k, label in names.items() if k in fields)
    for flag in BF16_FLAGS:
        check = getattr(torch.cpu, fallback[flag], None)
        kind[flag] = (flag in flags) if flags is not None else bool(check()) if check is not None else None
    kind["torch"] = torch.__version__
    if str(device).startswith("cuda") and torch.cuda.is_available():
        kind["cuda_device"] = torch.cuda.get_device_name(torch.device(device).index or 0)
    return kind


def machine_label(kind: dict[str, Any] | None) -> str:
    """One line for a :func:`machine_kind` (``"AMD EPYC (avx512_bf16; torch 2.5.1)"``); records
    written before kinds were recorded: ``"unknown (recorded before <date>)"``."""
    if not kind:
        return f"unknown (recorded before {MACHINE_KIND_SINCE})"
    flags = [f for f in BF16_FLAGS if kind.get(f)]
    bf16 = ", ".join(flags) if flags else "no native bf16" if all(kind.get(f) is False for f in BF16_FLAGS) \
        else "bf16 flags unknown"
    gpu = f", GPU {kind['cuda_device']}" if kind.get("cuda_device") else ""
    cpu_id = f", {kind['cpu_id']}" if kind.get("cpu_id") else ""
    return f"{kind.get('cpu', 'unknown')}{cpu_id} ({bf16}; torch {kind.get('torch', '?')}{gpu})"
