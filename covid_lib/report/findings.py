"""The inputs of the findings beyond the paper (F1-F5, :data:`covid_lib.analysis.protocol.FINDINGS`),
gathered from the chapters' own helpers, and the analysis records of those that need checkpoints.

- F1 (chapter 11) and F3 (chapter 10) read the scores of the ``unseen`` and ``planted`` grids'
  records; F2 (chapter 03) refits the headline metadata baseline (seconds, no run);
- F4 (chapter 12) and F5 (chapter 13) need the models' weights: ``python -m covid_lib book judge
  --findings`` computes their per-image inputs where the checkpoints are cached (never retraining)
  and writes them as analysis records, ``results/claims/f4.csv`` (saliency shares) and
  ``results/claims/f5.csv`` (SOM nodes), each with a ``.json`` naming the runs used; without the
  checkpoints the ``.json`` says why the finding is not evaluated. The judge reads those records.

The estimators are :mod:`covid_lib.analysis.findings`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from covid_lib.analysis import findings as AF
from covid_lib.analysis import protocol as P
from covid_lib.analysis.claims import ClaimEstimate
from covid_lib.grid import grid_specs
from covid_lib.report.records import spec_records
from covid_lib.runs import DIFFERS

#: Where the analysis records of F4 and F5 go, under the results folder (as C4's).
FINDINGS_DIR = "claims"
#: F5's encoders: the ChestXRay pre-training of the chapter's default (the whole set), its
#: fine-tuning composition and seed (protocol F5), and the chapter's image sample and map settings.
F5_SETTINGS = {"pretrain": "kermany_full", "composition": "CORDA&ChestXRay", "seed": 0, "per_source": 80,
               "n_components": 50, "n_perm": 200}
#: F4's models and maps: the ChestXRay pre-training of the chapter's default (the whole set:
#: grids ``ablation_full`` and ``table2_full``, whose checkpoints this machine kind trained; the
#: 563-image models cannot be restored here), its image sample per source and candidate maps, in
#: the order it tries them, and whether the planted-mark check may use planted models trained here
#: that differ from their records (it validates a map; none of its numbers is F4's).
F4_SETTINGS = {"pretrain": "kermany_full", "n_images": 40, "seed": 0,
               "candidates": (("gradcam", "auto"), ("gradinput", None)), "planted_trained_here": True}


def finding_path(finding: str) -> Path:
    """``results/claims/<f4|f5>.csv`` (its ``.json`` beside it)."""
    from covid_lib.runs import results_dir

    return results_dir() / FINDINGS_DIR / f"{finding.lower()}.csv"


def _write_meta(finding: str, meta: dict) -> Path:
    path = finding_path(finding).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return path


def read_meta(finding: str) -> dict | None:
    """The ``.json`` of an F4 / F5 analysis record, None when there is none."""
    path = finding_path(finding).with_suffix(".json")
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------------------------- F1
def f1_estimate(profile: str = "cpu", data_root: str | os.PathLike | None = None,
                results: str | os.PathLike | None = None) -> tuple[ClaimEstimate, pd.DataFrame]:
    """F1 on the ``unseen`` grid's records before adaptation, with each model's within-model drop
    (:func:`covid_lib.report.unseen.seen_unseen_table`, unpaired) in ``extra``; returns the
    estimate and the records it read."""
    from covid_lib.report import unseen as ru

    records = ru.unseen_records(grid_specs("unseen", profile, data_root=data_root), results)
    records = records[records["adapt"].isna()].reset_index(drop=True)
    est = AF.estimate_f1(records)
    table = ru.seen_unseen_table(records, n_boot=P.N_BOOT, seed=P.BOOT_SEED)
    est.extra["within_model_drop"] = table[["split", "variant", "status", "drop", "drop_low", "drop_high"]].to_dict(
        "records")
    return est, records


# --------------------------------------------------------------------------------------------- F2
def f2_estimate(data_root: str | os.PathLike | None = None, *, seed: int = 0) -> ClaimEstimate:
    """F2 from the headline metadata baseline of chapter 03 (logistic regression, no year, no
    missing-value flags), with the by-construction proxies' baseline beside it."""
    from covid_lib.analysis import metadata_baseline as mb
    from covid_lib.data import COMPOSITIONS, compose

    composed = {name: compose(name, data_root, seed=seed) for name in COMPOSITIONS}
    headline = mb.baseline_scores(data_root, seed=seed, model="logistic", composed=composed)
    proxies = mb.baseline_scores(data_root, seed=seed, model="logistic", composed=composed, proxies=True)
    return AF.estimate_f2(headline, with_year=proxies)


# --------------------------------------------------------------------------------------------- F3
def f3_estimate(profile: str = "cpu", data_root: str | os.PathLike | None = None, *, mark: str = "corner",
                results: str | os.PathLike | None = None, keep_threshold_collapsed: bool = False,
                ) -> tuple[ClaimEstimate, pd.DataFrame]:
    """F3 on the ``planted`` grid's ``mark`` records (:func:`covid_lib.report.planted.variant_scores`);
    ``keep_threshold_collapsed``: the collapse sensitivity reading (:func:`covid_lib.analysis.findings.estimate_f3`)."""
    from covid_lib.report import planted as rp

    records = rp.planted_records(grid_specs("planted", profile, data_root=data_root), results)
    records = records[records["mark"] == mark].reset_index(drop=True)
    frames = {r["pipeline"]: rp.variant_scores(r["path"]) if r["path"] is not None else None
              for r in records.to_dict("records")}
    statuses = dict(zip(records["pipeline"], records["status"]))
    return AF.estimate_f3(frames, statuses, keep_threshold_collapsed=keep_threshold_collapsed), records


# --------------------------------------------------------------------------------------------- F4
def f4_specs(profile: str = "cpu", data_root: str | os.PathLike | None = None) -> list:
    """The ResNet-18 models chapter 12 maps (:func:`covid_lib.report.saliency.mapped_specs` at
    :data:`F4_SETTINGS`' pre-training): pipeline ``none`` of grid ``ablation_full`` and their
    ``paper`` twins of grid ``table2_full`` (same arch, pre-training, composition and seed)."""
    from covid_lib.report.saliency import mapped_specs

    return mapped_specs(profile, F4_SETTINGS["pretrain"], data_root=data_root)


def write_f4(profile: str = "cpu", data_root: str | os.PathLike | None = None, *, device: str = "cpu",
             storage: str | os.PathLike | None = None) -> Path:
    """F4's analysis record: the planted-mark check of chapter 12's candidate maps on the cached
    corner-mark checkpoints, then the per-image shares of the first map that passes it on every
    cached model of :func:`f4_specs` that is its record's model. Nothing is retrained: a cached
    checkpoint not yet compared with its record is re-scored on the record's test images first
    (:func:`covid_lib.report.saliency.verify_checkpoints`); one that differs is not mapped
    (``differs_from_record`` in the ``.json``). Planted checkpoints that differ from their records
    are used for the check when :data:`F4_SETTINGS` says so, and the ``.json`` says which
    (``planted_differs_from_record``, with their largest score differences). Without the checkpoints the
    ``.json`` says why F4 is not evaluated."""
    from covid_lib.report import saliency as rsal
    from covid_lib.runs import Record

    specs = f4_specs(profile, data_root)
    planted = [s for s in grid_specs("planted", profile, data_root=data_root) if s.plant == "corner"]
    checked = rsal.verify_checkpoints([*specs, *planted], data_root=data_root, device=device, storage=storage)
    diffs = dict(zip(checked["run_id"], checked["max_abs_diff"]))

    def cached(run_id: str) -> bool:
        return Record.of(run_id, storage=storage).checkpoint is not None

    def usable_here(run_id: str) -> bool:
        return cached(run_id) and not Record.of(run_id, storage=storage).checkpoint_differs

    records = spec_records(specs)
    usable = records[records["status"] == "done"]  # the protocol leaves out models that did not learn or collapsed
    mapped = [r for r in usable["run_id"] if usable_here(r)]
    trained_here = bool(F4_SETTINGS["planted_trained_here"])
    planted_cached = [s.run_id for s in planted if (cached if trained_here else usable_here)(s.run_id)]
    differ = [r for r in usable["run_id"] if Record.of(r, storage=storage).checkpoint_differs]
    planted_differ = {s.run_id: diffs.get(s.run_id) for s in planted
                      if cached(s.run_id) and Record.of(s.run_id, storage=storage).checkpoint_differs}
    meta = {"profile": profile, "runs": dict(zip(records["run_id"], records["status"])), "cached": mapped,
            "planted_runs": [s.run_id for s in planted], "planted_cached": planted_cached, **F4_SETTINGS,
            **({"differs_from_record": differ} if differ else {}),
            **({"planted_differs_from_record": planted_differ} if trained_here and planted_differ else {})}
    finding_path("F4").unlink(missing_ok=True)
    if not mapped:
        meta["not_evaluated"] = (f"checkpoints not cached here: none of the {len(usable)} recorded models chapter 12 "
                                 f"maps has its weights in this machine's cache ({len(records)} expected)")
        return _write_meta("F4", meta)
    if not planted_cached:
        meta["not_evaluated"] = "checkpoints not cached here: no planted corner-mark model to check the maps on"
        return _write_meta("F4", meta)
    views = tuple(dict.fromkeys(F4_SETTINGS["candidates"]))
    check, _ = rsal.planted_check([s for s in planted if s.run_id in planted_cached], data_root=data_root,
                                  device=device, storage=storage, views=views, n_boot=P.N_BOOT, seed=P.BOOT_SEED,
                                  trained_here=trained_here)
    keys = list(dict.fromkeys(check["layer"].dropna())) if "layer" in check else []
    verdicts = {k: rsal.layer_validated(check, k) for k in keys}
    meta["check"] = verdicts
    passed = [i for i, k in enumerate(keys) if verdicts[k]]
    if not passed:
        meta["not_evaluated"] = ("no saliency method finds the planted corner mark where the model uses it "
                                 f"(checked: {', '.join(keys) or 'none measurable'})")
        return _write_meta("F4", meta)
    method, layer = F4_SETTINGS["candidates"][passed[0]]
    rows = rsal.saliency_rows(data_root, n_images=F4_SETTINGS["n_images"], seed=F4_SETTINGS["seed"])
    per_image, _, status = rsal.collect(usable[usable["run_id"].isin(mapped)], specs, rows, data_root=data_root,
                                        device=device, storage=storage, method=method, layer=layer)
    keep = ["run_id", "arch", "pretrain", "pipeline", "composition", "seed", "did_not_learn", "seen", "source",
            "image_id", "group_id", "label", "share", "baseline", "map_status", "layer", "cells"]
    path = finding_path("F4")
    per_image[[c for c in keep if c in per_image]].to_csv(path, index=False)
    meta.update({"method": method, "layer": layer, "map": keys[passed[0]]})
    _write_meta("F4", meta)
    return path


def f4_estimate() -> tuple[ClaimEstimate | None, list[str], str | None]:
    """F4 from its analysis record: the estimate (None when not evaluated), the run ids it
    judges, and why it is not evaluated (None when it is)."""
    meta = read_meta("F4")
    if meta is None:
        return None, [], "no F4 analysis record here (`python -m covid_lib book judge --findings`)"
    if meta.get("not_evaluated"):
        return None, [], meta["not_evaluated"]
    per_image = pd.read_csv(finding_path("F4"), dtype={"image_id": str, "group_id": str, "run_id": str})
    measured = set(per_image["run_id"])
    differ = set(meta.get("differs_from_record", []))
    left = [{"run_id": r, "status_a": DIFFERS if r in differ else s if s != "done" else "no checkpoint",
             "status_b": "usable"} for r, s in meta["runs"].items() if r not in measured]
    est = AF.estimate_f4(per_image, left_out=left)
    est.extra["map"] = meta.get("map")
    if meta.get("planted_differs_from_record"):  # the check's models: trained here, not the recorded ones
        est.extra["planted_differs_from_record"] = meta["planted_differs_from_record"]
    return est, sorted(measured), None


# --------------------------------------------------------------------------------------------- F5
def write_f5(profile: str = "cpu", data_root: str | os.PathLike | None = None, *, device: str = "cpu",
             storage: str | os.PathLike | None = None) -> Path:
    """F5's analysis record: each cached encoder of chapter 13 (:func:`covid_lib.report.landscape.encoder_records`
    at :data:`F5_SETTINGS`) mapped by a seeded SOM of its prepared features on the chapter's test
    images: one row per (encoder role, image) with the image's node. Nothing is retrained."""
    from covid_lib.analysis import embed
    from covid_lib.analysis import landscape as L
    from covid_lib.data import global_splits
    from covid_lib.report import landscape as rl
    from covid_lib.runs import LEARNED

    s = F5_SETTINGS
    records = rl.encoder_records(profile, composition=s["composition"], pretrain=s["pretrain"], seed=s["seed"],
                                 data_root=data_root, storage=storage)
    meta = {"profile": profile, **s, "runs": dict(zip(records["role"], records["run_id"])),
            "status": dict(zip(records["role"], records["status"]))}
    finding_path("F5").unlink(missing_ok=True)
    mappable = records[records["status"].isin(LEARNED)]
    if not {AF.F5_BEFORE, AF.F5_AFTER} <= set(mappable["role"]):
        meta["not_evaluated"] = ("checkpoints not cached here: " + ", ".join(
            f"{r} ({st})" for r, st in zip(records["role"], records["status"]) if st not in LEARNED))
        return _write_meta("F5", meta)
    rows = L.landscape_rows(global_splits(data_root, seed=s["seed"]), per_source=s["per_source"], seed=s["seed"])
    raw, kept = rl.encoder_features(mappable, rows, data_root=data_root, device=device, storage=storage)
    role = dict(zip(mappable["encoder"], mappable["role"]))
    parts = []
    for name, X in raw.items():
        fit = L.fit_som(embed.prepare_features(X, s["n_components"]), seed=s["seed"])
        parts.append(kept[["source", "image_id", "group_id", "label", "age_group"]].assign(
            encoder=role[name], node=fit.nodes))
        meta.setdefault("maps", {})[role[name]] = {"shape": list(fit.shape), "qe": fit.quantization_error,
                                                   "te": fit.topographic_error}
    path = finding_path("F5")
    pd.concat(parts, ignore_index=True).to_csv(path, index=False)
    _write_meta("F5", meta)
    return path


def f5_estimate() -> tuple[ClaimEstimate | None, list[str], str | None]:
    """F5 from its analysis record: the estimate (None when not evaluated), the run ids it judges,
    and why it is not evaluated (None when it is)."""
    meta = read_meta("F5")
    if meta is None:
        return None, [], "no F5 analysis record here (`python -m covid_lib book judge --findings`)"
    if meta.get("not_evaluated"):
        return None, [], meta["not_evaluated"]
    nodes = AF.read_nodes(finding_path("F5"))
    est = AF.estimate_f5(nodes, n_perm=int(meta.get("n_perm", F5_SETTINGS["n_perm"])))
    est.extra["maps"] = meta.get("maps", {})
    used = [meta["runs"][r] for r in sorted(set(nodes["encoder"])) if r in meta["runs"]]
    return est, used, None


def run_paths(run_ids: list[str]) -> pd.DataFrame:
    """``path`` of each run's record folder (for the records' creation times)."""
    from covid_lib.runs import results_dir

    return pd.DataFrame({"run_id": run_ids, "path": [str(results_dir() / r) for r in run_ids]})

