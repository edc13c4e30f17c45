"""Does a checkpoint reproduce its record? The comparison, the note kept beside a checkpoint and
the error raised when a retraining is not the recorded model (issues 16, 18).

A run id fixes a run, but bf16 kernels differ between CPUs: a recorded run retrained on another
kind of machine (:func:`covid_lib.runs.restore_checkpoint`) can give other weights (a 563-image
pre-training retrained elsewhere differed from its record by up to 0.38 in class probability on
its recorded test images; on the same machine, by 3e-8). So a restored checkpoint's test scores
are compared with the record's (:func:`compare_scores`), and the outcome is kept in a note beside
the weights (``checkpoint.json``, :data:`CHECKPOINT_NOTE`): its origin (:data:`ORIGINS`), the
checkpoint's sha256, whether it matches its record and by how much, and the machine kinds
(:func:`covid_lib.provenance.machine_kind`) of the retraining and of the record. A checkpoint
whose note says it differs is never served as the recorded model: reading it raises
:class:`CheckpointMismatch` unless the caller passes ``allow_mismatch=True`` (and states the
departure).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pandas as pd

from covid_lib.provenance import machine_label

#: The note beside a cached checkpoint (``<storage>/<run_id>/checkpoint.json``).
CHECKPOINT_NOTE = "checkpoint.json"
#: Largest absolute difference in a test score (class probability) for a checkpoint to count as
#: its record's model: a retraining on the record's kind of machine matched to 3e-8, one on
#: another CPU differed by up to 0.38.
SCORE_TOLERANCE = 1e-4
#: Where a cached checkpoint came from (the note's ``origin``).
TRAINED = "trained with its record"
RETRAINED = "retrained from its record"
CHECKED = "cached, checked against its record"
UNCHECKED = "written without a check against its record"
ORIGINS = (TRAINED, RETRAINED, CHECKED, UNCHECKED)
#: How tables and chapters list a model whose cached checkpoint differs from its record.
DIFFERS = "retrained here, differs from record"
#: Columns that identify an image of a score table, and columns that hold its scores.
_KEYS = ("test_set", "source", "image_id")


def checkpoint_digest(data: bytes) -> str:
    """The sha256 of a checkpoint's bytes (the file ``model.pt`` holds)."""
    return hashlib.sha256(data).hexdigest()


def _score_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c == "score" or c.startswith("prob_")]


def compare_scores(new: pd.DataFrame | None, recorded: pd.DataFrame | None, *,
                   tolerance: float = SCORE_TOLERANCE) -> dict[str, Any]:
    """A model's test scores against its record's, image by image (``score`` or ``prob_*`` columns,
    joined on the test set, source and image id both tables have).

    Returns:
        ``{"images", "record_images", "max_abs_diff", "tolerance", "matches"}``: the images both
        score, the record's images, the largest absolute difference (None without a shared image)
        and whether it is within ``tolerance`` (None when nothing could be compared).
    """
    out: dict[str, Any] = {"images": 0, "record_images": 0 if recorded is None else len(recorded),
                           "max_abs_diff": None, "tolerance": float(tolerance), "matches": None}
    if new is None or recorded is None or not len(new) or not len(recorded):
        return out
    keys = [k for k in _KEYS if k in new.columns and k in recorded.columns]
    values = [c for c in _score_columns(recorded) if c in new.columns]
    if "image_id" not in keys or not values:
        return out
    left = new[keys + values].astype({k: str for k in keys})
    right = recorded[keys + values].astype({k: str for k in keys})
    both = left.merge(right, on=keys, suffixes=("", "_record"))
    if not len(both):
        return out
    diff = max(float((both[c].astype(float) - both[f"{c}_record"].astype(float)).abs().max()) for c in values)
    diff = float("inf") if math.isnan(diff) else diff
    return {**out, "images": len(both), "max_abs_diff": diff, "matches": bool(diff <= tolerance)}


def differs(note: dict) -> bool:
    """Whether a checkpoint's note says it is not its record's model."""
    return note.get("matches_record") is False


def mismatch_message(note: dict) -> str:
    """One line: which run, by how much its checkpoint differs from the record, on which machines."""
    diff = note.get("max_abs_diff")
    return (f"run {note.get('run_id')}: its checkpoint, {note.get('origin', 'cached here')}, differs from its record "
            f"(max |Δ score| {diff:.2g} on {note.get('images')} recorded test images, tolerance "
            f"{note.get('tolerance', SCORE_TOLERANCE):g}; CPU recorded: {machine_label(note.get('recorded_machine'))}, "
            f"here: {machine_label(note.get('machine'))})")


class CheckpointMismatch(ValueError):
    """A cached checkpoint that does not reproduce its record, asked for as the recorded model (a
    ``ValueError``: the weights are the wrong value for that model).

    Attributes:
        run_id: the run.
        note: the checkpoint's note (``checkpoint.json``: ``max_abs_diff``, machines, ...).
    """

    def __init__(self, note: dict, folder: str | Path) -> None:
        self.run_id, self.note = str(note.get("run_id")), dict(note)
        super().__init__(f"{mismatch_message(note)}: it is not the recorded model; retrain it on a machine of the "
                         "recorded kind to get that model, or pass allow_mismatch=True to use this retraining and "
                         f"state the departure (its weights stay in {folder})")
