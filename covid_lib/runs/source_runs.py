"""Computing a source-split run: train on one source per class, score seen and unseen sources,
and adapt a finished run to the unseen sources (Ben Ahmed et al. 2021, Fig. 4 and Table 4).

:func:`covid_lib.runs.compute` hands a spec here (this module registers itself in
:data:`covid_lib.runs.execution.RUN_KINDS`) when its ``composition`` is a key of
:data:`covid_lib.data.SOURCE_SPLITS`. Three kinds of run share this code:

- **from scratch** or **fine-tuned** (``pretrain`` set): the whole network trained as every
  other run of the project (:func:`covid_lib.train.fit`);
- **frozen** (``freeze="encoder"``): the pre-trained encoder frozen except its batch-norm layers,
  with Ben Ahmed et al.'s small head (:mod:`covid_lib.models.heads`), their Finetune1;
- **adapted** (``adapt=k``): the finished run without ``adapt`` (:meth:`RunSpec.parent_spec`)
  trained further on ``k`` images per class of the unseen sources' train patients, selected on
  ``k`` per class of their validation patients (:func:`covid_lib.data.adapt_rows`), with the
  parent's normalisation. Their Table 4 used 80 per class.

Every run scores the test patients of every part of :data:`covid_lib.data.PARTS`
(``scores.csv``, ``test_set`` = the part) and records the metrics table
(:func:`covid_lib.evaluate.metrics_table`) of ``seen`` (the training parts' test patients),
``unseen`` (the unseen parts' test patients) and of each part alone (one class: sensitivity or
specificity only, AUC undefined).
"""

from __future__ import annotations

import time

import pandas as pd

from covid_lib.data import PARTS, SOURCE_SPLITS, adapt_rows, global_splits, part_rows, source_split_rows
from covid_lib.evaluate import metrics_table, score_images
from covid_lib.models.heads import freeze_encoder, trainable_parameters, with_small_head
from covid_lib.runs.execution import (RUN_KINDS, _fit_summary, _initial_model, _spec_record, _timings,
                                      _train_config, score_test_sets, split_datasets)
from covid_lib.runs.records import RunArtifacts, checkpoint_bytes, model_from_checkpoint
from covid_lib.runs.spec import RunSpec
from covid_lib.train import fit, seed_everything

SEEN, UNSEEN = "seen", "unseen"


def _start_model(spec: RunSpec, checkpoint: bytes | None):
    """The model to train and the normalisation it needs (None, None: the training set's)."""
    if spec.adapt is not None:  # continue the finished source-split run
        parent = spec.parent_spec()
        model, meta = model_from_checkpoint(checkpoint)
        if meta["run_id"] != parent.run_id:
            raise ValueError(f"checkpoint of run {meta['run_id']} given, {spec.run_id} needs {parent.run_id}")
        seed_everything(spec.seed)
        model = freeze_encoder(model) if spec.freeze else model
        return model.train(), meta["mean"], meta["std"]
    model = _initial_model(spec, 2, checkpoint)
    if spec.freeze:
        seed_everything(spec.seed)
        model = freeze_encoder(with_small_head(model, 2))
    return model, None, None


def _score_parts(spec: RunSpec, model, mean: float, std: float, data_root, device: str):
    """Scores on the test patients of every part, with each part's expected and scored counts."""
    splits = global_splits(data_root, seed=spec.split_seed)
    test_rows = {name: part_rows(splits, name).query("split == 'test'") for name in PARTS}
    return score_test_sets(spec, model, mean, std, test_rows, data_root, device)


def is_source_split(spec: RunSpec) -> bool:
    """Whether ``spec`` trains on a source split (:data:`covid_lib.data.SOURCE_SPLITS`)."""
    return spec.task == "covid" and spec.composition in SOURCE_SPLITS


def evaluation_sets(scores: pd.DataFrame, split: str) -> pd.DataFrame:
    """Part scores (``test_set`` = part) plus their union as ``seen`` and ``unseen`` for ``split``."""
    s = SOURCE_SPLITS[split]
    seen = scores[scores["test_set"].isin(s.train)].assign(test_set=SEEN)
    unseen = scores[scores["test_set"].isin(s.unseen)].assign(test_set=UNSEEN)
    return pd.concat([seen, unseen, scores], ignore_index=True)


def compute_source_split(spec: RunSpec, data_root, device: str, threads: int, progress: bool,
                         checkpoint: bytes | None) -> RunArtifacts:
    """Train (or adapt) on a source split and score every part's test patients (nothing written)."""
    t0 = time.perf_counter()
    split = SOURCE_SPLITS[spec.composition]
    rows = source_split_rows(spec.composition, data_root, seed=spec.split_seed)
    fit_rows = rows[rows["role"] == "train"] if spec.adapt is None else adapt_rows(rows, spec.adapt,
                                                                                    seed=spec.split_seed)
    model, mean, std = _start_model(spec, checkpoint)
    sets = split_datasets(spec, fit_rows, data_root, ("train", "val"), mean=mean, std=std)
    t_data = time.perf_counter() - t0
    result = fit(model, sets["data"]["train"], sets["data"]["val"], _train_config(spec, device, threads, progress))
    train = sets["data"]["train"]
    t1 = time.perf_counter()
    val_name = f"{spec.composition} ({'adaptation ' if spec.adapt else ''}validation)"
    val_scores = score_images(result.model, sets["data"]["val"], sets["rows"]["val"], test_set=val_name, device=device)
    scores, test_sets, test_rejected = _score_parts(spec, result.model, train.mean, train.std, data_root, device)
    table = metrics_table(evaluation_sets(scores, spec.composition), val_scores, seed=spec.seed)
    rejected = pd.concat(sets["rejected"] + test_rejected, ignore_index=True)
    for name, parts in ((SEEN, split.train), (UNSEEN, split.unseen)):
        test_sets[name] = {k: sum(test_sets[p][k] for p in parts) for k in ("n_expected", "n_scored")}
        test_sets[name]["rejected"] = [r for p in parts for r in test_sets[p]["rejected"]]
    trained_on = sets["rows"]["train"].groupby("set").size().to_dict()
    metrics = {"table": table.to_dict("records"), **_fit_summary(result), "splits": sets["n"],
               "test_sets": test_sets, "source_split": spec.composition, "seen_parts": list(split.train),
               "unseen_parts": list(split.unseen), "trained_on": trained_on, "adapt": spec.adapt,
               "freeze": spec.freeze, "trainable_parameters": trainable_parameters(result.model)}
    parent = spec.parent_spec()
    extra = {"pretrain_run": spec.pretrain_spec().run_id if spec.pretrain else None,
             "parent_run": parent.run_id if parent else None, "rejected": len(rejected)}
    files = {"spec.json": _spec_record(spec, device, result, extra), "history.csv": result.history,
             "val_scores.csv": val_scores, "scores.csv": scores, "rejections.csv": rejected,
             "metrics.json": metrics, "timings.json": _timings(t0, t_data, result, time.perf_counter() - t1, threads)}
    return RunArtifacts(spec, files, checkpoint_bytes(result.model, spec, 2, train.mean, train.std))


RUN_KINDS.append((is_source_split, compute_source_split))
