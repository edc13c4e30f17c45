"""The run spec: everything that decides a run's numbers, hashed into its run id.

Example:
    >>> spec = RunSpec("CORDA", arch="resnet18", pretrain="kermany", profile="smoke", data_version="x")
    >>> spec.run_id
    'covid-CORDA-resnet18-kermany-smoke-s0-d9f7465a78'
    >>> spec.pretrain_spec().run_id.startswith("pretrain-kermany-resnet18-scratch-smoke-s0-")
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from covid_lib.data import COMPOSITIONS, PRETRAIN_ONLY_SOURCES, SOURCE_SPLITS, STUDY_SOURCES, data_version
from covid_lib.data.compose import COMPOSE_VERSION
from covid_lib.data.source_splits import SOURCE_SPLIT_VERSION
from covid_lib.names import ARCHS, PRETRAIN_SOURCES
from covid_lib.paths import REPO_ROOT
from covid_lib.preprocess import PIPELINES
from covid_lib.preprocess.plant import MARKS
from covid_lib.profiles import Profile, get_profile

RESULTS_ENV_VAR = "COVID_LIB_RESULTS"
TASKS = ("covid", "pretrain")
CLASSIFIERS = ARCHS
PRECISIONS = ("fp32", "bf16")
FREEZES = ("encoder",)


def results_dir() -> Path:
    """Where run records go: ``$COVID_LIB_RESULTS`` or ``<repo>/results``."""
    return Path(os.environ.get(RESULTS_ENV_VAR, REPO_ROOT / "results"))


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides a run's numbers; hashes to :attr:`run_id`.

    Attributes:
        composition: a composition of Table I (task ``"covid"``) or a pre-training source
            (task ``"pretrain"``).
        arch: ``resnet18``, ``resnet50`` or ``conv8``.
        pretrain: ``"kermany"`` (ChestXRay), ``"nih"`` (RSNA) or None (from scratch).
        profile: compute profile name (its settings are hashed, not only its name).
        seed: training seed (weights, new head, shuffling, augmentation).
        input_size: network input side; None: the profile's.
        epochs: maximum epochs per stage; None: the profile's.
        pipeline: pre-processing pipeline name (``paper``, ``none``, ...).
        task: ``"covid"`` or ``"pretrain"``.
        split_seed: seed of the patient-level splits and compositions (fixed across runs).
        data_version: :func:`covid_lib.data.data_version`; filled by :meth:`resolved` when empty
            (:func:`covid_lib.runs.run` resolves first, so the recorded id hashes the real version).
        precision: ``"fp32"`` or ``"bf16"``; None: the profile's. Hashed only when set, so the
            ids of runs at the profile's precision do not change.
        freeze: ``"encoder"``: the pre-trained encoder frozen except its batch-norm layers, with a
            small head (Ben Ahmed et al. 2021, Table 2; source splits only). Hashed only when set.
        adapt: images per class of the unseen sources to fine-tune a finished source-split run on
            (Ben Ahmed et al. 2021, Table 4); its parent is this spec without ``adapt``
            (:meth:`parent_spec`). Hashed only when set.
        plant: a planted confounder (:data:`covid_lib.preprocess.plant.MARKS`) burnt into the
            COVID+ training and validation images (:mod:`covid_lib.runs.planted`); None: none.
            Hashed only when set, like ``precision``.

    The thread count is not part of the spec, but of determinism: every executor runs a spec with
    the profile's ``threads`` or all cores of its machine (:func:`covid_lib.runs.run_threads`).
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
    precision: str | None = None
    freeze: str | None = None
    adapt: int | None = None
    plant: str | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        if self.arch not in CLASSIFIERS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose from {', '.join(CLASSIFIERS)}")
        known = {**COMPOSITIONS, **SOURCE_SPLITS} if self.task == "covid" else PRETRAIN_SOURCES
        if self.composition not in known:
            what = "composition" if self.task == "covid" else "pre-training source"
            raise ValueError(f"unknown {what} {self.composition!r}; choose from {', '.join(known)}")
        if self.pretrain is not None and (self.task == "pretrain" or self.pretrain not in PRETRAIN_SOURCES):
            raise ValueError(f"pretrain must be None or one of {PRETRAIN_SOURCES} (covid task only), "
                             f"got {self.pretrain!r}")
        if self.pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {self.pipeline!r}; choose from {', '.join(PIPELINES)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)} or None")
        if (self.freeze is not None or self.adapt is not None) and self.composition not in SOURCE_SPLITS:
            raise ValueError(f"freeze and adapt apply to source splits ({', '.join(SOURCE_SPLITS)}) only")
        if self.freeze is not None and (self.freeze not in FREEZES or self.pretrain is None):
            raise ValueError(f"freeze must be None or one of {FREEZES} with a pre-trained encoder, got {self.freeze!r}")
        if self.adapt is not None and (not isinstance(self.adapt, int) or self.adapt < 1):
            raise ValueError(f"adapt must be None or a positive number of images per class, got {self.adapt!r}")
        if self.plant is not None:
            if self.plant not in MARKS or self.task != "covid":
                raise ValueError(f"plant must be None or one of {', '.join(MARKS)} (covid task only), "
                                 f"got {self.plant!r}")
            if self.composition in SOURCE_SPLITS:  # the source-split kind would ignore it (issue 18)
                raise ValueError(f"plant applies to the compositions of Table I, not to the source split "
                                 f"{self.composition!r}")
        get_profile(self.profile)

    @property
    def profile_settings(self) -> Profile:
        return get_profile(self.profile)

    @property
    def effective_precision(self) -> str:
        """The precision asked for: the spec's, else the profile's."""
        return self.precision or self.profile_settings.precision

    def resolved(self, data_root: str | os.PathLike | None = None) -> "RunSpec":
        """This spec with ``input_size``, ``epochs`` and ``data_version`` filled in (same run id
        as the unresolved spec once the data version is filled)."""
        p = self.profile_settings
        version = self.data_version
        if not version:
            version = data_version(data_root, sources=self.data_sources())
        return replace(self, input_size=self.input_size or p.input_size, epochs=self.epochs or p.epochs,
                       data_version=version)

    def data_sources(self) -> tuple[str, ...]:
        """The sources whose data version this run hashes: the six study sources, plus the
        pre-training-only ones (``kermany_full``) the run or its parent trains on. Runs that do not
        use ``kermany_full`` keep the data version, and so the run id, they had before it existed."""
        extra = tuple(s for s in PRETRAIN_ONLY_SOURCES if s in (self.composition, self.pretrain))
        return STUDY_SOURCES + extra

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
        return replace(self, task="pretrain", composition=self.pretrain, pretrain=None, freeze=None, adapt=None,
                       plant=None)

    def parent_spec(self) -> "RunSpec | None":
        """The run whose checkpoint this run starts from: the source-split run without ``adapt``
        for an adaptation, else :meth:`pretrain_spec`."""
        return replace(self, adapt=None) if self.adapt is not None else self.pretrain_spec()

    def identity(self) -> dict:
        """What the run id hashes: the spec, the profile's settings (its description aside) and, for
        COVID runs, :data:`covid_lib.data.compose.COMPOSE_VERSION`."""
        settings = self.profile_settings.to_dict()
        settings.pop("description")
        spec = asdict(self)
        spec["input_size"] = self.input_size or self.profile_settings.input_size
        spec["epochs"] = self.epochs or self.profile_settings.epochs
        for key in ("precision", "freeze", "adapt", "plant"):  # hashed only when set: older ids stay
            if spec[key] is None:
                del spec[key]
        if self.task == "covid":  # composition rules; pre-trainings do not use them
            spec["compose_version"] = COMPOSE_VERSION
            if self.composition not in COMPOSITIONS:
                spec["source_split_version"] = SOURCE_SPLIT_VERSION
        return {"spec": spec, "profile": settings}

    @property
    def run_id(self) -> str:
        """``<task>-<set>-<arch>-<pretrain|scratch>-<profile>-s<seed>-<10 hex digits>``; stable
        across processes and machines (sha256 of sorted JSON)."""
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        digest = hashlib.sha256(blob).hexdigest()[:10]
        name = re.sub(r"[^A-Za-z0-9+-]+", "", self.composition.replace("&", "+"))
        extra = ("-frozen" if self.freeze else "") + (f"-adapt{self.adapt}" if self.adapt else "") \
            + (f"-plant{self.plant}" if self.plant else "")
        return f"{self.task}-{name}-{self.arch}-{self.pretrain or 'scratch'}{extra}-{self.profile}-s{self.seed}-{digest}"
