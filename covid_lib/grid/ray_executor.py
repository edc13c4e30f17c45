"""The ``ray`` executor of :func:`covid_lib.grid.run_grid`: one Ray task per run.

Each task computes a run (:func:`covid_lib.runs.compute`) and returns its artifacts (record files
and checkpoint bytes); the driver writes them, so workers need no shared disk. A fine-tune task
takes its pre-training task's result as an argument (an ``ObjectRef``: Ray runs it after the
pre-training, and fails it with the pre-training's error). Resources: one GPU per task where the
cluster has GPUs, else the run's thread count in CPUs (capped at the smallest node), so that
tasks do not oversubscribe cores. The task sets the same thread count as the local executor on
that machine (:func:`covid_lib.runs.run_threads`).

Workers import ``covid_lib`` as any module: on a local instance they run this machine's Python,
where the package is installed (``pip install -e .``, the README's install line), so they import
this checkout. A cluster (``address``) also gets the repository as the job's ``working_dir``
(without ``.venv``, caches, results, the built book and ``.git``): Ray puts it first on each
worker's ``sys.path``, so every node runs the driver's code even where its own install is another
version or a plain ``pip install -r requirements.txt`` without the package. ``COVID_LIB_DATA`` and
``COVID_LIB_CACHE`` are passed on when set; ``data_root`` is passed to every task.
"""

from __future__ import annotations

import os
from typing import Callable

from covid_lib.paths import CACHE_ENV_VAR, DATA_ENV_VAR, REPO_ROOT
from covid_lib.runs import RunArtifacts, RunSpec, compute, read_checkpoint, run_threads

#: Paths left out of the working directory shipped to a cluster (gitignore syntax).
WORKING_DIR_EXCLUDES = [".venv", ".cache", "results", "_build", "book/chapters", ".git", "**/__pycache__",
                        ".pytest_cache"]


def _compute_task(spec: RunSpec, pretrain: RunArtifacts | bytes | None, data_root, device: str) -> RunArtifacts:
    """What a Ray worker runs: ``pretrain`` is the pre-training's artifacts (resolved from its
    task's ``ObjectRef``), its checkpoint bytes (finished earlier) or None."""
    ckpt = pretrain.checkpoint if isinstance(pretrain, RunArtifacts) else pretrain
    return compute(spec, pretrain_checkpoint=ckpt, data_root=data_root, device=device)


def runtime_env(address: str | None) -> dict:
    """The job's runtime environment: data and cache folders passed on; on a cluster, the repository
    as the job's ``working_dir`` (a local instance's workers import the installed package)."""
    env_vars = {k: os.environ[k] for k in (DATA_ENV_VAR, CACHE_ENV_VAR) if os.environ.get(k)}
    if address is None:  # a local instance: the workers run this Python, with covid_lib installed
        return {"env_vars": env_vars}
    return {"working_dir": str(REPO_ROOT), "excludes": WORKING_DIR_EXCLUDES, "env_vars": env_vars}


def _resources(ray, spec: RunSpec) -> dict:
    if ray.cluster_resources().get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": 1}
    node_cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return {"num_cpus": max(1, min(run_threads(spec), int(min(node_cpus or [1]))))}


def _upstream_failure(ray, spec: RunSpec, refs: dict) -> str | None:
    """Why a fine-tune failed when its pre-training task failed (reported before or after it)."""
    pre = spec.parent_spec()
    ref = refs.get(pre.run_id) if pre is not None else None
    if ref is None:
        return None
    try:
        ray.get(ref, timeout=0)
    except ray.exceptions.GetTimeoutError:  # still running: not the cause
        return None
    except Exception as err:  # the pre-training's own error
        return f"pre-training run {pre.run_id} failed: {str(err).strip().splitlines()[-1]}"
    return None


def run_ray(todo: list[RunSpec], tracker, blocked: Callable[[RunSpec], str | None], *, address: str | None,
            data_root, device: str, storage) -> None:
    """Submit ``todo`` (pre-trainings before their fine-tunes) as Ray tasks; report each outcome to
    ``tracker`` (``finished(artifacts)``, ``failed(spec, error, reason)``) as it completes.
    ``blocked(spec)`` says why a fine-tune cannot start (its pre-training failed), else None."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, runtime_env=runtime_env(address), include_dashboard=False,
                 log_to_driver=False)
    try:
        task = ray.remote(_compute_task)
        refs: dict[str, object] = {}
        pending: dict[object, RunSpec] = {}
        root = None if data_root is None else str(data_root)
        for spec in todo:
            pre = spec.parent_spec()
            pre_arg = None
            if pre is not None:
                pre_arg = refs.get(pre.run_id)
                if pre_arg is None:  # finished before this grid run: ship its checkpoint once
                    pre_arg = refs[pre.run_id] = ray.put(read_checkpoint(pre.run_id, storage, allow_mismatch=True))
            ref = task.options(**_resources(ray, spec)).remote(spec, pre_arg, root, device)
            refs[spec.run_id] = ref
            pending[ref] = spec
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            try:
                artifacts = ray.get(done[0])
            except Exception as err:  # RayTaskError carries the worker's traceback
                reason = blocked(spec) or _upstream_failure(ray, spec, refs)
                tracker.failed(spec, str(err), reason=reason)
                continue
            tracker.finished(artifacts)
    finally:
        if started_here:
            ray.shutdown()
