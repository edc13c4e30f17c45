"""Run records: a frozen :class:`RunSpec` hashes to a run id; :func:`run` trains what is missing.

One run = one trained model of Tartaglione et al. 2020 (Sec. III-C, IV): an architecture, an
optional pneumonia pre-training (ChestXRay = ``kermany``, RSNA = ``nih``; itself a run, with task
``"pretrain"``, shared by every fine-tuning that uses it), a training composition of Table I, a
compute profile and a seed. A finished run writes small text files under
``results/<run_id>/`` (``$COVID_LIB_RESULTS`` overrides the folder; tests point it at a temporary
one):

- ``spec.json``: the spec, the resolved profile and pipeline, git commit, data version, device;
- ``history.csv``: per-epoch losses, validation AUC, learning rate (the fine-tuning stage);
- ``scores.csv`` / ``val_scores.csv``: per-image scores on the test split of *every* composition
  (the cross-dataset tests of Tables II-IV) and on the training composition's validation split;
- ``metrics.json``: metrics with intervals per test set at 0.5 and at the validation threshold;
- ``timings.json``: seconds per stage and training images per second.

The checkpoint goes to the git-ignored cache (``cache_dir("runs")/<run_id>/model.pt``). A run
whose ``metrics.json`` exists is reused, not retrained (pre-training runs also need their
checkpoint). The profile's ``max_images`` (the smoke profile) keeps at most that many images per
source and split, pre-processed directly instead of through the whole-source cache.

Example:
    >>> spec = RunSpec("CORDA", arch="resnet18", pretrain="kermany", profile="smoke", data_version="x")
    >>> spec.run_id
    'covid-CORDA-resnet18-kermany-smoke-s0-03cba64ea2'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from covid_lib.paths import REPO_ROOT, cache_dir
from covid_lib.profiles import Profile, get_profile, resolve_device

RESULTS_ENV_VAR = "COVID_LIB_RESULTS"
TASKS = ("covid", "pretrain")
CLASSIFIERS = ("resnet18", "resnet50", "conv8")
PRETRAIN_SOURCES = ("kermany", "nih")


def results_dir() -> Path:
    """Where run records go: ``$COVID_LIB_RESULTS`` or ``<repo>/results``."""
    return Path(os.environ.get(RESULTS_ENV_VAR, REPO_ROOT / "results"))


# ------------------------------------------------------------------------------------------ spec
@dataclass(frozen=True)
class RunSpec:
    """Everything that decides a run's numbers; hashes to :attr:`run_id`.

    Attributes:
        composition: a composition of Table I (task ``"covid"``) or a pre-training source
            (task ``"pretrain"``).
        arch: ``resnet18``, ``resnet50`` or ``conv8``.
        pretrain: ``"kermany"`` (ChestXRay), ``"nih"`` (RSNA) or None (from scratch).
        profile: compute profile name (its settings are hashed, not only its name).
        seed: training seed (weights, shuffling, augmentation).
        input_size: network input side; None: the profile's.
        epochs: maximum epochs per stage; None: the profile's.
        pipeline: pre-processing pipeline name (``paper``, ``none``, ...).
        task: ``"covid"`` or ``"pretrain"``.
        split_seed: seed of the patient-level splits and compositions (fixed across runs).
        data_version: :func:`covid_lib.data.data_version`; filled by :meth:`resolved` when empty
            (:func:`run` resolves first, so the recorded run id hashes the real data version).
    """

    composition: str
    arch: str = "resnet18"
    pretrain: str | None = None
    profile: str = "cpu"
    seed: int = 0
    input_size: int | None = None
    epochs: int | None = None
    pipeline: str = "paper"
    task: str = "covid"
    split_seed: int = 0
    data_version: str = ""

    def __post_init__(self) -> None:
        from covid_lib.data import COMPOSITIONS
        from covid_lib.preprocess import PIPELINES

        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        if self.arch not in CLASSIFIERS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose from {', '.join(CLASSIFIERS)}")
        known = COMPOSITIONS if self.task == "covid" else PRETRAIN_SOURCES
        if self.composition not in known:
            what = "composition" if self.task == "covid" else "pre-training source"
            raise ValueError(f"unknown {what} {self.composition!r}; choose from {', '.join(known)}")
        if self.pretrain is not None and (self.task == "pretrain" or self.pretrain not in PRETRAIN_SOURCES):
            raise ValueError(f"pretrain must be None or one of {PRETRAIN_SOURCES} (covid task only), "
                             f"got {self.pretrain!r}")
        if self.pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {self.pipeline!r}; choose from {', '.join(PIPELINES)}")
        get_profile(self.profile)

    @property
    def profile_settings(self) -> Profile:
        return get_profile(self.profile)

    def resolved(self, data_root: str | os.PathLike | None = None) -> "RunSpec":
        """This spec with ``input_size``, ``epochs`` and ``data_version`` filled in."""
        p = self.profile_settings
        version = self.data_version
        if not version:
            from covid_lib.data import data_version

            version = data_version(data_root)
        return replace(self, input_size=self.input_size or p.input_size, epochs=self.epochs or p.epochs,
                       data_version=version)

    @property
    def resize_size(self) -> int:
        """Side of the cached images, centre-cropped to ``input_size`` (paper: 256 -> 224)."""
        p = self.profile_settings
        size = self.input_size or p.input_size
        return round(size * p.resize_size / p.input_size)

    def pretrain_spec(self) -> "RunSpec | None":
        """The pre-training run this run starts from (None when trained from scratch)."""
        if self.pretrain is None:
            return None
        return replace(self, task="pretrain", composition=self.pretrain, pretrain=None)

    def identity(self) -> dict:
        """What the run id hashes: the spec and the profile's settings (its description aside)."""
        settings = self.profile_settings.to_dict()
        settings.pop("description")
        spec = asdict(self)
        spec["input_size"] = self.input_size or self.profile_settings.input_size
        spec["epochs"] = self.epochs or self.profile_settings.epochs
        return {"spec": spec, "profile": settings}

    @property
    def run_id(self) -> str:
        """``<task>-<set>-<arch>-<pretrain|scratch>-<profile>-s<seed>-<10 hex digits>``; stable
        across processes and machines (sha256 of sorted JSON)."""
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        digest = hashlib.sha256(blob).hexdigest()[:10]
        name = re.sub(r"[^A-Za-z0-9+-]+", "", self.composition.replace("&", "+"))
        return f"{self.task}-{name}-{self.arch}-{self.pretrain or 'scratch'}-{self.profile}-s{self.seed}-{digest}"


# ---------------------------------------------------------------------------------------- result
@dataclass
class RunResult:
    """A finished run as read from its record."""

    spec: RunSpec
    run_id: str
    path: Path
    metrics: pd.DataFrame
    scores: pd.DataFrame
    history: pd.DataFrame
    timings: dict
    reused: bool = False
    record: dict = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(self.run_id)


def checkpoint_path(run_id: str) -> Path:
    """Where a run's weights live in the git-ignored cache."""
    return cache_dir("runs") / run_id / "model.pt"


def is_finished(spec: RunSpec) -> bool:
    """Whether ``spec`` (resolved) has a complete record (and, for pre-training, its checkpoint)."""
    done = (results_dir() / spec.run_id / "metrics.json").is_file()
    return done and (spec.task == "covid" or checkpoint_path(spec.run_id).is_file())


def load_result(spec: RunSpec, *, reused: bool = True) -> RunResult:
    """Read a finished run's record."""
    path = results_dir() / spec.run_id
    if not (path / "metrics.json").is_file():
        raise FileNotFoundError(f"run {spec.run_id} has no record under {path}; train it with run(spec)")
    metrics = json.loads((path / "metrics.json").read_text())
    scores = pd.read_csv(path / "scores.csv", dtype={"image_id": str, "patient_id": str, "group_id": str}) \
        if (path / "scores.csv").is_file() else pd.DataFrame()
    return RunResult(spec=spec, run_id=spec.run_id, path=path,
                     metrics=pd.DataFrame(metrics["table"]), scores=scores,
                     history=pd.read_csv(path / "history.csv"),
                     timings=json.loads((path / "timings.json").read_text()), reused=reused,
                     record=json.loads((path / "spec.json").read_text()))


def load_model(spec: RunSpec, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The trained model of a run (eval mode) and its checkpoint metadata (mean, std, sizes)."""
    from covid_lib.models import create_model

    path = checkpoint_path(spec.run_id)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint for run {spec.run_id} at {path}; re-run it with run(spec, force=True)")
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = create_model(ckpt["arch"], num_classes=ckpt["num_classes"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), {k: v for k, v in ckpt.items() if k != "state_dict"}


# ------------------------------------------------------------------------------------------- data
def _pipeline(spec: RunSpec):
    from covid_lib.preprocess import get_pipeline

    return get_pipeline(spec.pipeline, image_size=spec.resize_size).resolved()


def _images(spec: RunSpec, rows: pd.DataFrame, data_root):
    from covid_lib.data import limit_rows
    from covid_lib.train import load_images

    p = spec.profile_settings
    rows = limit_rows(rows, p.max_images, seed=spec.split_seed)
    return load_images(rows, _pipeline(spec), data_root, whole_sources=p.max_images is None)


def _split_datasets(spec: RunSpec, rows: pd.DataFrame, data_root) -> dict:
    """Train (augmented), val and test datasets normalised by the training images' statistics."""
    from covid_lib.train import make_dataset

    images, kept = _images(spec, rows, data_root)
    out: dict = {"rows": {}, "data": {}}
    mask = {s: (kept["split"] == s).to_numpy() for s in ("train", "val", "test")}
    train = make_dataset(kept[mask["train"]], images[mask["train"]], input_size=spec.input_size, augment=True)
    out["data"]["train"], out["rows"]["train"] = train, kept[mask["train"]]
    for s in ("val", "test"):
        out["rows"][s] = kept[mask[s]]
        out["data"][s] = make_dataset(kept[mask[s]], images[mask[s]], input_size=spec.input_size,
                                      mean=train.mean, std=train.std)
    out["dropped"] = len(rows) - len(kept) if spec.profile_settings.max_images is None else None
    return out


# ---------------------------------------------------------------------------------------- running
def _train_config(spec: RunSpec, device: str, progress: bool):
    from covid_lib.train import TrainConfig

    return TrainConfig.from_profile(spec.profile, epochs=spec.epochs, seed=spec.seed, device=device,
                                    progress=progress)


def _initial_model(spec: RunSpec, num_classes: int, data_root, device: str, progress: bool):
    """A fresh model, or the pre-trained one with its head replaced (paper Sec. III-C)."""
    from covid_lib.models import create_model
    from covid_lib.train import replace_head, seed_everything

    seed_everything(spec.seed)
    pre = spec.pretrain_spec()
    if pre is None:
        return create_model(spec.arch, num_classes=num_classes), None
    pre_result = run(pre, data_root=data_root, device=device, progress=progress)
    model, _ = load_model(pre, device="cpu")
    return replace_head(model.train(), num_classes), pre_result


def _save_checkpoint(spec: RunSpec, model, num_classes: int, mean: float, std: float) -> Path:
    path = checkpoint_path(spec.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "arch": spec.arch,
                "num_classes": num_classes, "mean": mean, "std": std, "input_size": spec.input_size,
                "resize_size": spec.resize_size, "run_id": spec.run_id}, tmp)
    os.replace(tmp, path)
    return path


def _spec_record(spec: RunSpec, device: str, extra: dict) -> dict:
    from covid_lib.provenance import environment, git_state

    return {"run_id": spec.run_id, "spec": asdict(spec), "profile": spec.profile_settings.to_dict(),
            "pipeline": _pipeline(spec).to_dict(), "pipeline_hash": _pipeline(spec).hash,
            "git": git_state(), "data_version": spec.data_version, "environment": environment(device),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}


def _write_record(spec: RunSpec, files: dict[str, object]) -> Path:
    """Write ``files`` (DataFrames as CSV, dicts as JSON), ``metrics.json`` last."""
    path = results_dir() / spec.run_id
    path.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda n: n == "metrics.json"):
        obj = files[name]
        if isinstance(obj, pd.DataFrame):
            obj.to_csv(path / name, index=False)
        else:
            (path / name).write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return path


def _pretrain(spec: RunSpec, data_root, device: str, progress: bool) -> dict:
    """Pre-train on a pneumonia source; record validation/test AUC and accuracy."""
    from covid_lib.data import pretrain_rows
    from covid_lib.train import auc as _auc, fit, predict

    t0 = time.perf_counter()
    rows = pretrain_rows(spec.composition, data_root, split_seed=spec.split_seed)
    sets = _split_datasets(spec, rows, data_root)
    t_data = time.perf_counter() - t0
    num_classes = int(rows["label"].max()) + 1
    model, _ = _initial_model(spec, num_classes, data_root, device, progress)
    result = fit(model, sets["data"]["train"], sets["data"]["val"], _train_config(spec, device, progress))
    probs, y, _ = predict(result.model, sets["data"]["test"], device=device)
    metrics = {"table": [], "best_epoch": result.best_epoch, "monitor": result.monitor,
               "best_value": result.best_value, "test_auc": _auc(y, probs) if len(y) else float("nan"),
               "test_accuracy": float((probs.argmax(1) == y).mean()) if len(y) else float("nan"),
               "num_classes": num_classes, "n": {s: len(d) for s, d in sets["data"].items()}}
    train = sets["data"]["train"]
    _save_checkpoint(spec, result.model, num_classes, train.mean, train.std)
    timings = {"data_s": t_data, "fit_s": result.seconds, "train_images_per_s": result.images_per_s,
               "total_s": time.perf_counter() - t0}
    return {"spec.json": _spec_record(spec, device, {"dropped_by_chain": sets["dropped"]}),
            "history.csv": result.history, "metrics.json": metrics, "timings.json": timings}


def _score_all(spec: RunSpec, model, mean: float, std: float, data_root, device: str) -> pd.DataFrame:
    """Scores on the test split of every composition (the cross-dataset columns of Tables II-IV)."""
    from covid_lib.data import COMPOSITIONS, compose
    from covid_lib.train import make_dataset
    from covid_lib.evaluate import score_images

    parts = []
    for name in COMPOSITIONS:
        rows = compose(name, data_root, seed=spec.split_seed).query("split == 'test'")
        images, kept = _images(spec, rows, data_root)
        data = make_dataset(kept, images, input_size=spec.input_size, mean=mean, std=std)
        parts.append(score_images(model, data, kept, test_set=name, device=device))
    return pd.concat(parts, ignore_index=True)


def _finetune(spec: RunSpec, data_root, device: str, progress: bool) -> dict:
    """Fine-tune (or train from scratch) on a composition, then score every test set."""
    from covid_lib.data import compose
    from covid_lib.evaluate import metrics_table, score_images
    from covid_lib.train import fit

    t0 = time.perf_counter()
    sets = _split_datasets(spec, compose(spec.composition, data_root, seed=spec.split_seed), data_root)
    t_data = time.perf_counter() - t0
    model, pre = _initial_model(spec, 2, data_root, device, progress)
    t_fit = time.perf_counter()
    result = fit(model, sets["data"]["train"], sets["data"]["val"], _train_config(spec, device, progress))
    t_fit = time.perf_counter() - t_fit
    train = sets["data"]["train"]
    _save_checkpoint(spec, result.model, 2, train.mean, train.std)
    t_eval = time.perf_counter()
    val_scores = score_images(result.model, sets["data"]["val"], sets["rows"]["val"],
                              test_set=f"{spec.composition} (validation)", device=device)
    scores = _score_all(spec, result.model, train.mean, train.std, data_root, device)
    table = metrics_table(scores, val_scores, seed=spec.seed)
    metrics = {"table": table.to_dict("records"), "best_epoch": result.best_epoch, "monitor": result.monitor,
               "best_value": result.best_value, "n": {s: len(d) for s, d in sets["data"].items()}}
    timings = {"data_s": t_data, "pretrain_s": (pre.timings.get("total_s", 0.0) if pre and not pre.reused else 0.0),
               "fit_s": t_fit, "train_images_per_s": result.images_per_s, "eval_s": time.perf_counter() - t_eval,
               "total_s": time.perf_counter() - t0}
    extra = {"pretrain_run": pre.run_id if pre else None, "dropped_by_chain": sets["dropped"]}
    return {"spec.json": _spec_record(spec, device, extra), "history.csv": result.history,
            "val_scores.csv": val_scores, "scores.csv": scores, "metrics.json": metrics, "timings.json": timings}


def run(spec: RunSpec, *, data_root: str | os.PathLike | None = None, device: str = "auto",
        progress: bool = True, force: bool = False) -> RunResult:
    """Train and record ``spec`` unless its record exists (then read it back).

    Args:
        spec: what to run; ``data_version`` is filled from ``data_root`` when empty.
        data_root: the data root (default: ``COVID_LIB_DATA`` / ``../shared/data``).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``; not part of the run id.
        progress: tqdm bars while training.
        force: retrain even when a record exists.
    """
    spec = spec.resolved(data_root)
    if not force and is_finished(spec):
        return load_result(spec, reused=True)
    device = resolve_device(device)
    files = (_pretrain if spec.task == "pretrain" else _finetune)(spec, data_root, device, progress)
    _write_record(spec, files)
    return load_result(spec, reused=False)


# -------------------------------------------------------------------------------------------- CLI
def summary_table(result: RunResult, digits: int = 2) -> pd.DataFrame:
    """The run's metrics as ``"0.91 [0.80, 0.96]"`` cells, one row per test set and threshold."""
    from covid_lib.evaluate import format_metrics

    return format_metrics(result.metrics, digits)


def _cmd_train(args) -> int:
    spec = RunSpec(args.composition, arch=args.arch, pretrain=None if args.pretrain == "none" else args.pretrain,
                   profile=args.profile, seed=args.seed, input_size=args.input_size, epochs=args.epochs,
                   pipeline=args.pipeline)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(spec, data_root=args.data_root, device=args.device, force=args.force)
    state = "reused" if result.reused else f"trained in {result.timings['total_s']:.0f} s"
    print(f"run {result.run_id} ({state}); record: {result.path}")
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 40):
        print(summary_table(result).to_string(index=False))
    return 0


def register_cli(subparsers) -> None:
    """``python -m covid_lib train --composition CORDA --arch resnet18 --pretrain kermany ...``."""
    from covid_lib.data import COMPOSITIONS
    from covid_lib.preprocess import PIPELINES
    from covid_lib.profiles import PROFILES

    p = subparsers.add_parser("train", help="train (or reuse) one classifier run and print its metrics",
                              description=_cmd_train.__doc__ or register_cli.__doc__)
    p.add_argument("--composition", required=True, choices=list(COMPOSITIONS))
    p.add_argument("--arch", default="resnet18", choices=list(CLASSIFIERS))
    p.add_argument("--pretrain", default="none", choices=["none", *PRETRAIN_SOURCES])
    p.add_argument("--profile", default="cpu", choices=list(PROFILES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--pipeline", default="paper", choices=list(PIPELINES))
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--force", action="store_true", help="retrain even if a record exists")
    p.set_defaults(func=_cmd_train)
