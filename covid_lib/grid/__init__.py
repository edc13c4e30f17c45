"""Named grids of runs (the paper's tables and this project's checks) and their executors.

A grid is a list of :class:`~covid_lib.runs.RunSpec`, pre-training runs before the fine-tunes that
use them. Grids may share runs (``table4`` is part of ``table2``); a finished run is never
retrained, so a stopped grid resumes where it stopped.

- ``table2``: resnet18 x pre-training (none, kermany = ChestXRay, nih = RSNA) x the five
  compositions (Tartaglione et al. 2020, Table II).
- ``table3``: resnet50 x pre-training (kermany, nih) x compositions (Table III).
- ``conv8``: conv8 x pre-training (none, kermany) x compositions.
- ``table4``: COVID-ChestXRay x the three pre-trainings, resnet18 (Table IV; the same runs as
  table2's COVID-ChestXRay row).
- ``seeds``: the headline cells (CORDA and CORDA&ChestXRay of Table II, and Table IV) for every seed
  of the profile's ``seeds``.
- ``ablation``: pre-processing pipeline ``none`` on CORDA and CORDA&ChestXRay, resnet18, from
  scratch and kermany.
- ``precision``: CORDA&ChestXRay (a cell that learns from scratch), resnet18, seeds 0-2, fp32 and bf16.
- ``unseen``: the source splits of :data:`covid_lib.data.SOURCE_SPLITS` (Ben Ahmed et al. 2021, Fig. 4),
  resnet18 from scratch, kermany fine-tuned and kermany frozen; the fine-tuned model of two splits
  adapted on :data:`ADAPT_SIZES` images per class of the unseen sources (their Table 4). Parents
  (pre-training, then the split run an adaptation continues) run first.
- ``planted``: a planted confounder (:mod:`covid_lib.runs.planted`) on CORDA's COVID+ training and
  validation images, each mark x pipeline (``none``, ``paper``), resnet18 from scratch, seed 0.

Executors (:func:`run_grid`): ``local`` computes each run in this process; ``ray`` runs each as a
Ray task (:mod:`covid_lib.grid.ray_executor`) on a local instance or a cluster. Either way the driver writes
the records (workers need no shared disk) and the checkpoints (to the cache, or ``storage``). A
failing run prints one line and leaves its traceback in the cache
(:func:`covid_lib.runs.failure_path`), never in the records' folder; the others go on, and the
fine-tunes of a failed pre-training fail with that reason. Workers read the data from
``COVID_LIB_DATA`` or the ``data_root`` passed along.

A run with a complete record is never recomputed (a committed record is rewritten only by
``train --force``). When a run to compute starts from a parent whose record is here but whose
checkpoint is not (a fresh clone), the parent is retrained for its checkpoint only, its record
left untouched, and its test scores compared with the record's (:func:`covid_lib.runs.write_restored`).
A retraining that differs (bf16 on another kind of CPU) is said in one line and kept, noted as
such; the fine-tunes still start from it, and each one's ``lineage.json`` records the parent
checkpoint's sha256 and whether it reproduced the parent's record.

Example:
    >>> specs = grid_specs("table4", "smoke", data_version="x")
    >>> [(s.task, s.composition, s.pretrain) for s in specs]  # doctest: +NORMALIZE_WHITESPACE
    [('covid', 'COVID-ChestXRay', None), ('pretrain', 'kermany', None),
     ('covid', 'COVID-ChestXRay', 'kermany'), ('pretrain', 'nih', None), ('covid', 'COVID-ChestXRay', 'nih')]
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import pandas as pd

from covid_lib.data import SOURCE_SPLITS
from covid_lib.data import data_version as _version
from covid_lib.grid.remaining import CostModel, Remaining
from covid_lib.preprocess.plant import MARKS
from covid_lib.profiles import check_device, get_profile, resolve_device
from covid_lib.runs import (STATUSES, Record, RunArtifacts, RunSpec, checkpoint_dir, compute, machine_precision, read_checkpoint,
                            restore_message, write_artifacts, write_failure, write_restored)
from covid_lib.runs.fidelity import differs, mismatch_message

COMPOSITION_ORDER = ("CORDA", "CORDA&ChestXRay", "CORDA&RSNA", "CORDA&COVID-ChestXRay", "COVID-ChestXRay")
PRETRAININGS = (None, "kermany", "nih")
#: The pre-trainings of the grids at the paper's scale (issue 17): ChestXRay on the whole set
#: (``kermany_full``, 5,840 images); RSNA stays on the 1,000 NIH images of the working copy.
PRETRAININGS_FULL = (None, "kermany_full", "nih")
#: Seeds of Table II's cells at scale (Table IV's model is one of them), and of every other grid at scale.
TABLE2_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
OTHER_SEEDS: tuple[int, ...] = (0, 1, 2)
#: Input size of the resolution check (the paper's 224 px, against the cpu profile's 128 px).
RESOLUTION_SIZE = 224
EXECUTORS = ("local", "ray")


def _cells(arch: str, pretrains: Iterable, comps: Iterable[str], profile: str, **kw) -> list[RunSpec]:
    return [RunSpec(c, arch=arch, pretrain=p, profile=profile, **kw) for p in pretrains for c in comps]


def _seeds(profile: str) -> list[RunSpec]:
    out = []
    for seed in get_profile(profile).seeds:
        out += _cells("resnet18", PRETRAININGS, COMPOSITION_ORDER[:2], profile, seed=seed)
        out += _cells("resnet18", PRETRAININGS, ("COVID-ChestXRay",), profile, seed=seed)
    return out


def _seeded(arch: str, pretrains: Iterable, comps: Iterable[str], profile: str, seeds: Iterable[int],
            **kw) -> list[RunSpec]:
    """:func:`_cells` for each seed, seed-major (every cell of seed 0 first, so that a stopped grid
    has whole tables of the first seeds)."""
    return [spec for seed in seeds for spec in _cells(arch, pretrains, comps, profile, seed=seed, **kw)]


def _pretrain_full(profile: str) -> list[RunSpec]:
    return [RunSpec("kermany_full", arch=a, profile=profile, task="pretrain") for a in ("resnet18", "conv8", "resnet50")]


def _planted(profile: str) -> list[RunSpec]:
    return [RunSpec("CORDA", profile=profile, pipeline=pipe, plant=m) for m in MARKS for pipe in ("none", "paper")]


GRIDS: dict[str, tuple[str, Callable[[str], list[RunSpec]]]] = {
    "table2": ("Table II: resnet18 x (none, kermany, nih) x 5 compositions",
               lambda p: _cells("resnet18", PRETRAININGS, COMPOSITION_ORDER, p)),
    "table3": ("Table III: resnet50 x (kermany, nih) x 5 compositions",
               lambda p: _cells("resnet50", PRETRAININGS[1:], COMPOSITION_ORDER, p)),
    "conv8": ("conv8 x (none, kermany) x 5 compositions", lambda p: _cells("conv8", PRETRAININGS[:2], COMPOSITION_ORDER, p)),
    "table4": ("Table IV: COVID-ChestXRay x (none, kermany, nih), resnet18 (part of table2)",
               lambda p: _cells("resnet18", PRETRAININGS, ("COVID-ChestXRay",), p)),
    "seeds": ("headline cells (CORDA, CORDA&ChestXRay of Table II; Table IV) for every seed of the profile", _seeds),
    "ablation": ("pipeline 'none' on CORDA&ChestXRay and CORDA, resnet18, none and kermany",
                 lambda p: _cells("resnet18", PRETRAININGS[:2], COMPOSITION_ORDER[:2], p, pipeline="none")),
    "precision": ("CORDA&ChestXRay resnet18 from scratch, seeds 0-2, fp32 and bf16",
                  lambda p: [RunSpec("CORDA&ChestXRay", profile=p, seed=s, precision=x)
                             for x in ("fp32", "bf16") for s in range(3)]),
    "unseen": ("seen and unseen sources (Ben Ahmed et al. 2021): 3 source splits x (scratch, kermany, kermany "
               "frozen), resnet18; kermany adapted on 4-32 unseen images per class (2 splits)",
               lambda p: _unseen(p)),
    "planted": ("planted mark (corner, gamma) on CORDA's COVID+ train/val images x pipeline (none, paper), "
                "resnet18 from scratch, seed 0", lambda p: _planted(p)),
    # the paper's pre-training scale (issue 17): ChestXRay pre-training on the whole set, more seeds
    "pretrain_full": ("ChestXRay pre-training on the whole set (kermany_full): resnet18, conv8, resnet50",
                      _pretrain_full),
    "table2_full": ("Table II at scale: resnet18 x (none, kermany_full, nih) x 5 compositions x seeds 0-4",
                    lambda p: _seeded("resnet18", PRETRAININGS_FULL, COMPOSITION_ORDER, p, TABLE2_SEEDS)),
    "conv8_full": ("conv8 x (none, kermany_full) x 5 compositions x seeds 0-2",
                   lambda p: _seeded("conv8", PRETRAININGS_FULL[:2], COMPOSITION_ORDER, p, OTHER_SEEDS)),
    "table3_full": ("Table III at scale: resnet50 x (kermany_full, nih) x 5 compositions x seeds 0-2",
                    lambda p: _seeded("resnet50", PRETRAININGS_FULL[1:], COMPOSITION_ORDER, p, OTHER_SEEDS)),
    "ablation_full": ("pipeline 'none' on CORDA and CORDA&ChestXRay, resnet18, none and kermany_full, seeds 0-2",
                      lambda p: _seeded("resnet18", PRETRAININGS_FULL[:2], COMPOSITION_ORDER[:2], p, OTHER_SEEDS,
                                        pipeline="none")),
    "resolution": (f"CORDA and CORDA&ChestXRay at {RESOLUTION_SIZE} px, resnet18, none and kermany_full, seeds 0-2",
                   lambda p: _seeded("resnet18", PRETRAININGS_FULL[:2], COMPOSITION_ORDER[:2], p, OTHER_SEEDS,
                                     input_size=RESOLUTION_SIZE)),
}


#: Adaptation sizes of the ``unseen`` grid: images per class of the unseen sources (Ben Ahmed et al.: 80).
ADAPT_SIZES = (4, 8, 16, 32)
#: Source splits of the ``unseen`` grid whose kermany fine-tuned model gets the adaptation curve.
ADAPTED_SPLITS = ("U1-hannover-nih", "U2-cohen-kermany")


def _unseen(profile: str) -> list[RunSpec]:
    """Per source split: resnet18 from scratch, kermany fine-tuned, kermany frozen (Ben Ahmed et
    al.'s Finetune1); then the adaptation curve of the fine-tuned model of :data:`ADAPTED_SPLITS`."""
    out = [RunSpec(s, pretrain=p, freeze=f, profile=profile)
           for s in SOURCE_SPLITS for p, f in ((None, None), ("kermany", None), ("kermany", "encoder"))]
    return out + [RunSpec(s, pretrain="kermany", adapt=k, profile=profile) for s in ADAPTED_SPLITS for k in ADAPT_SIZES]


def with_pretrainings(specs: Iterable[RunSpec]) -> list[RunSpec]:
    """``specs`` without duplicates, each parent (:meth:`RunSpec.parent_spec`: a pre-training, or
    the source-split run an adaptation starts from, with its own parents) right before its first child."""
    out: dict[str, RunSpec] = {}

    def add(spec: RunSpec) -> None:
        if spec.run_id in out:
            return
        parent = spec.parent_spec()
        if parent is not None:
            add(parent)
        out[spec.run_id] = spec

    for spec in specs:
        add(spec)
    return list(out.values())


def grid_specs(name: str, profile: str = "cpu", *, data_root: str | os.PathLike | None = None,
               data_version: str | None = None, versions: dict[tuple[str, ...], str] | None = None
               ) -> list[RunSpec]:
    """The resolved runs of grid ``name`` under ``profile``, pre-trainings first.

    ``versions`` (sources -> data version of ``data_root``), filled here, lets a caller that resolves
    several grids at once check each set of sources' files once (about 0.4 s a grid otherwise)."""
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; choose from {', '.join(GRIDS)}")
    versions = {} if versions is None else versions

    def version(spec: RunSpec) -> str:  # one data version per set of sources (RunSpec.data_sources)
        if data_version is not None:
            return data_version
        key = spec.data_sources()
        if key not in versions:
            versions[key] = _version(data_root, sources=key)
        return versions[key]

    specs = [replace(s, data_version=version(s)).resolved(data_root) for s in GRIDS[name][1](profile)]
    return with_pretrainings(specs)


# -------------------------------------------------------------------------------------- execution
@dataclass
class GridReport:
    """What :func:`run_grid` did: run ids that were skipped (recorded), trained, restored (recorded,
    retrained for the checkpoint a child needs; record untouched), restored but differing from
    their record (also in ``restored``) and failed (with reasons)."""

    skipped: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    restored: list[str] = field(default_factory=list)
    differs: list[str] = field(default_factory=list)

    def summary(self) -> str:
        differ = f" ({len(self.differs)} differ from their record)" if self.differs else ""
        restored = f", {len(self.restored)} checkpoints restored{differ}" if self.restored else ""
        return (f"{len(self.trained)} trained, {len(self.skipped)} already finished{restored}, "
                f"{len(self.failed)} failed")


class GridProgress:
    """A tqdm bar over a grid's runs; records each outcome in a :class:`GridReport`. Runs in
    ``restore`` (recorded, checkpoint needed) get their checkpoint written, never their record."""

    def __init__(self, specs: list[RunSpec], progress: bool, storage, restore: set[str] = frozenset()) -> None:
        from tqdm.auto import tqdm

        self.report, self.storage, self.restore = GridReport(), storage, set(restore)
        self.bar = tqdm(total=len(specs), unit="run", desc="grid", disable=not progress)

    def skipped(self, spec: RunSpec) -> None:
        self.report.skipped.append(spec.run_id)
        self.bar.update(1)

    def restoring(self, spec: RunSpec) -> None:
        self.bar.write(restore_message(spec, self.storage), file=sys.stderr)

    def finished(self, artifacts: RunArtifacts) -> None:
        if artifacts.run_id in self.restore:
            note = write_restored(artifacts, storage=self.storage)
            if differs(note):
                self.report.differs.append(artifacts.run_id)
                self.bar.write(f"warning: {mismatch_message(note)}; its fine-tunes start from it and say so in "
                               "their lineage.json", file=sys.stderr)
            self.report.restored.append(artifacts.run_id)
        else:
            write_artifacts(artifacts, self.storage)
            self.report.trained.append(artifacts.run_id)
        self.bar.update(1)

    def failed(self, spec: RunSpec, error: str, reason: str | None = None) -> None:
        log = write_failure(spec, error, reason=reason)
        self.report.failed[spec.run_id] = reason = Record.of(spec).failure["reason"]
        self.bar.write(f"run {spec.run_id} failed: {reason} (traceback: {log})", file=sys.stderr)
        self.bar.update(1)
        self.bar.set_postfix(failed=len(self.report.failed))

    def close(self) -> GridReport:
        self.bar.close()
        return self.report


def failed_pretraining(spec: RunSpec, failed: dict[str, str]) -> str | None:
    """The reason a run cannot start when its parent (pre-training) failed in this grid, else None."""
    pre = spec.parent_spec()
    if pre is not None and pre.run_id in failed:
        return f"{'pre-training' if pre.task == 'pretrain' else 'parent'} run {pre.run_id} failed: {failed[pre.run_id]}"
    return None


def _run_local(todo: list[RunSpec], tracker: GridProgress, *, data_root, device: str, storage) -> None:
    for spec in todo:
        reason = failed_pretraining(spec, tracker.report.failed)
        if reason:
            tracker.failed(spec, reason, reason=reason)
            continue
        try:
            pre = spec.parent_spec()
            ckpt = read_checkpoint(pre.run_id, storage, allow_mismatch=True) if pre is not None else None
            artifacts = compute(spec, pretrain_checkpoint=ckpt, data_root=data_root, device=device,
                                resume=checkpoint_dir(storage))  # a stopped run resumes at its next epoch
        except Exception:  # a failing run is reported; the grid goes on
            tracker.failed(spec, traceback.format_exc())
            continue
        tracker.finished(artifacts)


def run_grid(grid: str | list[RunSpec], profile: str = "cpu", *, executor: str = "local", address: str | None = None,
             device: str = "auto", data_root: str | os.PathLike | None = None,
             storage: str | os.PathLike | None = None, progress: bool = True, fp32_twins: bool = False) -> GridReport:
    """Run every missing run of a grid (a name of :data:`GRIDS`, or resolved specs) and write its records.

    Args:
        executor: ``local`` (this process, no server) or ``ray`` (a task per run).
        address: Ray address (``auto``: a running cluster; None: start a local instance).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, on whichever machine computes the run;
            checked before anything runs (and, unless the runs go to a Ray cluster, present here).
        storage: checkpoint folder (default: the cache's ``runs`` folder).
        fp32_twins: on a CPU without native bf16, train the fp32 twins (other run ids) of bf16 runs;
            without it such a grid is refused with a ValueError (:func:`fp32_twin_problem`), unless
            every run of it is recorded (nothing to train: each is reported as skipped).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    check_device(device)
    if executor == "local" or address is None:  # the runs use this machine's devices: check them now
        resolve_device(device)
    specs = grid_specs(grid, profile, data_root=data_root) if isinstance(grid, str) else with_pretrainings(grid)
    # A CPU without bf16 runs (and records) fp32 specs; Ray workers check themselves. A grid whose
    # runs are all recorded has nothing to train, here as anywhere: it is reported, not refused.
    todo, restore = plan(specs, storage)
    if executor == "local" and (fp32_twins or todo):
        problem = None if fp32_twins else fp32_twin_problem(specs, device, storage)
        if problem:
            raise ValueError(problem)
        twins = [machine_precision(s, device) for s in specs]
        if twins != specs:  # fp32 twins: other run ids, planned afresh
            specs = twins
            todo, restore = plan(specs, storage)
    tracker = GridProgress(specs, progress, storage, restore)
    computed = {s.run_id for s in todo}
    for spec in specs:
        if spec.run_id in restore:
            tracker.restoring(spec)
        elif spec.run_id not in computed:
            tracker.skipped(spec)
    if executor == "local":
        _run_local(todo, tracker, data_root=data_root, device=device, storage=storage)
    elif todo:
        # optional: Ray is installed only for this executor
        from covid_lib.grid.ray_executor import run_ray

        run_ray(todo, tracker, lambda s: failed_pretraining(s, tracker.report.failed), address=address,
                data_root=data_root, device=device, storage=storage)
    return tracker.close()


def fp32_twin_problem(specs: list[RunSpec], device: str = "auto",
                      storage: str | os.PathLike | None = None) -> str | None:
    """Why this machine must not run ``specs`` without ``fp32_twins`` (None: it may): runs that ask
    for bf16, on a CPU without native bf16.

    There every bf16 run becomes an fp32 run with its own id (:func:`covid_lib.runs.machine_precision`),
    about 8 times slower, which ``grid status`` does not count (emulated bf16 is 11-21 times slower
    still: ``bench/bench_bf16_emulation.py``); when some of the bf16 runs are recorded, the grid
    would start again from nothing instead of adding its missing runs, and a cell would mix
    precisions across seeds.
    """
    twins = [s for s in specs if machine_precision(s, device) is not s]
    if not twins:
        return None
    absent = [s for s in twins if not Record.of(s, storage=storage).recorded]
    recorded, missing = len(twins) - len(absent), len(absent)
    done = ("" if not recorded else f"; {recorded} of them are already recorded in bf16 ({missing} missing), "
            "so the grid would start again instead of adding " + ("the missing ones" if missing else "nothing")
            + ", and cells would mix precisions across seeds")
    stand_ins = sum(Record.of(machine_precision(s, device), storage=storage).recorded for s in absent)
    if stand_ins:
        done += (f". {stand_ins} of the {missing} missing runs have an fp32 twin recorded (the precision control, "
                 "`scripts/run_precision_control.py`), which no verdict counts")
    runs = f"{len(twins)} bf16 run" + ("s" if len(twins) != 1 else "")
    return (f"this CPU has no native bf16 (AVX-512 BF16 or AMX): the grid's {runs} would be trained "
            f"as fp32 runs with other run ids (about 8 times slower; `grid status` does not count them){done}. "
            "Run it on a CPU with native bf16 or on CUDA (--device cuda); to train the fp32 twins on purpose, "
            "pass --fp32-twins (run_grid(..., fp32_twins=True)).")


def plan(specs: list[RunSpec], storage: str | os.PathLike | None = None) -> tuple[list[RunSpec], set[str]]:
    """What a grid run computes: ``(todo, restore)``. ``todo`` (in grid order, parents first)
    holds every run without a complete record, and every recorded run whose checkpoint a run of
    ``todo`` starts from but is not cached here; the run ids of the latter are ``restore``: they
    are retrained for the checkpoint only, their record left as it is."""
    needed: set[str] = set()
    restore: set[str] = set()
    todo: list[RunSpec] = []
    for spec in reversed(specs):  # children come after their parents: visit them first
        record = Record.of(spec, storage=storage)
        if record.recorded and not (spec.run_id in needed and record.checkpoint is None):
            continue
        if record.recorded:
            restore.add(spec.run_id)
        todo.append(spec)
        if spec.parent_spec() is not None:
            needed.add(spec.parent_spec().run_id)
    return todo[::-1], restore


# ----------------------------------------------------------------------------------------- status
def grid_status(grid: str | list[RunSpec], profile: str = "cpu", *, data_root: str | os.PathLike | None = None,
                storage: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run: ``run_id, task, composition, arch, pretrain, seed, state, note``; ``state``
    is a :attr:`covid_lib.runs.Record.status`: ``done``, ``did not learn`` (best validation AUC <
    0.6, the note says how much), ``collapsed``, ``recorded (no checkpoint here)`` (a run others
    in the grid start from, recorded, its checkpoint not cached: a fresh clone's pre-trainings),
    ``retrained here, differs from record`` (such a run whose cached checkpoint is a retraining
    that does not reproduce its record), ``failed`` (the note gives the reason) or ``missing``."""
    specs = grid_specs(grid, profile, data_root=data_root) if isinstance(grid, str) else with_pretrainings(grid)
    parents = {s.parent_spec().run_id for s in specs if s.parent_spec() is not None}
    rows = []
    for spec in specs:
        record = Record.of(spec, storage=storage, need_checkpoint=spec.run_id in parents)
        rows.append({"run_id": spec.run_id, "task": spec.task, "composition": spec.composition, "arch": spec.arch,
                     "pretrain": spec.pretrain or "none", "seed": spec.seed, "state": record.status,
                     "note": record.note})
    return pd.DataFrame(rows)


def status_counts(status: pd.DataFrame) -> dict[str, int]:
    """How many runs are in each state (every state of :data:`covid_lib.runs.STATUSES`, zeros included)."""
    counts = status["state"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def table2_grid(pretrain: str | None) -> str:
    """The Table II grid that holds ``pretrain``'s fine-tunes: ``table2_full`` for the whole-set
    ChestXRay pre-training (``kermany_full``, the paper's scale), else ``table2``."""
    return "table2_full" if pretrain == "kermany_full" else "table2"


def ablation_grid(pretrain: str | None) -> str:
    """The pre-processing ablation (pipeline ``none``) that goes with :func:`table2_grid`:
    ``ablation_full`` for the whole-set ChestXRay pre-training (``kermany_full``), else ``ablation``."""
    return "ablation_full" if pretrain == "kermany_full" else "ablation"


def grid_compute(grids: Iterable[str], profile: str = "cpu", *, data_root: str | os.PathLike | None = None,
                 versions: dict[tuple[str, ...], str] | None = None) -> pd.DataFrame:
    """Compute spent on ``grids``, read from each recorded run's ``timings.json``: per grid its runs,
    how many are recorded and missing, the hours of the recorded ones, the median training speed and
    the estimated hours of the missing ones (:mod:`covid_lib.grid.remaining`, from the records of
    every named grid; ``extrapolated``: how many of those estimates scale a speed from another input
    size); a last row ``all`` counts every run once (grids share pre-trainings and cells).
    ``versions``: as :func:`grid_specs`, shared by every grid resolved here (and with the caller)."""
    rows, seen, missing = [], {}, {}
    versions = {} if versions is None else versions  # each set of sources' data version computed once
    every = {name: grid_specs(name, profile, data_root=data_root, versions=versions)
             for name in dict.fromkeys([*grids, *GRIDS])}
    specs_by_id = {s.run_id: s for specs in every.values() for s in specs}
    records = {run_id: Record.of(s, need_checkpoint=False) for run_id, s in specs_by_id.items()}  # read once
    model = CostModel((specs_by_id[r], rec.timings) for r, rec in records.items()
                      if rec.status not in ("missing", "failed"))
    for name in dict.fromkeys(grids):
        hours, speeds, recorded, left = 0.0, [], 0, []
        specs = every[name]
        for spec in specs:
            record = records[spec.run_id]
            if record.status in ("missing", "failed"):
                left.append(spec)
                missing[spec.run_id] = spec
                continue
            recorded += 1
            t = record.timings
            hours += t.get("total_s", 0.0) / 3600
            seen[spec.run_id] = t
            if t.get("train_images_per_s"):
                speeds.append(t["train_images_per_s"])
        rows.append({"grid": name, "runs": len(specs), "recorded": recorded, "missing": len(specs) - recorded,
                     "compute (h)": round(hours, 2),
                     "median train images/s": round(float(pd.Series(speeds).median()), 1) if speeds else None,
                     **_left_columns(model.remaining(left))})
    total = sum(t.get("total_s", 0.0) for t in seen.values()) / 3600
    rows.append({"grid": "all (each run once)", "runs": None, "recorded": len(seen), "missing": len(missing),
                 "compute (h)": round(total, 2), "median train images/s": None,
                 **_left_columns(model.remaining(missing.values()))})
    return pd.DataFrame(rows).astype({"runs": "Int64", "recorded": "Int64", "missing": "Int64",
                                      "extrapolated": "Int64"})


def _left_columns(rem: Remaining) -> dict:
    """The ``left (h, est.)`` and ``extrapolated`` cells of :func:`grid_compute` for a
    :class:`covid_lib.grid.remaining.Remaining` (hours of the runs with a basis; ``+`` when some have none)."""
    if not rem.n_missing:
        return {"left (h, est.)": "0.0", "extrapolated": 0}
    hours = f"{rem.hours:.1f}" + ("" if rem.n_estimated == rem.n_missing
                                  else f" + {rem.n_missing - rem.n_estimated} runs without a basis")
    return {"left (h, est.)": hours, "extrapolated": rem.extrapolated}
