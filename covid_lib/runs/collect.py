"""Bring finished run records from another results folder into this one (``grid collect``).

Long grids run from a second work tree pinned at one commit (``git worktree add --detach``), so
that editing this checkout never changes the code of a grid in flight and every record names one
clean commit. Their records land in that tree's ``results/``; :func:`collect_records` copies the
complete ones (``metrics.json``, written last, present) that this folder lacks, each folder
copied whole under a temporary name and renamed, so an interrupted copy never leaves a record
that looks complete. A record already here is left alone: reported as the same when every file
is byte-identical, as a conflict otherwise (a run id fixes its numbers on one kind of machine, so
two different records of one id mean something to look at, never something to overwrite).

Example:
    >>> report = collect_records("/nonexistent/results", "/nonexistent/here", dry_run=True)
    Traceback (most recent call last):
    ...
    FileNotFoundError: no records folder at /nonexistent/results (nor /nonexistent/results/results)
"""

from __future__ import annotations

import filecmp
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from covid_lib.runs.records import Record
from covid_lib.runs.spec import results_dir


@dataclass
class CollectReport:
    """What :func:`collect_records` did: run ids copied (or that would be, on a dry run), already
    here with identical files, here with different files (left alone), and incomplete in the
    source (a run in flight, or one that failed: skipped)."""

    copied: list[str] = field(default_factory=list)
    same: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)

    def summary(self, *, dry_run: bool = False) -> str:
        verb = "would copy" if dry_run else "copied"
        return (f"{verb} {len(self.copied)}, already here {len(self.same)}, different here (left alone) "
                f"{len(self.conflicts)}, incomplete in the source (skipped) {len(self.incomplete)}")


def _records_folder(source: str | os.PathLike) -> Path:
    """``source`` itself, or its ``results/`` when ``source`` is a checkout."""
    path = Path(source)
    if (path / "results").is_dir():
        return path / "results"
    if path.is_dir():
        return path
    raise FileNotFoundError(f"no records folder at {path} (nor {path / 'results'})")


def _identical(a: Path, b: Path) -> bool:
    """Whether two record folders hold the same file names with the same bytes."""
    names = sorted(p.name for p in a.iterdir() if p.is_file())
    if names != sorted(p.name for p in b.iterdir() if p.is_file()):
        return False
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return not mismatch and not errors


def collect_records(source: str | os.PathLike, dest: str | os.PathLike | None = None, *,
                    dry_run: bool = False) -> CollectReport:
    """Copy every complete record under ``source`` (a records folder or a checkout holding
    ``results/``) that ``dest`` (default :func:`results_dir`) lacks; see the module docstring."""
    src = _records_folder(source)
    out = Path(dest) if dest is not None else results_dir()
    if src.resolve() == out.resolve():
        raise ValueError(f"{src} is this checkout's records folder: nothing to collect")
    report = CollectReport()
    for folder in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / "spec.json").is_file():  # not a run record (e.g. results/claims)
            continue
        if not Record.of(folder.name, results=src).recorded:
            report.incomplete.append(folder.name)
            continue
        here = out / folder.name
        if here.exists():
            (report.same if _identical(folder, here) else report.conflicts).append(folder.name)
            continue
        report.copied.append(folder.name)
        if not dry_run:
            out.mkdir(parents=True, exist_ok=True)
            tmp = out / f".{folder.name}.{os.getpid()}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(folder, tmp)
            os.replace(tmp, here)
    return report
