"""Run the audit notebook on a manifest, like a chapter: papermill, provenance, then HTML.

:func:`audit_dataset` executes ``covid_lib/audit/notebook/audit.py`` (shipped in the package)
with the book's runner (:func:`covid_lib.book.runner.run_chapter`), so the report carries the
same provenance record as a chapter (parameters, git state, environment, wall time; the data
version is the SHA-256 of the manifest and its images' sizes). Everything goes under ``out``:
``audit.ipynb``, ``audit.html``, ``findings.csv``, ``counts.csv``, ``duplicates.csv``; with a
model (:mod:`covid_lib.audit.model`) also ``model_groups.csv`` and ``model_scores.csv``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from covid_lib.audit.html import write_html
from covid_lib.audit.manifest import load_manifest
from covid_lib.audit.measures import get_settings
from covid_lib.book.chapters import Chapter
from covid_lib.book.runner import run_chapter

NOTEBOOK = Path(__file__).resolve().parent / "notebook" / "audit.py"


@dataclass(frozen=True)
class AuditNotebook(Chapter):
    """The audit notebook as a runner chapter, written as ``audit.ipynb``."""

    @property
    def stem(self) -> str:
        return self.name


def manifest_version(manifest: str | os.PathLike, paths: list[str]) -> str:
    """SHA-256 (first 16 hex digits) of the manifest's bytes and each image's path and size."""
    h = hashlib.sha256(Path(manifest).read_bytes())
    for p in paths:
        h.update(f"{p}\0{os.path.getsize(p)}\n".encode())
    return h.hexdigest()[:16]


def audit_dataset(manifest: str | os.PathLike, out: str | os.PathLike, *, profile: str = "cpu",
                  device: str = "auto", model: str | None = None, seed: int = 0,
                  progress: bool = True) -> dict[str, Path]:
    """Check the manifest (one-line :class:`~covid_lib.audit.manifest.ManifestError` before any
    kernel starts), execute the audit notebook into ``out`` and write its HTML page.

    Returns:
        ``{"notebook": ..., "html": ..., "findings": ...}`` paths under ``out``.
    """
    get_settings(profile)
    manifest = Path(manifest).resolve()
    checked = load_manifest(manifest, progress=progress)
    if model:  # a missing or unusable model is one line too, before any kernel starts
        from covid_lib.audit.model import positive_labels, resolve_model

        resolve_model(model, device="cpu")
        positive_labels(checked)
        model = str(Path(model).resolve()) if Path(model).exists() else str(model)  # the kernel's cwd differs
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    chapter = AuditNotebook("", "audit", NOTEBOOK)
    params = {"manifest": str(manifest), "out": str(out), "device": device, "seed": seed, "model": model or ""}
    nb = run_chapter(chapter, profile=profile, parameters=params, output_dir=out, progress_bar=progress,
                     version=manifest_version(manifest, list(checked.rows["image_path"])), failed_dir=out)
    return {"notebook": nb, "html": write_html(nb, out / "audit.html"), "findings": out / "findings.csv"}
