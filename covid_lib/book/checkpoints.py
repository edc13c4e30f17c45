"""Chapters that read model checkpoints, and the guard against publishing them from a fresh machine.

Checkpoints are not committed: a new machine starts with an empty cache. A chapter that reads the
weights of recorded runs still executes there, but lists every model as *no checkpoint* and
measures none, and once published that page would replace one that measured them. ``book run
--into book/chapters`` therefore refuses these chapters when the cache holds no checkpoint of the
profile (:func:`missing_checkpoints_problem`), unless ``--allow-missing-checkpoints``. The
checkpoint counts only when its run is recorded here (``results/<run_id>/spec.json``) at the profile's
own precision: an fp32 twin of a bf16 run (the precision control's) or a run without a record is
read by no chapter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from covid_lib.profiles import PROFILES
from covid_lib.runs import checkpoint_dir, results_dir

#: Chapter stem -> the checkpoints it reads and does not retrain (04 retrains the two it compares).
READS_CHECKPOINTS: dict[str, str] = {
    "07_small_test": "Table IV's fine-tunes, re-scored on redrawn 15-image tests",
    "08_features": "the encoders of Fig. 3, before and after fine-tuning",
    "12_saliency": "the models whose saliency maps are measured",
    "13_landscape": "the encoders of the Table II grid",
}


def _readable(run_id: str, profile: str) -> bool:
    """Whether ``run_id`` is recorded here at ``profile``'s own precision (a chapter may read it)."""
    spec = Path(results_dir()) / run_id / "spec.json"
    if not spec.is_file() or profile not in PROFILES:
        return False
    precision = json.loads(spec.read_text()).get("spec", {}).get("precision")
    return precision is None or precision == PROFILES[profile].precision


def has_cached_checkpoints(profile: str, storage: str | os.PathLike | None = None) -> bool:
    """Whether a checkpoint of one of ``profile``'s recorded runs, at the profile's own precision, is
    cached here (``<storage>/<run_id>/model.pt``)."""
    root = checkpoint_dir(storage)
    return root.is_dir() and any(p.is_file() and _readable(p.parent.name, profile)
                                 for p in root.glob(f"*-{profile}-s*/model.pt"))


def missing_checkpoints_problem(stems: list[str], profile: str,
                                storage: str | os.PathLike | None = None) -> str | None:
    """Why the chapters ``stems`` must not be published from this machine (None: they may): some
    read checkpoints, and none of ``profile`` is cached here."""
    readers = [s for s in stems if s in READS_CHECKPOINTS]
    if not readers or has_cached_checkpoints(profile, storage):
        return None
    what = "; ".join(f"{s}: {READS_CHECKPOINTS[s]}" for s in readers)
    return (f"{', '.join(readers)} read model checkpoints ({what}), and this machine's checkpoint folder "
            f"({checkpoint_dir(storage)}) holds none of profile {profile!r}: published, their pages would list every "
            "model as 'no checkpoint' and measure none. Restore the checkpoints first, on a CPU of the kind that "
            "recorded them (covid_lib.runs.restore_checkpoints; `book judge --c4 full` for chapter 08's encoders), "
            "run the chapters into the scratch folder (without --into), or pass --allow-missing-checkpoints.")
