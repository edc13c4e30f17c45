"""Section 6 of an audit (``--model``): a trained classifier's scores and saliency on the manifest.

**Which model** (:func:`resolve_model`): ``--model`` takes one of

- a run id of this project (``covid-CORDA+ChestXRay-resnet18-kermany_full-cpu-s0-9b18846ae0``),
  whose record is under :func:`covid_lib.runs.results_dir` and whose checkpoint is cached
  (:func:`covid_lib.runs.checkpoint_path`);
- a record folder (``results/<run_id>``, with ``spec.json``) or a checkpoint folder
  (``$COVID_LIB_CACHE/runs/<run_id>``, with ``model.pt``);
- a checkpoint file written by :mod:`covid_lib.runs` (``model.pt``).

The checkpoint carries the architecture, input size and training mean/std; the run's record
(``spec.json``, found by the checkpoint's run id) gives its pre-processing chain, so the images go
through the same chain, crop and normalisation as the run's own test images. A checkpoint whose
record cannot be found is refused (its chain is unknown), as is a model that is not two-class.
Every refusal is one line (:class:`ModelError`).

**Which label is positive**: the model's class 1 (COVID+). Labels 0/1 keep their meaning; with
class names, the one class whose name contains "covid" (or is "positive") is the positive class
and every other class is negative.

**Which images**: the test split when the manifest has one (the model was presumably fitted on
the rest), else every image; at most ``settings.model_images`` (whole patients, drawn at random),
and the saliency maps on at most ``settings.saliency_images`` of them.

**The measures** (rows of the audit's measure table, section ``6 model``; the flag rule of
:mod:`covid_lib.audit.findings` unchanged: the lower end of the 95% patient interval more than
``MARGIN`` above the null):

- *AUC gap* of each level of each metadata factor (source, view, era, age group, sex, file
  format, image size; :func:`covid_lib.audit.measures.factor_levels`) with both classes: the
  model's AUC on the other images (on all images when the others lack a class, e.g. a source
  with both classes beside sources of one) minus its AUC on this level; one cluster
  bootstrap over the patients of all scored images (:func:`covid_lib.stats.bootstrap_replicates`,
  :func:`covid_lib.stats.weighted_auc`). Null 0: flagged, the model is clearly worse on that group.
- *Source within a class*: for each class and source, the AUC with which the model's score
  tells the images of the COVID-richer side (this source, or the other sources together, by
  their share of positives in the scored images) from the rest, within that class, with its
  interval by the book's one AUC rule (:func:`covid_lib.metrics.auc_estimate`: the patient
  bootstrap, DeLong when each patient of that class has one image). Null 0.5:
  flagged, the scores follow the source beyond the label (a source shortcut, or a real
  difference between the sources' patients).
- *Lung shortfall* of the saliency: the lung's share of the image (what a uniform map puts in the
  lungs) minus the share of the Grad-CAM map's mass inside the U-Net lung mask, the map taken at
  the deepest layer with at least 16x16 cells (the book's saliency chapter)
  (:mod:`covid_lib.analysis.saliency`: :func:`~covid_lib.analysis.saliency.in_lung_share`,
  :func:`~covid_lib.analysis.saliency.share_summary`), overall and per class. Null 0: flagged,
  the maps favour what lies outside the lungs. Maps that place nothing (no positive mass,
  constant) and images without a lung mask are left out and counted in the note.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.std import tqdm

from covid_lib import stats
from covid_lib.analysis.saliency import (COVID_CLASS, MIN_CELLS, in_lung_share, input_masks, lung_area_share,
                                         map_status, resolve_layer, saliency_maps, share_summary, status_counts)
from covid_lib.audit.manifest import AuditManifest
from covid_lib.audit.measures import MEASURE_COLUMNS, AuditSettings, cap_patients, factor_levels
from covid_lib.metrics import auc_estimate
from covid_lib.preprocess import get_pipeline, preprocess_rows
from covid_lib.runs import Record, checkpoint_path, model_from_checkpoint
from covid_lib.runs.fidelity import CHECKPOINT_NOTE, differs, mismatch_message
from covid_lib.train import load_images, make_dataset, predict

SECTION = "6 model"
#: A metadata level (and the rest) needs this many images of each class for its AUC gap. Under
#: label permutations of CORDA&ChestXRay's test set (``scripts/audit_validation.py --model``) a
#: minimum of 5 gave 1.4% false alarms per measure but 23% of audits with one (22 gaps each);
#: 10 gives 0.9% and 11% (16 gaps); the percentile interval of a small group's AUC is too narrow.
MIN_PER_CLASS = 10
#: A side of a within-class source comparison needs this many images (as :data:`MIN_PER_CLASS`).
MIN_SOURCE_IMAGES = 10
#: Class names taken as the model's positive class (besides any name containing "covid").
POSITIVE_NAMES = ("positive", "pos", "covid+")
SALIENCY_METHOD = "gradcam"
GROUP_COLUMNS = ["factor", "level", "n_images", "n_patients", "n_negative", "n_positive", "auc", "auc_low",
                 "auc_high", "mean_score_negative", "mean_score_positive"]


class ModelError(ValueError):
    """The model cannot be audited (the message is one line)."""


@dataclass
class AuditModel:
    """A resolved ``--model``: the network (eval mode), its checkpoint metadata (``arch``,
    ``mean``, ``std``, ``input_size``, ``resize_size``, ``run_id``) and its chain's name."""

    model: object
    meta: dict
    pipeline: str
    checkpoint: Path
    notes: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id", ""))

    def describe(self) -> str:
        return (f"run `{self.run_id}` ({self.meta['arch']}, chain `{self.pipeline}` at {self.meta['resize_size']} px, "
                f"input {self.meta['input_size']} px)")


# ------------------------------------------------------------------------------------ resolving
def _record_info(run_id: str, results: Path | None) -> dict:
    return Record.of(run_id, results=results).info


def _locate(name: str, results, storage) -> tuple[Path, Path | None]:
    """``(checkpoint path, results folder or None)`` of a ``--model`` value (module docstring)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve(), Path(results) if results is not None else None
    if path.is_dir():
        if (path / "model.pt").is_file():
            return (path / "model.pt").resolve(), Path(results) if results is not None else None
        if (path / "spec.json").is_file():
            run_id = json.loads((path / "spec.json").read_text()).get("run_id", path.name)
            ckpt = checkpoint_path(run_id, storage)
            if not ckpt.is_file():
                raise ModelError(f"run {run_id} (record {path}) has no cached checkpoint at {ckpt}; restore it "
                                 "with covid_lib.runs.restore_checkpoint or retrain it")
            return ckpt, path.resolve().parent
        raise ModelError(f"--model {name}: the folder holds neither model.pt nor a run record (spec.json)")
    record = Record.of(name, results=results, storage=storage)
    if record.checkpoint is not None:
        return record.checkpoint, Path(results) if results is not None else None
    if record.recorded:
        raise ModelError(f"run {name} is recorded but its checkpoint is not cached at "
                         f"{checkpoint_path(name, storage)}; restore it with covid_lib.runs.restore_checkpoint "
                         "or retrain it")
    raise ModelError(f"--model {name}: no such file or folder, and no run of that id under {record.path.parent}")


def resolve_model(name: str, *, device: str = "cpu", results: str | os.PathLike | None = None,
                  storage: str | os.PathLike | None = None) -> AuditModel:
    """The model a ``--model`` value names (module docstring), loaded on ``device``.

    Raises:
        ModelError: nothing by that name, no cached checkpoint, an unreadable checkpoint, no
            record to tell the chain, or not a two-class model.
    """
    ckpt, results_folder = _locate(str(name), results, storage)
    try:
        model, meta = model_from_checkpoint(ckpt, device)
    except Exception as err:  # noqa: BLE001 (torch raises many kinds for a file that is not a checkpoint)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"cannot read {ckpt} as a covid_lib checkpoint: {first}") from None
    if int(meta["num_classes"]) != 2:
        raise ModelError(f"run {meta['run_id']} has {meta['num_classes']} classes: the audit scores two-class "
                         "(COVID-/COVID+) models")
    info = _record_info(meta["run_id"], results_folder)
    if not info:
        raise ModelError(f"no record (spec.json) of run {meta['run_id']} under "
                         f"{results_folder or 'the results folder'}: its pre-processing chain is unknown")
    pipeline = info.get("spec", {}).get("pipeline") or info.get("pipeline", {}).get("name")
    notes = []
    recorded_hash = info.get("pipeline_hash")
    now = get_pipeline(pipeline, image_size=int(meta["resize_size"])).resolved().hash
    if recorded_hash and recorded_hash != now:
        notes.append(f"the chain `{pipeline}` hashes to {now} here, {recorded_hash} when the run was trained: "
                     "its images may differ slightly from the run's own")
    stored = ckpt.with_name(CHECKPOINT_NOTE)
    if stored.is_file() and differs(note := json.loads(stored.read_text())):
        notes.append(f"{mismatch_message(note)}: the audit scores this retraining, not the recorded model")
    return AuditModel(model, meta, pipeline, ckpt, notes)


def positive_labels(manifest: AuditManifest) -> np.ndarray:
    """1 where a row is of the model's positive class (module docstring), else 0.

    Raises:
        ModelError: class names none or several of which name the positive class.
    """
    classes = manifest.classes
    if classes == ["0", "1"]:
        return manifest.rows["label"].to_numpy(int)
    lowered = [c.strip().lower() for c in classes]
    pos = [i for i, c in enumerate(lowered) if "covid" in c.replace("non-covid", "").replace("non_covid", "")
           or c in POSITIVE_NAMES]
    if len(pos) != 1:
        raise ModelError(f"with --model, the positive (COVID+) class must be clear: got classes "
                         f"{', '.join(classes)}; write the labels as 0/1 (1 = COVID+)")
    return (manifest.rows["label"].to_numpy(int) == pos[0]).astype(int)


def model_rows(manifest: AuditManifest, max_images: int, *, seed: int = 0) -> pd.DataFrame:
    """The rows the model scores: the test split when there is one, else all; capped by whole patients."""
    rows = manifest.rows
    if manifest.has_test_split:
        rows = rows[rows["split"] == "test"]
    return cap_patients(rows, max_images, seed=seed)


# -------------------------------------------------------------------------------------- scoring
@dataclass
class ModelOutputs:
    """Per image: ``table`` (the scored rows with ``y`` (1 = positive), ``score``, ``has_mask``,
    ``mapped`` (a saliency map was made), ``map_status``
    (:func:`covid_lib.analysis.saliency.map_status`), ``share``, ``baseline``; NaN where not
    measured); ``rejections``; ``layer``: where the maps were taken; with ``keep_maps``, ``maps``
    and ``masks`` (N, input, input) of the ``mapped`` rows, in table order (e.g. for a null that
    moves the maps: ``scripts/audit_validation.py``)."""

    table: pd.DataFrame
    rejections: pd.DataFrame
    layer: str = ""
    maps: np.ndarray | None = None
    masks: np.ndarray | None = None


def score_model(am: AuditModel, rows: pd.DataFrame, y: np.ndarray, *, saliency_images: int, seed: int = 0,
                device: str = "cpu", batch_size: int = 16, progress: bool = False,
                keep_maps: bool = False) -> ModelOutputs:
    """The model's COVID+ probability on ``rows`` and its Grad-CAM in-lung share on at most
    ``saliency_images`` of them (whole patients), through the run's chain, crop and normalisation.
    The maps are taken at the deepest layer with at least 16x16 cells (as the book's saliency
    chapter: :func:`covid_lib.analysis.saliency.resolve_layer` ``"auto"``); a map that places
    nothing (no positive mass, constant) or lacks a lung mask is counted, not measured.

    The images are those of :func:`covid_lib.train.load_images` on these rows (the chain run on
    them, uncached, as a capped run does); the lung mask is the ``paper`` chain's at the run's
    ``resize_size`` centre-cropped like the images (as :func:`covid_lib.analysis.saliency.lung_masks`).
    """
    size, crop = int(am.meta["resize_size"]), int(am.meta["input_size"])
    rows = rows.reset_index(drop=True).assign(y=np.asarray(y, int))
    chain = get_pipeline(am.pipeline, image_size=size).resolved()
    paper = get_pipeline("paper", image_size=size).resolved()
    lungs_imgs, lung_index, lung_rej, lung_masks_ = preprocess_rows(rows, paper, device=device, return_masks=True)
    if chain.hash == paper.hash:  # the run's chain is the paper chain: its images come with the masks
        by_id = dict(zip(lung_index["image_id"].astype(str), lungs_imgs))
        keep = rows["image_id"].astype(str).isin(by_id).to_numpy()
        kept = rows[keep]
        images = np.stack([by_id[i] for i in kept["image_id"].astype(str)]) if keep.any() else \
            np.zeros((0, size, size), np.uint8)
        rejected = lung_rej
    else:
        images, kept = load_images(rows, chain, whole_sources=False)
        rejected = pd.DataFrame({"image_id": rows.loc[~rows.index.isin(kept.index), "image_id"],
                                 "step": "chain", "reason": f"rejected by the chain {am.pipeline}"})
    kept = kept.assign(label=kept["y"])  # the dataset's label: the model's positive class
    data = make_dataset(kept, images, input_size=crop, mean=am.meta["mean"], std=am.meta["std"])
    probs, _, _ = predict(am.model, data, device=device)
    table = kept.reset_index(drop=True)
    table["score"] = probs[:, COVID_CLASS] if len(table) else np.zeros(0)
    mask_by_id = dict(zip(lung_index["image_id"].astype(str), lung_masks_))
    table["has_mask"] = table["image_id"].astype(str).isin(mask_by_id)
    table["share"], table["baseline"], table["mapped"] = np.nan, np.nan, False
    sal = cap_patients(table, saliency_images, seed=seed).index if len(table) else pd.Index([])
    sal = np.flatnonzero(table.index.isin(sal))
    try:
        layer, cells = resolve_layer(am.model, crop, "auto", MIN_CELLS)
    except ValueError:  # no layer with 16x16 cells at this input: the last feature map, coarser
        layer, cells = resolve_layer(am.model, crop, None)
    table["map_status"] = ""
    maps = masks = None
    if len(sal):
        sub = make_dataset(table.iloc[sal], images[sal], input_size=crop, mean=am.meta["mean"], std=am.meta["std"])
        maps = []
        n_batches = -(-len(sal) // batch_size)
        for x, _, _ in tqdm(sub.batches(batch_size, device=device), total=n_batches, desc="saliency maps",
                            disable=not progress, leave=False):
            maps.append(saliency_maps(am.model, x, SALIENCY_METHOD, layer=layer))
        maps = np.concatenate(maps)
        side = size
        full = np.stack([mask_by_id.get(i, np.zeros((side, side), bool)) for i in table["image_id"].iloc[sal].astype(str)])
        masks = input_masks(full, crop)
        has = table["has_mask"].to_numpy()[sal]
        status = map_status(maps, has)
        table.loc[sal, "map_status"] = status
        table.loc[sal, "share"] = np.where(status == "measured", in_lung_share(maps, masks), np.nan)
        table.loc[sal, "baseline"] = np.where(has, lung_area_share(masks), np.nan)
        table.loc[sal, "mapped"] = True
    if not keep_maps:
        maps = masks = None
    return ModelOutputs(table, rejected, f"{layer} ({cells}x{cells} cells)", maps, masks)


# ------------------------------------------------------------------------------------- measures
def _row(measure: str, target: str, metric: str, value, low, high, chance, table: pd.DataFrame, note: str) -> dict:
    return {"section": SECTION, "measure": measure, "target": target, "metric": metric, "value": float(value),
            "low": float(low), "high": float(high), "chance": float(chance), "n_images": len(table),
            "n_patients": int(table["patient_id"].nunique()), "note": note}


def _est(value, low, high) -> str:
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def auc_gap(y, score, in_group, groups, *, n_boot: int, seed: int = 0, against: str = "rest") -> dict:
    """AUC of the rest (``against="all"``: of all images), of the group, and the first minus the
    group's, each with a percentile interval from one patient-cluster bootstrap over all images
    (a patient on both sides is resampled once)."""
    y, s, g = np.asarray(y, int), np.asarray(score, float), np.asarray(in_group, bool)
    other = np.ones_like(g) if against == "all" else ~g

    def stat(w: np.ndarray) -> np.ndarray:
        rest = stats.weighted_auc(y[other], s[other], w[:, other])
        grp = stats.weighted_auc(y[g], s[g], w[:, g])
        return np.column_stack([rest, grp, rest - grp])

    point = stat(np.ones((1, len(y))))[0]
    reps = stats.bootstrap_replicates(stat, len(y), groups=np.asarray(groups).astype(str), n_boot=n_boot, seed=seed)
    out = {}
    for j, name in enumerate(("rest", "group", "gap")):
        low, high, _ = stats.percentile_interval(reps[:, j])
        out.update({name: float(point[j]), f"{name}_low": low, f"{name}_high": high})
    return out


def group_table(table: pd.DataFrame, *, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """The model's scores per level of each factor: images, patients, per class, AUC with its
    interval (both classes present; :func:`covid_lib.metrics.auc_estimate`: the patient bootstrap,
    DeLong when each patient has one image), mean score per class; an ``all images`` row first."""
    levels = factor_levels(table)
    levels.insert(0, "all", "all images")
    out = []
    for factor in levels:
        for level, idx in levels.groupby(factor).groups.items():
            t = table.loc[idx]
            y, s = t["y"].to_numpy(int), t["score"].to_numpy(float)
            auc = auc_estimate(y, s, groups=t["group_id"].astype(str).to_numpy(), n_boot=n_boot, seed=seed)
            out.append({"factor": factor, "level": level, "n_images": len(t), "n_patients": t["patient_id"].nunique(),
                        "n_negative": int((y == 0).sum()), "n_positive": int((y == 1).sum()),
                        "auc": auc.value, "auc_low": auc.low, "auc_high": auc.high,
                        "mean_score_negative": float(s[y == 0].mean()) if (y == 0).any() else np.nan,
                        "mean_score_positive": float(s[y == 1].mean()) if (y == 1).any() else np.nan})
    return pd.DataFrame(out, columns=GROUP_COLUMNS)


def group_gaps(table: pd.DataFrame, *, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """The AUC-gap measures (module docstring): one row per level with enough images of both
    classes, against the rest when it has enough of both classes too, else against all images
    (e.g. a source with both classes beside sources with one: is the model worse within it?)."""
    levels = factor_levels(table)
    y, s = table["y"].to_numpy(int), table["score"].to_numpy(float)
    groups = table["group_id"].astype(str).to_numpy()
    out = []
    for factor in levels:
        if levels[factor].nunique() < 2:
            continue
        for level in sorted(levels[factor].unique()):
            g = (levels[factor] == level).to_numpy()
            if min((y[g] == 0).sum(), (y[g] == 1).sum()) < MIN_PER_CLASS or g.all():
                continue
            against = "rest" if min((y[~g] == 0).sum(), (y[~g] == 1).sum()) >= MIN_PER_CLASS else "all"
            r = auc_gap(y, s, g, groups, n_boot=n_boot, seed=seed, against=against)
            where = "the rest" if against == "rest" else "all images"
            note = (f"AUC {_est(r['group'], r['group_low'], r['group_high'])} on {factor} {level} "
                    f"({int(g.sum())} images), {_est(r['rest'], r['rest_low'], r['rest_high'])} on {where}")
            out.append(_row(f"model AUC, {factor} = {level}", "label", f"AUC gap ({against} - group)", r["gap"],
                            r["gap_low"], r["gap_high"], 0.0, table, note))
    return pd.DataFrame(out, columns=MEASURE_COLUMNS)


def source_separation(table: pd.DataFrame, class_names: tuple[str, str], *, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """The within-class source measures (module docstring): with two sources one row per class,
    with more one per class and source (that source against the others)."""
    src = table["source"].astype(str)
    sources = sorted(src.unique())
    if len(sources) < 2:
        return pd.DataFrame(columns=MEASURE_COLUMNS)
    share = table.groupby(src)["y"].mean()
    out = []
    for c in (0, 1):
        in_c = (table["y"] == c).to_numpy()
        for source in sources[:1] if len(sources) == 2 else sources:
            this = (src == source).to_numpy()
            rest_share = table.loc[~this, "y"].mean()
            if share[source] == rest_share:
                continue  # no difference in positives: nothing for a shortcut to learn
            richer = this if share[source] > rest_share else ~this
            a, b = in_c & richer, in_c & ~richer
            if min(a.sum(), b.sum()) < MIN_SOURCE_IMAGES:
                continue
            t = table[in_c]
            est = auc_estimate(richer[in_c].astype(int), t["score"].to_numpy(float),
                               groups=t["group_id"].astype(str).to_numpy(), n_boot=n_boot, seed=seed)
            value, low, high = est.value, est.low, est.high
            names = (source, "the other sources") if len(sources) > 2 else tuple(sources)
            rich_name, poor_name = (names[0], names[1]) if share[source] > rest_share else (names[1], names[0])
            hi_share = max(share[source], rest_share)
            lo_share = min(share[source], rest_share)
            note = (f"{class_names[c]} images: {int(a.sum())} from {rich_name} ({hi_share:.0%} positive), "
                    f"{int(b.sum())} from {poor_name} ({lo_share:.0%} positive)")
            out.append(_row(f"model score within {class_names[c]}: {rich_name} vs {poor_name}", "source", "AUC",
                            value, low, high, 0.5, t, note))
    return pd.DataFrame(out, columns=MEASURE_COLUMNS)


def lung_shortfall(table: pd.DataFrame, class_names: tuple[str, str], *, n_boot: int, seed: int = 0,
                   layer: str = "") -> pd.DataFrame:
    """The saliency measures (module docstring): overall and per class, on the images with a map."""
    tried = table[table["mapped"]]
    if not len(tried):
        return pd.DataFrame(columns=MEASURE_COLUMNS)
    out = []
    for name, part in [("all images", tried), *[(class_names[c], tried[tried["y"] == c]) for c in (0, 1)]]:
        if not len(part):
            continue
        r = share_summary(part["share"].to_numpy(float), part["baseline"].to_numpy(float),
                          part["group_id"].astype(str).to_numpy(), n_boot=n_boot, seed=seed)
        if not r["n"]:
            continue
        counts = status_counts(part["map_status"]) if "map_status" in part else {}
        why = ", ".join(f"{counts[f'n_{k}']} {k.replace('_', ' ')}" for k in ("no_positive_mass", "constant", "no_mask")
                        if counts.get(f"n_{k}")) or "no mass or no lung mask"
        note = (f"in-lung share {_est(r['share'], r['share_low'], r['share_high'])}, lung area "
                f"{_est(r['baseline'], r['baseline_low'], r['baseline_high'])} ({SALIENCY_METHOD}"
                + (f" at {layer}" if layer else "") + f", {r['n']} maps"
                + (f"; {r['n_excluded']} not measurable: {why}" if r["n_excluded"] else "") + ")")
        used = part[np.isfinite(part["share"]) & np.isfinite(part["baseline"])]
        out.append(_row(f"saliency in the lungs, {name}", "lungs", "lung shortfall (area - share)",
                        -r["excess"], -r["excess_high"], -r["excess_low"], 0.0, used, note))
    return pd.DataFrame(out, columns=MEASURE_COLUMNS)


def class_names(manifest: AuditManifest) -> tuple[str, str]:
    """Display names of the model's negative and positive class on this manifest."""
    if manifest.classes == ["0", "1"]:
        return ("negative (0)", "positive (1)")
    y = positive_labels(manifest)
    pos = manifest.rows.loc[y == 1, "label_name"].iloc[0]
    neg = sorted(set(manifest.rows.loc[y == 0, "label_name"]))
    return (" or ".join(neg), pos)


def model_audit(manifest: AuditManifest, am: AuditModel, *, settings: AuditSettings, seed: int = 0,
                device: str = "cpu", progress: bool = False) -> dict[str, pd.DataFrame]:
    """Section 6: ``measures`` (AUC gaps, within-class source AUCs, lung shortfalls), ``groups``
    (:func:`group_table`), ``scores`` (one row per scored image) and ``rejections``."""
    y = positive_labels(manifest)
    rows = manifest.rows.assign(y=y)
    rows = model_rows(type(manifest)(rows, manifest.classes, manifest.unreadable, manifest.given, manifest.path,
                                     manifest.notes), settings.model_images, seed=seed)
    outputs = score_model(am, rows, rows["y"].to_numpy(), saliency_images=settings.saliency_images, seed=seed,
                          device=device, progress=progress)
    t = outputs.table
    names = class_names(manifest)
    n_boot = settings.n_boot
    parts = [group_gaps(t, n_boot=n_boot, seed=seed), source_separation(t, names, n_boot=n_boot, seed=seed),
             lung_shortfall(t, names, n_boot=n_boot, seed=seed, layer=outputs.layer)]
    measures = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else \
        pd.DataFrame(columns=MEASURE_COLUMNS)
    cols = ["image_id", "source", "patient_id", "split", "label_name", "y", "score", "map_status", "share",
            "baseline"]
    return {"measures": measures, "groups": group_table(t, n_boot=n_boot, seed=seed), "scores": t[cols],
            "rejections": outputs.rejections, "layer": outputs.layer}
