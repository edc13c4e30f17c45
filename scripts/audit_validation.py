"""Validate ``covid_lib audit`` (issue 20): against the chapters, on planted shortcuts, and under nulls.

Sections (``--sections``, all by default; the model's need ``--model RUN``):

- ``compositions``: the book's five compositions exported as manifests; the audit's numbers
  against the chapters' own functions on their own path (:func:`composition_checks`: counts,
  metadata baselines, leakage and duplicates, image-statistics probes raw and after the chain,
  lung-mask baseline), each ``equal`` with its ``max_diff``; and which factors it flags (on
  CORDA&ChestXRay it must flag age and source).
- ``control``: Kermany bacterial vs viral pneumonia (one hospital, children aged 1-5), the
  audit on the true labels, then on ``--permutations`` label permutations (labels shuffled between
  patients, so a patient keeps one label): every flag on a permuted audit is a false alarm. The
  chain's images are computed once and reused. Then the planted marks: the same images under
  permuted labels (no signal) with a corner mark or a gamma shift
  (:func:`covid_lib.preprocess.plant.apply_mark`) burnt into the raw images of one class
  (written to a temporary folder, never the repository): the audit must flag the raw
  image-statistics probe, and only the mark can make it.
- ``model-gaps``: the model's AUC-gap measures (section 6) on its own composition's test set
  under ``--model-permutations`` patient-level label permutations (the model's scores computed
  once): with labels that mean nothing, no group's AUC differs from the rest's.
- ``metadata-null``: every metadata factor alone and the metadata baselines (sections 1, 2) on
  ``--metadata-composition`` with labels permuted between patients, scored on its test split
  (``--null-permutations``) and out-of-fold with the split dropped (``--oof-permutations``).
- ``source-null``: the source factor (section 1) and the image statistics predicting the source
  (section 4) on the control with a source drawn at random for each patient.
- ``model-nulls``: the model's score by source within a class (a source drawn at random per
  patient, two then three sources) and its saliency's lung shortfall (each Grad-CAM map moved by
  a random circular shift, so its expected in-lung share is its lung-area share), on its
  composition's test set and on the control (``--model-null-permutations``).
- ``leakage-null``: the leakage and duplicate measures (section 3) on Kermany bacterial vs viral
  pneumonia (the control, and the whole ChestXRay set) split by patient at random with labels
  permuted between patients (``--leakage-draws``): no patient crosses the splits, so a flag comes
  from the duplicate hash alone (the pairs of two patients it finds are listed with how alike
  the images are); and planted leaks (a patient in two splits, an exact copy under another label,
  near copies: JPEG, rescaled, brighter, cropped), each ``--leakage-plants`` times: each must be
  flagged.
- ``shortfall-positive``: the saliency lung shortfall (section 6) of a model that learnt a corner
  mark outside the lungs (``--planted-model``, grid ``planted``) on its composition's test images
  with the mark planted on the COVID+ images (and, for contrast, without): it must be flagged.

Writes a JSON summary (``--out``, default ``bench/audit_validation.json``) and prints it; with
``--update`` the sections measured replace those of the existing file and the others are kept.
The false-alarm rates come with Wilson 95% intervals: per audit (permutations are independent),
per measure (which treats an audit's correlated measures as independent: indicative only) and
per kind of measure (``by_kind``).

    python scripts/audit_validation.py --sections compositions control --permutations 100
    python scripts/audit_validation.py --sections compositions metadata-null source-null model-nulls \\
        --model covid-CORDA+ChestXRay-resnet18-kermany_full-cpu-s0-9b18846ae0 --null-permutations 300 --update
    python scripts/audit_validation.py --sections leakage-null shortfall-positive --update
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.std import tqdm

from covid_lib.analysis.shortcuts import chain_arrays
from covid_lib.audit import AuditSettings, load_manifest, rank_findings, run_audit
from covid_lib.audit.measures import PROBE_STEPS, probe_rows
from covid_lib.data import read_image
from covid_lib.paths import REPO_ROOT, resolve_data_root
from covid_lib.preprocess.plant import apply_mark
from covid_lib.stats import wilson_interval


def control_manifest(folder: Path, per_class: int, seed: int) -> Path:
    """Kermany bacterial (0) vs viral (1): at most ``per_class`` images per class, whole patients."""
    root = resolve_data_root()
    m = pd.read_csv(root / "kermany" / "manifest.csv", dtype=str, keep_default_na=False)
    m = m[m["kermany_class"].isin(["bacteria", "virus"])]
    parts = []
    for cls, g in m.groupby("kermany_class"):
        patients = g["patient_id"].drop_duplicates().sample(frac=1.0, random_state=seed)
        counts = g.groupby("patient_id").size()[patients]
        keep = set(patients[(counts.cumsum() <= per_class).to_numpy()])
        parts.append(g[g["patient_id"].isin(keep)])
    m = pd.concat(parts)
    out = pd.DataFrame({"path": [str(root / "kermany" / p) for p in m["path"]],
                        "label": (m["kermany_class"] == "virus").astype(int).to_numpy(),
                        "patient_id": m["patient_id"].to_numpy(), "view": m["view"].to_numpy()})
    path = folder / "control.csv"
    out.to_csv(path, index=False)
    return path


def planted_manifest(control, folder: Path, mark: str) -> Path:
    """The control's images with ``mark`` planted on every label-1 image (PNG copies in ``folder``).

    ``control``: an :class:`~covid_lib.audit.AuditManifest`, whose labels may be permuted (a null
    control: then only the mark can make the label predictable)."""
    m = control.rows[["image_path", "label", "patient_id", "view"]].rename(columns={"image_path": "path"})
    (folder / mark).mkdir(exist_ok=True)
    paths = []
    for i, (p, label) in enumerate(tqdm(list(zip(m["path"], m["label"])), desc=f"planting {mark}", leave=False)):
        img = read_image(p)
        if label == 1:
            img = apply_mark(img, mark)
        dest = folder / mark / f"{i}.png"
        Image.fromarray(img).save(dest)
        paths.append(str(dest))
    out = folder / f"planted_{mark}.csv"
    m.assign(path=paths).to_csv(out, index=False)
    return out


def permuted(manifest, seed: int):
    """The manifest with labels shuffled between patients (each patient keeps one label)."""
    rows = manifest.rows.copy()
    per_patient = rows.groupby("patient_id")["label"].first()
    shuffled = pd.Series(np.random.default_rng(seed).permutation(per_patient.to_numpy()), index=per_patient.index)
    rows["label"] = rows["patient_id"].map(shuffled).astype(int)
    rows["label_name"] = rows["label"].map(dict(enumerate(manifest.classes)))
    return type(manifest)(rows, manifest.classes, manifest.unreadable, manifest.given, manifest.path, manifest.notes)


#: The label permutation the marks are planted on (permutation 0 of the control: no flag).
PLANT_PERMUTATION = 1000


def flagged(findings: pd.DataFrame) -> list[str]:
    return [f"{m} -> {t}" for m, t in zip(findings.loc[findings["flag"], "measure"], findings.loc[findings["flag"], "target"])]


# ------------------------------------------------------------------ the book's compositions (item 1)
#: The audit's factor names -> the chapter's (:data:`covid_lib.data.confounders.FACTORS`).
CHAPTER_FACTOR = {"source": "source", "view": "view", "era": "era", "age group": "age group", "sex": "sex",
                  "file format": "format", "image size": "size"}
#: Chapter 10's probe settings at the ``cpu`` profile (its parameters cell): the audit's ``cpu`` profile.
CHAPTER10 = {"image_size": 144, "n_boot": 1000, "Cs": (0.01,)}


def composition_manifest(name: str, folder: Path, seed: int) -> Path:
    """A book composition exported as an audit manifest (patient = the book's patient group;
    original sizes and formats from the book's manifest, since the data root holds converted copies)."""
    from covid_lib.data import compose

    c = compose(name, seed=seed)
    m = pd.DataFrame({"path": c["image_path"], "label": c["label"].astype(int), "patient_id": c["group_id"],
                      **{k: c[k] for k in ("source", "view", "age", "sex", "date", "split", "orig_width",
                                           "orig_height", "orig_format", "orig_mode")}})
    path = folder / f"{name.replace('&', '_')}.csv"
    m.to_csv(path, index=False)
    return path


def _compare(audit, chapter, *, note: str = "", atol: float = 1e-9) -> dict:
    """``audit`` and ``chapter`` values (lists of equal length, NaN allowed) with ``equal`` and ``max_diff``."""
    a, b = np.asarray(audit, float), np.asarray(chapter, float)
    same_shape = a.shape == b.shape
    diff = float(np.nanmax(np.abs(a - b))) if same_shape and np.isfinite(a - b).any() else (0.0 if same_shape else np.inf)
    equal = bool(same_shape and np.allclose(a, b, atol=atol, rtol=0, equal_nan=True))
    out = {"audit": [float(x) for x in a], "chapter": [float(x) for x in b], "equal": equal, "max_diff": diff}
    return {**out, "note": note} if note else out


def count_check(manifest, composed: pd.DataFrame) -> dict:
    """The audit's label x factor counts (:func:`covid_lib.audit.measures.factor_counts`) against
    chapter 03's (:func:`covid_lib.data.confounders.confounder_counts`, summed over its two parts)."""
    from covid_lib.audit.measures import factor_counts
    from covid_lib.data.confounders import confounder_counts

    audit = factor_counts(manifest).melt(id_vars=["factor", "level", "total"], value_vars=manifest.classes,
                                         var_name="label", value_name="n").drop(columns="total")
    audit["factor"] = audit["factor"].map(CHAPTER_FACTOR)
    audit["label"] = audit["label"].astype(int)
    book = confounder_counts(composed).groupby(["factor", "level", "label"])["n"].sum().reset_index()
    both = audit.merge(book, on=["factor", "level", "label"], how="outer", suffixes=("_audit", "_chapter"))
    both[["n_audit", "n_chapter"]] = both[["n_audit", "n_chapter"]].fillna(0)
    diff = both[both["n_audit"] != both["n_chapter"]]
    # the audit's one departure: a view left empty is its own level ("unknown"); the chapter leaves it out
    explained = diff[(diff["factor"] == "view") & (diff["level"] == "unknown") & (diff["n_chapter"] == 0)]
    rest = diff.drop(explained.index)
    out = {"cells": len(both), "unequal_cells": len(diff), "max_diff": float((both["n_audit"] - both["n_chapter"]).abs().max()),
           "equal": bool(rest.empty), "unequal": rest.to_dict("records")}
    if len(explained):
        out["note"] = (f"{int(explained['n_audit'].sum())} images without a view: the audit counts them as view "
                       "'unknown', chapter 03 leaves them out of the view bars; every other cell equal")
    return out


def leakage_check(manifest, composed: pd.DataFrame, book_audit) -> dict:
    """The audit's leakage measures (:func:`covid_lib.audit.measures.leakage`, its own hashes of the
    composition's files) against chapter 01's split audit (:func:`covid_lib.data.audit_splits` over
    every source, hash cache), restricted to the composition: the pairs with both images in it
    (exact, near), the test images whose patient or duplicate (via
    :func:`covid_lib.data.dedup.pairs_in_compositions`) is in its train/val, and the images with
    a duplicate of another label."""
    from covid_lib.audit.measures import leakage
    from covid_lib.data.dedup import pairs_in_compositions

    assert list(manifest.rows["image_path"]) == [str(Path(p).resolve()) for p in composed["image_path"]]
    table, pairs = leakage(manifest)
    table = table.set_index("measure")["value"]
    # the audit's rows back to the book's (source, image_id): the manifest's path is the book's image_path
    key = dict(zip(manifest.rows["image_id"], zip(composed["source"], composed["image_id"])))
    audit_pairs = {(kind, frozenset((key[a], key[b]))) for kind, a, b in zip(pairs["kind"], pairs["image_id_a"],
                                                                            pairs["image_id_b"])}
    ids = set(zip(composed["source"], composed["image_id"]))
    d = book_audit.duplicates
    inside = d[[(sa, ia) in ids and (sb, ib) in ids for sa, ia, sb, ib in
                zip(d["source_a"], d["image_id_a"], d["source_b"], d["image_id_b"])]].copy()
    book_pairs = {(kind, frozenset(((sa, ia), (sb, ib)))) for kind, sa, ia, sb, ib in
                  zip(inside["kind"], inside["source_a"], inside["image_id_a"], inside["source_b"], inside["image_id_b"])}
    split = dict(zip(zip(composed["source"], composed["image_id"]), composed["split"]))
    label = dict(zip(zip(composed["source"], composed["image_id"]), composed["label"]))
    test = composed[composed["split"] == "test"]
    fit_patients = set(composed.loc[composed["split"] != "test", "patient_id"])
    chapter = {"test images whose patient is also in train/val": test["patient_id"].isin(fit_patients).mean()}
    crossing = inside[pairs_in_compositions(inside, composed) != ""]
    for kind in ("exact", "near"):
        k = crossing[crossing["kind"] == kind]
        hit = {(s, i) for s, i in zip(k["source_a"], k["image_id_a"]) if split[(s, i)] == "test"} | \
              {(s, i) for s, i in zip(k["source_b"], k["image_id_b"]) if split[(s, i)] == "test"}
        name = f"test images with an {kind} duplicate in train/val".replace("an near", "a near")
        chapter[name] = len(hit) / len(test)
    other = inside[[label[(sa, ia)] != label[(sb, ib)] for sa, ia, sb, ib in
                    zip(inside["source_a"], inside["image_id_a"], inside["source_b"], inside["image_id_b"])]]
    chapter["images with a duplicate of another label"] = len(
        set(zip(other["source_a"], other["image_id_a"])) | set(zip(other["source_b"], other["image_id_b"]))) / len(composed)
    names = list(chapter)
    out = {"measures": names, **_compare([table[n] for n in names], [chapter[n] for n in names]),
           "pairs": {"audit": len(audit_pairs), "chapter": len(book_pairs),
                     "only_audit": len(audit_pairs - book_pairs), "only_chapter": len(book_pairs - audit_pairs)},
           "pairs by kind": {k: int((inside["kind"] == k).sum()) for k in ("exact", "near")}}
    out["equal"] = out["equal"] and audit_pairs == book_pairs
    return out


def chapter_probe(arrays, step: str, *, features: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chapter 10's probe of the label, fitted on train + val, scored on test: ``(y, score, groups)``
    of the test images that passed ``step``. ``features``: ``"mask"``, the recipe of
    :func:`~covid_lib.analysis.shortcuts.mask_baseline` (:func:`~covid_lib.analysis.shortcuts.mask_features`);
    ``"image"``, the same with the source probe's image features
    (:func:`~covid_lib.analysis.shortcuts.image_features`): no chapter reports the label from image
    statistics, so there the chapter's recipe stands in for a chapter's output."""
    from covid_lib.analysis.shortcuts import fit_probe, image_features, mask_features

    ok = arrays.ok[step]
    rows = arrays.rows[ok].reset_index(drop=True)
    X = image_features(arrays.images[step][ok], side=32, bins=32) if features == "image" else \
        mask_features(arrays.masks[step][ok], side=32)
    y, groups = rows["label"].astype(int).to_numpy(), rows["group_id"].astype(str).to_numpy()
    train, test = rows["split"].isin(["train", "val"]).to_numpy(), (rows["split"] == "test").to_numpy()
    p = fit_probe(X[train], y[train], groups[train], Cs=CHAPTER10["Cs"], seed=seed).predict_proba(X[test])[:, 1]
    return y[test], p, groups[test]


def _intervals(audit, y, p, groups, *, seed: int, chapter=None, method: str = "") -> dict:
    """The audit's AUC row against the chapter's (``chapter``: ``[value, low, high]`` and its interval
    ``method``; default :func:`covid_lib.metrics.binary_metrics` of the scores, as chapter 10 calls
    it). Both take the interval from :func:`covid_lib.metrics.auc_estimate` (the patient bootstrap,
    or DeLong when each test patient has one image; the book's one AUC rule, which chapter 03's
    metadata baselines follow too), so they must be equal."""
    from covid_lib.metrics import binary_metrics

    if chapter is None:
        auc = binary_metrics(y, p, groups=groups, n_boot=CHAPTER10["n_boot"], seed=seed).auc
        chapter, method = [auc.value, auc.low, auc.high], auc.method
    return _compare(audit, chapter, note=f"chapter interval: {method}")


def subset_arrays(arrays, rows: pd.DataFrame):
    """The :class:`~covid_lib.analysis.shortcuts.ChainArrays` of ``rows`` (by ``image_path``) out of larger ones."""
    from covid_lib.analysis.shortcuts import ChainArrays

    where = pd.Series(np.arange(len(arrays.rows)), index=arrays.rows["image_path"])
    idx = where.loc[list(rows["image_path"])].to_numpy()
    ids = set(rows["image_id"])
    return ChainArrays(rows.reset_index(drop=True), {k: v[idx] for k, v in arrays.images.items()},
                       {k: v[idx] for k, v in arrays.masks.items()}, {k: v[idx] for k, v in arrays.ok.items()},
                       arrays.rejections[arrays.rejections["image_id"].isin(ids)].reset_index(drop=True))


def composition_checks(folder: Path, *, n_boot: int, seed: int) -> tuple[dict, dict]:
    """On each of the book's compositions exported as a manifest, the audit's numbers against the
    chapters' functions called on their own path (the chapters' parameters at the ``cpu`` profile):

    - counts (label x factor) against chapter 03's :func:`~covid_lib.data.confounders.confounder_counts`;
    - the metadata baselines against chapter 03's :func:`~covid_lib.analysis.metadata_baseline.baseline_table`
      (own test set, ``n_boot`` resamples as the chapter);
    - leakage and duplicates against chapter 01's :func:`~covid_lib.data.audit_splits` (every source,
      hash cache) restricted to the composition;
    - the image-statistics probe (raw, after the chain) predicting the source against chapter 10's
      :func:`~covid_lib.analysis.shortcuts.source_probe`, and predicting the label against chapter 10's
      recipe (:func:`chapter_label_probe`);
    - the lung-mask-shape baseline against chapter 10's :func:`~covid_lib.analysis.shortcuts.mask_baseline`.

    The audit runs at its ``cpu`` profile (144 px, 32x32 thumbnail, 32 bins, 1000 resamples: chapter
    10's settings at the ``cpu`` profile) on images it runs through the chain itself (uncached, as
    for any user's dataset); the chapters read the pre-processing and hash caches. Also: which
    metadata factors the audit flags.
    """
    from covid_lib.analysis import shortcuts as sc
    from covid_lib.analysis.metadata_baseline import baseline_table
    from covid_lib.audit.measures import factor_associations, get_settings, metadata_baseline, pixel_probes
    from covid_lib.data import COMPOSITIONS, audit_splits, compose, global_splits

    timing = {}
    t = time.perf_counter()
    meta_settings = AuditSettings(image_size=96, side=32, bins=32, max_images=0, n_boot=n_boot)
    cpu = get_settings("cpu")
    assert (cpu.image_size, cpu.side, cpu.bins, cpu.n_boot) == (CHAPTER10["image_size"], 32, 32, CHAPTER10["n_boot"])
    book = {proxies: baseline_table(seed=seed, n_boot=n_boot, proxies=proxies).query("composition == test_set")
            .set_index("composition") for proxies in (False, True)}
    timing["chapter 03 baselines"] = time.perf_counter() - t
    t = time.perf_counter()
    book_audit = audit_splits(global_splits(seed=seed), raise_on_leak=False)
    timing["chapter 01 split audit"] = time.perf_counter() - t
    t = time.perf_counter()
    masks = sc.mask_baseline(list(COMPOSITIONS), seed=seed, image_size=CHAPTER10["image_size"],
                             n_boot=CHAPTER10["n_boot"], Cs=CHAPTER10["Cs"]).set_index("composition")
    timing["chapter 10 mask baseline"] = time.perf_counter() - t
    t = time.perf_counter()
    manifests = {name: load_manifest(composition_manifest(name, folder, seed)) for name in COMPOSITIONS}
    probe = {name: probe_rows(m, cpu.max_images, seed=seed) for name, m in manifests.items()}
    union = pd.concat(probe.values(), ignore_index=True).drop_duplicates("image_path").reset_index(drop=True)
    fresh = chain_arrays(union, PROBE_STEPS, image_size=cpu.image_size, use_cache=False)
    timing[f"audit chain, {len(union)} images uncached"] = time.perf_counter() - t
    out = {}
    for name in tqdm(COMPOSITIONS, desc="compositions"):
        c, manifest = compose(name, seed=seed), manifests[name]
        assert len(probe[name]) == len(c), "the cpu profile's cap would leave images out"
        t = time.perf_counter()
        factors = rank_findings(factor_associations(manifest, settings=meta_settings, seed=seed))
        row = {"images": len(c), "flagged factors": list(factors.loc[factors["flag"], "measure"])}
        base = metadata_baseline(manifest, settings=meta_settings, seed=seed).set_index("measure")
        for proxies, measure in ((False, "metadata baseline"), (True, "metadata baseline + label proxies")):
            a, b = base.loc[measure], book[proxies].loc[name]
            row[measure] = _compare([a["value"], a["low"], a["high"]], [b["auc"], b["auc_low"], b["auc_high"]])
        row["counts"] = count_check(manifest, c)
        row["leakage"] = leakage_check(manifest, c, book_audit)
        arrays = subset_arrays(fresh, probe[name])
        pix = pixel_probes(manifest, settings=cpu, seed=seed, arrays=arrays)[0].set_index(["measure", "target"])
        cols = ["value", "low", "high"]
        chapter_arrays = sc.chain_arrays(c, {"raw": "none", "after the chain": "paper"},
                                         image_size=CHAPTER10["image_size"])  # the chapter's: cache first
        same = {step: bool(np.array_equal(arrays.ok[step], chapter_arrays.ok[step])
                           and np.array_equal(arrays.images[step], chapter_arrays.images[step])
                           and np.array_equal(arrays.masks[step], chapter_arrays.masks[step])) for step in arrays.ok}
        row["chain arrays"] = {"audit (uncached) equal to the chapter's (cache)": same,
                               "rejected by the chain": int((~arrays.ok["after the chain"]).sum()),
                               "read from the cache by the chapter": chapter_arrays.from_cache}
        for step in ("raw", "after the chain"):
            y, p, g = chapter_probe(chapter_arrays, step, features="image", seed=seed)
            row[f"image statistics, {step} -> label"] = {
                **_intervals(pix.loc[(f"image statistics, {step}", "label"), cols], y, p, g, seed=seed),
                "compared with": "chapter 10's recipe: no chapter reports this number"}
        if c["source"].nunique() > 1:
            sp = sc.source_probe(chapter_arrays, n_boot=CHAPTER10["n_boot"], seed=seed, Cs=CHAPTER10["Cs"]).table
            sp = sp.set_index("step")
            for step in ("raw", "after the chain"):
                b = sp.loc[step]
                row[f"image statistics, {step} -> source"] = _compare(
                    pix.loc[(f"image statistics, {step}", "source"), cols],
                    [b["balanced_accuracy"], b["balanced_accuracy_low"], b["balanced_accuracy_high"]],
                    note="chapter 10's source_probe (balanced accuracy; the audit's interval method)")
        m = masks.loc[name]
        y, p, g = chapter_probe(chapter_arrays, "after the chain", features="mask", seed=seed)
        row["lung-mask shape -> label"] = {
            **_intervals(pix.loc[("lung-mask shape", "label"), cols], y, p, g, seed=seed,
                         chapter=[m["auc"], m["auc_low"], m["auc_high"]], method=m["interval"]),
            "compared with": "chapter 10's mask_baseline"}
        row["seconds"] = round(time.perf_counter() - t, 1)
        out[name] = row
    return out, {k: round(v, 1) for k, v in timing.items()}


def kind(measure: str) -> str:
    """The kind of a flagged-measure string (``"measure -> target"``), for false-alarm rates per kind."""
    for prefix, name in (("model AUC, ", "model AUC gap"), ("model score within ", "model score by source within a class"),
                         ("saliency in the lungs", "saliency lung shortfall")):
        if measure.startswith(prefix):
            return name
    return measure


def rates(perm: list[dict]) -> dict:
    """False alarms of permuted audits (each ``{"measures": n, "flagged": [...]}``, and optionally
    ``"measured": [...]``, the measures run) with Wilson intervals: per audit, per measure, and
    per kind of measure (:func:`kind`) where the measures run are listed."""
    n_measures = sum(p["measures"] for p in perm)
    n_flags = sum(len(p["flagged"]) for p in perm)
    n_audits = sum(bool(p["flagged"]) for p in perm)
    out = {"runs": len(perm), "audits_with_a_false_alarm": n_audits,
           "false_alarm_rate_per_audit": n_audits / max(len(perm), 1),
           "false_alarm_rate_per_audit_interval": list(wilson_interval(n_audits, len(perm))),
           "false_alarms": n_flags, "measures": n_measures,
           "false_alarm_rate_per_measure": n_flags / max(n_measures, 1),
           "false_alarm_rate_per_measure_interval": list(wilson_interval(n_flags, n_measures)),
           "false_alarms_by_measure": pd.Series([f for p in perm for f in p["flagged"]], dtype=object)
           .value_counts().to_dict()}
    if perm and all("measured" in p for p in perm):
        measured = pd.Series([kind(m) for p in perm for m in p["measured"]], dtype=object).value_counts()
        flags = pd.Series([kind(m) for p in perm for m in p["flagged"]], dtype=object).value_counts()
        audits = pd.Series([k for p in perm for k in {kind(m) for m in p["flagged"]}], dtype=object).value_counts()
        out["by_kind"] = {k: {"measured": int(n), "false_alarms": int(flags.get(k, 0)),
                              "rate": int(flags.get(k, 0)) / int(n),
                              "interval": list(wilson_interval(int(flags.get(k, 0)), int(n))),
                              "audits_with_one": int(audits.get(k, 0))} for k, n in measured.items()}
    return out


def _record(k: int, findings: pd.DataFrame) -> dict:
    return {"permutation": k, "measures": len(findings), "measured": [f"{m} -> {t}" for m, t in
                                                                     zip(findings["measure"], findings["target"])],
            "flagged": flagged(findings)}


def _with_rows(manifest, rows: pd.DataFrame):
    return type(manifest)(rows, manifest.classes, manifest.unreadable, manifest.given, manifest.path, manifest.notes)


def random_sources(patients: pd.Series, seed: int, n_sources: int = 2) -> pd.Series:
    """A source drawn at random (equal chances) for each patient: ``site A``, ``site B``, ...; the
    values of ``patients`` mapped (each patient keeps one source)."""
    ids = patients.drop_duplicates()
    names = np.array([f"site {chr(65 + i)}" for i in range(n_sources)])
    drawn = dict(zip(ids, names[np.random.default_rng(seed).integers(0, n_sources, len(ids))]))
    return patients.map(drawn)


def metadata_null(folder: Path, composition: str, permutations: int, *, settings: AuditSettings, seed: int,
                  out_of_fold: bool = False) -> dict:
    """Sections 1 and 2 (every metadata factor alone, the metadata baselines) on a book composition
    whose labels are permuted between patients: the metadata stay, so the factors have their
    real levels and imbalance, but no factor can predict the label. ``out_of_fold``: the split
    column dropped (out-of-fold scoring, as a manifest without splits)."""
    from covid_lib.audit.measures import factor_associations, metadata_baseline

    manifest = load_manifest(composition_manifest(composition, folder, seed))
    if out_of_fold:
        manifest = _with_rows(manifest, manifest.rows.assign(split="all"))

    def audit(m):
        return rank_findings(pd.concat([factor_associations(m, settings=settings, seed=seed),
                                        metadata_baseline(m, settings=settings, seed=seed)], ignore_index=True))

    true = audit(manifest)
    perm = [_record(k, audit(permuted(manifest, 4000 + k)))
            for k in tqdm(range(permutations), desc=f"metadata null, {composition}")]
    return {"composition": composition, "scoring": "out-of-fold (split dropped)" if out_of_fold else
            "train+val -> test", "images": len(manifest.rows), "patients": int(manifest.rows["patient_id"].nunique()),
            "true_labels_flagged": flagged(true), **rates(perm), "runs_detail": perm}


def source_null(control, arrays, permutations: int, *, settings: AuditSettings, seed: int,
                n_sources: int = 2) -> dict:
    """The source measures on the control with a source drawn at random for each patient: the
    source factor predicting the label (section 1) and the image statistics (raw, after the chain)
    predicting the source (section 4), by the audit's own functions on the chain's images computed
    once. No source can be told from the images, nor predict the label."""
    from covid_lib.analysis.shortcuts import image_features
    from covid_lib.audit.measures import _source_row, factor_associations

    rows = probe_rows(control, settings.max_images, seed=seed)
    feats = {step: image_features(arrays.images[step][arrays.ok[step]], side=settings.side, bins=settings.bins)
             for step in PROBE_STEPS}
    perm = []
    for k in tqdm(range(permutations), desc=f"random-source null ({n_sources} sources)"):
        drawn = dict(zip(control.rows["patient_id"], random_sources(control.rows["patient_id"], 5000 + k, n_sources)))
        m = _with_rows(control, control.rows.assign(source=control.rows["patient_id"].map(drawn)))
        f = factor_associations(m, settings=settings, seed=seed)
        parts = [f[f["measure"] == "source"]]
        src = rows["patient_id"].map(drawn)
        for step in PROBE_STEPS:
            used = rows.assign(source=src)[arrays.ok[step]].reset_index(drop=True)
            parts.append(pd.DataFrame([_source_row(used, feats[step], f"image statistics, {step}", settings=settings,
                                                   seed=seed)]))
        perm.append(_record(k, rank_findings(pd.concat(parts, ignore_index=True))))
    return {"images": len(control.rows), "patients": int(control.rows["patient_id"].nunique()),
            "sources": n_sources, **rates(perm), "runs_detail": perm}


def shifted_shares(maps: np.ndarray, masks: np.ndarray, seed: int) -> np.ndarray:
    """In-lung share of each map moved by a circular shift drawn uniformly at random: each map
    keeps its form (spread, peaks) but its place is random, so its expected in-lung share is
    exactly its mask's lung-area share (the null of the lung shortfall)."""
    from covid_lib.analysis.saliency import in_lung_share

    rng = np.random.default_rng(seed)
    h, w = maps.shape[1:]
    moved = np.stack([np.roll(m, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1)) for m in maps])
    return in_lung_share(moved, masks)


def model_null_sections(folder: Path, run: str, sets: dict, permutations: int, *, n_boot: int, seed: int) -> dict:
    """The model's within-class source measures and saliency lung shortfall (section 6) under
    nulls, on each manifest of ``sets`` (name -> :class:`~covid_lib.audit.AuditManifest`), the
    model's scores and Grad-CAM maps computed once:

    - *source within a class*: a source drawn at random for each patient (two sources, then
      three): the model's score cannot follow it;
    - *lung shortfall*: each map moved by a random circular shift (:func:`shifted_shares`): its
      expected in-lung share is its lung-area share.
    """
    from covid_lib.analysis.saliency import map_status
    from covid_lib.audit.model import (class_names, lung_shortfall, positive_labels, resolve_model, score_model,
                                       source_separation)

    am = resolve_model(run)
    out = {"run": run}
    for set_name, manifest in sets.items():
        t0 = time.perf_counter()
        rows = manifest.rows.assign(y=positive_labels(manifest))
        res = score_model(am, rows, rows["y"].to_numpy(), saliency_images=len(rows), seed=seed, keep_maps=True)
        table, names = res.table, class_names(manifest)
        mapped = np.flatnonzero(table["mapped"].to_numpy())
        measured = map_status(res.maps, table["has_mask"].to_numpy()[mapped]) == "measured"
        scored_s = time.perf_counter() - t0
        true = rank_findings(pd.concat([source_separation(table, names, n_boot=n_boot, seed=seed),
                                        lung_shortfall(table, names, n_boot=n_boot, seed=seed)], ignore_index=True))
        nulls = {}
        for n_sources in (2, 3):
            perm = []
            for k in tqdm(range(permutations), desc=f"{set_name}: model source null ({n_sources})"):
                t = table.assign(source=random_sources(table["patient_id"], 6000 + k, n_sources))
                perm.append(_record(k, rank_findings(source_separation(t, names, n_boot=n_boot, seed=seed))))
            nulls[f"source within a class, {n_sources} random sources"] = {**rates(perm), "runs_detail": perm}
        perm = []
        for k in tqdm(range(permutations), desc=f"{set_name}: saliency shift null"):
            share = table["share"].to_numpy(float).copy()
            share[mapped] = np.where(measured, shifted_shares(res.maps, res.masks, 7000 + k), np.nan)
            perm.append(_record(k, rank_findings(lung_shortfall(table.assign(share=share), names, n_boot=n_boot,
                                                                seed=seed))))
        nulls["lung shortfall, maps shifted at random"] = {**rates(perm), "runs_detail": perm}
        out[set_name] = {"images": len(table), "patients": int(table["patient_id"].nunique()),
                         "maps": int(len(mapped)), "maps measured": int(measured.sum()), "layer": res.layer,
                         "true_flagged": flagged(true),
                         "true_measures": true[["measure", "target", "metric", "value", "low", "high", "flag"]]
                         .to_dict("records"), "nulls": nulls, "seconds_scoring": round(scored_s, 1),
                         "seconds": round(time.perf_counter() - t0, 1)}
    return out


def model_null(folder: Path, run: str, composition: str, permutations: int, *, n_boot: int, seed: int) -> dict:
    """The model's AUC-gap measures under patient-level label permutations of its own test set."""
    from covid_lib.audit.model import group_gaps, positive_labels, resolve_model, score_model
    from covid_lib.data import compose

    c = compose(composition, seed=seed)
    c = c[c["split"] == "test"]
    m = pd.DataFrame({"path": c["image_path"], "label": c["label"].astype(int), "patient_id": c["group_id"],
                      **{k: c[k] for k in ("source", "view", "age", "sex", "date", "orig_width", "orig_height",
                                           "orig_format", "orig_mode")}})
    m.to_csv(folder / "model_null.csv", index=False)
    manifest = load_manifest(folder / "model_null.csv")
    rows = manifest.rows.assign(y=positive_labels(manifest))
    table = score_model(resolve_model(run), rows, rows["y"].to_numpy(), saliency_images=0, seed=seed).table
    true = rank_findings(group_gaps(table, n_boot=n_boot, seed=seed))
    perm = []
    for k in tqdm(range(permutations), desc="model permutations"):
        per_patient = table.groupby("patient_id")["y"].first()
        shuffled = pd.Series(np.random.default_rng(2000 + k).permutation(per_patient.to_numpy()), index=per_patient.index)
        g = rank_findings(group_gaps(table.assign(y=table["patient_id"].map(shuffled).astype(int)), n_boot=n_boot,
                                     seed=seed))
        perm.append({"permutation": k, "measures": len(g), "flagged": list(g.loc[g["flag"], "measure"])})
    return {"run": run, "composition": composition, "images": len(table),
            "patients": int(table["patient_id"].nunique()), "true_labels_flagged": list(true.loc[true["flag"], "measure"]),
            **rates(perm), "runs_detail": perm}


# ------------------------------------------------------------------ leakage and duplicates (section 3)
#: Patient shares of a random split (train, val, test).
SPLIT_SHARES = (0.7, 0.1, 0.2)


def kermany_manifest(folder: Path) -> Path:
    """Kermany bacterial (0) vs viral (1) pneumonia, the whole ChestXRay set (``kermany_full``: one
    hospital, children aged 1-5), as an audit manifest without splits."""
    root = resolve_data_root()
    m = pd.read_csv(root / "kermany_full" / "manifest.csv", dtype=str, keep_default_na=False)
    m = m[m["kermany_class"].isin(["bacteria", "virus"])]
    out = pd.DataFrame({"path": [str(root / "kermany_full" / p) for p in m["path"]],
                        "label": (m["kermany_class"] == "virus").astype(int).to_numpy(),
                        "patient_id": m["patient_id"].to_numpy(), "view": m["view"].to_numpy()})
    path = folder / "kermany_bacterial_viral.csv"
    out.to_csv(path, index=False)
    return path


def patient_splits(patients: pd.Series, seed: int, shares=SPLIT_SHARES) -> pd.Series:
    """A split drawn at random for each patient (train, val, test in ``shares`` of the patients),
    mapped onto ``patients``: no patient is in two splits."""
    ids = patients.drop_duplicates().sample(frac=1.0, random_state=seed).to_numpy()
    cut = np.cumsum(np.round(np.asarray(shares[:-1]) * len(ids)).astype(int))
    split = np.select([np.arange(len(ids)) < cut[0], np.arange(len(ids)) < cut[1]], ["train", "val"], "test")
    return patients.map(dict(zip(ids, split)))


def _planted_row(rows: pd.DataFrame, base: pd.Series, path: str, k: int, *, label: int, classes) -> pd.DataFrame:
    """``rows`` and one more image (``path``) of a new patient in the test split with ``label``."""
    new = base.copy()
    new["image_path"], new["image_id"] = path, f"planted-{k}"
    new["patient_id"] = new["group_id"] = f"planted patient {k}"
    new["split"], new["label"], new["label_name"] = "test", label, classes[label]
    return pd.concat([rows, new.to_frame().T.astype(rows.dtypes.to_dict())], ignore_index=True)


def near_copy(img: np.ndarray, variant: str) -> np.ndarray:
    """A copy of an image as another export would give it: ``jpeg`` (re-encoded at quality 75),
    ``scaled`` (down to 75% and back), ``brighter`` (grey levels x 1.1, clipped), ``cropped`` (5%
    cut from each side, resized back)."""
    import io

    if variant == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=75)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
    if variant == "scaled":
        h, w = img.shape
        small = Image.fromarray(img).resize((max(1, int(w * 0.75)), max(1, int(h * 0.75))), Image.BILINEAR)
        return np.asarray(small.resize((w, h), Image.BILINEAR))
    if variant == "brighter":
        return np.clip(img.astype(float) * 1.1, 0, 255).astype(np.uint8)
    if variant == "cropped":
        h, w = img.shape
        dy, dx = max(1, round(0.05 * h)), max(1, round(0.05 * w))
        return np.asarray(Image.fromarray(img[dy:h - dy, dx:w - dx]).resize((w, h), Image.BILINEAR))
    raise ValueError(variant)


#: The planted leaks: what is planted and which measure must flag it (a copy: the duplicate
#: measure of the kind it is found as; a JPEG re-encoding can give the same pixels back: exact).
PLANTS = {"patient overlap": "test images whose patient is also in train/val",
          "exact duplicate, other label": "test images with an exact duplicate in train/val",
          **{f"near duplicate ({v})": "test images with an exact or a near duplicate in train/val"
             for v in ("jpeg", "scaled", "brighter", "cropped")}}


def leakage_null(folder: Path, sets: dict, draws: int, plants: int, *, seed: int) -> dict:
    """Section 3 (:func:`covid_lib.audit.measures.leakage`) on data split by patient, where no
    patient crosses the splits: each of ``draws`` audits draws a split per patient at random
    (:func:`patient_splits`) and permutes the labels between patients; every flag is a flag on
    data without patient leakage. The images are hashed once per set (``sets``: name ->
    ``(manifest, hashes)``). The duplicate pairs the hash finds between different patients are
    listed with how alike the two images are (:func:`covid_lib.data.dedup.pair_similarity`): a
    flag they raise is a false alarm when they are two different X-rays.

    Then ``plants`` audits per planted leak (:data:`PLANTS`) on a random patient split with the
    true labels: a train/val image moved to test (its patient then in both), a train/val image
    copied into test under a new patient and the other label, or a near copy of one
    (:func:`near_copy`) under a new patient. A moved patient is detected when the patient measure
    is flagged; a copy when the duplicate measure of the kind it is found as (exact or near)
    counts it across the splits and is flagged. Each copy's pHash distance to its original and
    their pixel correlation (:func:`~covid_lib.data.dedup.pair_similarity`) are kept, to set
    against the pairs of two patients.
    """
    from covid_lib.audit.measures import leakage
    from covid_lib.data.dedup import duplicate_pairs, image_hashes, pair_similarity

    out = {}
    for name, (manifest, hashes) in sets.items():
        t0 = time.perf_counter()
        rows = manifest.rows
        pairs = duplicate_pairs(hashes)
        pid = rows["patient_id"].to_numpy()
        pairs = pairs.assign(same_patient=pid[pairs["i"]] == pid[pairs["j"]])
        other = pairs[~pairs["same_patient"]].reset_index(drop=True)
        sim = pair_similarity(pd.DataFrame({"source_a": rows["source"].to_numpy()[other["i"]],
                                            "image_id_a": rows["image_id"].to_numpy()[other["i"]],
                                            "source_b": rows["source"].to_numpy()[other["j"]],
                                            "image_id_b": rows["image_id"].to_numpy()[other["j"]]}), rows)
        other = other.join(sim.reindex(columns=["correlation", "mean_abs_diff"]))
        perm = []
        for k in tqdm(range(draws), desc=f"{name}: leakage null"):
            m = permuted(manifest, 9000 + k)
            m = _with_rows(m, m.rows.assign(split=patient_splits(m.rows["patient_id"], 8000 + k)))
            perm.append(_record(k, rank_findings(leakage(m, hashes=hashes)[0])))
        planted = {}
        for plant, measure in PLANTS.items():
            hits, detail = 0, []
            for k in range(plants):
                rng = np.random.default_rng(10000 + k)
                r = rows.assign(split=patient_splits(rows["patient_id"], 11000 + k))
                fit = r[r["split"] != "test"]
                h = hashes
                if plant == "patient overlap":
                    many = fit.groupby("patient_id").filter(lambda g: len(g) > 1)
                    i = int(rng.choice(many.index))
                    r.loc[i, "split"] = "test"
                    target = r.loc[i, "image_id"]
                else:
                    i = int(rng.choice(fit.index))
                    img = read_image(r.loc[i, "image_path"])
                    kind_ = plant.split("(")[-1].rstrip(")") if plant.startswith("near") else "exact"
                    copy = img if kind_ == "exact" else near_copy(img, kind_)
                    dest = folder / f"leak-{name.replace(' ', '_')}-{kind_}-{k}.png"
                    Image.fromarray(copy).save(dest)
                    label = 1 - int(r.loc[i, "label"]) if kind_ == "exact" else int(r.loc[i, "label"])
                    r = _planted_row(r, r.loc[i], str(dest), k, label=label, classes=manifest.classes)
                    h = pd.concat([hashes, image_hashes([str(dest)], progress=False)], ignore_index=True)
                    target = f"planted-{k}"
                table, dups = leakage(_with_rows(manifest, r), hashes=h)
                f = rank_findings(table).set_index("measure")
                if plant == "patient overlap":  # the moved image's patient is in train/val by construction
                    ok = bool(f.loc[measure, "flag"])
                    detail.append({"draw": k, "detected": ok})
                else:  # counted as a duplicate across the splits, by the measure of its kind, and flagged
                    mine = dups[((dups["image_id_a"] == target) | (dups["image_id_b"] == target)) & dups["across_splits"]]
                    kinds = set(mine["kind"])
                    ok = any(bool(f.loc[f"test images with an {k_} duplicate in train/val".replace("an near", "a near"),
                                        "flag"]) for k_ in kinds)
                    src, cp = h["phash"].iloc[i], h["phash"].iloc[-1]
                    sim = pair_similarity(pd.DataFrame({"source_a": [r.loc[i, "source"]], "image_id_a": [r.loc[i, "image_id"]],
                                                        "source_b": [r["source"].iloc[-1]], "image_id_b": [target]}), r)
                    detail.append({"draw": k, "detected": ok, "found as": "/".join(sorted(kinds)) or "no pair",
                                   "pHash distance": (int(src, 16) ^ int(cp, 16)).bit_count(),
                                   "correlation": round(float(sim["correlation"].iloc[0]), 4),
                                   **({"other label flagged": bool(f.loc["images with a duplicate of another label",
                                                                         "flag"])} if kind_ == "exact" else {})})
                hits += ok
            planted[plant] = {"measure": measure, "detected": hits, "planted": plants,
                              "detection_rate_interval": list(wilson_interval(hits, plants)),
                              "missed": [d for d in detail if not d["detected"]]}
            if plant != "patient overlap":
                planted[plant].update({
                    "found as": pd.Series([d["found as"] for d in detail]).value_counts().to_dict(),
                    "pHash distance of the copy": pd.Series([d["pHash distance"] for d in detail])
                    .value_counts().sort_index().to_dict(),
                    "correlation of the copy (min, median)": [min(d["correlation"] for d in detail),
                                                              float(np.median([d["correlation"] for d in detail]))]})
            if plant.startswith("exact"):
                planted[plant]["also flagged: images with a duplicate of another label"] = sum(
                    d["other label flagged"] for d in detail)
        out[name] = {"images": len(rows), "patients": int(rows["patient_id"].nunique()),
                     "pairs": {"exact, same patient": int(((pairs["kind"] == "exact") & pairs["same_patient"]).sum()),
                               "near, same patient": int(((pairs["kind"] == "near") & pairs["same_patient"]).sum()),
                               "exact, two patients": int((other["kind"] == "exact").sum()),
                               "near, two patients": int((other["kind"] == "near").sum())},
                     "pairs of two patients": other.assign(
                         patient_a=pid[other["i"]], patient_b=pid[other["j"]],
                         label_a=rows["label"].to_numpy()[other["i"]], label_b=rows["label"].to_numpy()[other["j"]])
                     .drop(columns=["i", "j", "same_patient"]).round(3).to_dict("records"),
                     "null": {**rates(perm), "runs_detail": perm}, "planted": planted,
                     "seconds": round(time.perf_counter() - t0, 1)}
    return out


# ------------------------------------------------------------------ the lung shortfall's positive check
#: A model that learnt the planted corner mark (grid ``planted``: CORDA, COVID+ training images
#: marked, chain ``none``, so the mark reaches the network).
PLANTED_MODEL = "covid-CORDA-resnet18-scratch-plantcorner-cpu-s0-600959f9b8"


def local_corner(img: np.ndarray) -> np.ndarray:
    """The corner "L" (:data:`covid_lib.preprocess.plant.MARKS` ``corner``'s place and size) at the
    image's own maximum grey level instead of 255: the chain's contrast stretch is then left as it
    was, so the mark changes only its own pixels (the grid's white mark also moves every grey level
    of the chain's output by a few levels)."""
    from covid_lib.preprocess.plant import Mark

    return apply_mark(img, Mark("corner", "corner", value=int(img.max())))


MARKINGS = {"grid mark": lambda img: apply_mark(img, "corner"), "local mark": local_corner}


def _chain_images(am, rows: pd.DataFrame):
    """The run's chain output of ``rows`` (uncached) and the kept rows, as :func:`score_model` takes them."""
    from covid_lib.preprocess import get_pipeline
    from covid_lib.train import load_images

    chain = get_pipeline(am.pipeline, image_size=int(am.meta["resize_size"])).resolved()
    return load_images(rows, chain, whole_sources=False)


def _inputs(am, rows: pd.DataFrame, images: np.ndarray):
    import torch

    from covid_lib.train import make_dataset

    data = make_dataset(rows, images, input_size=int(am.meta["input_size"]), mean=am.meta["mean"], std=am.meta["std"])
    return torch.cat([x for x, _, _ in data.batches(64)])


def _p_positive(model, x) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.softmax(model.eval()(x), 1)[:, 1].numpy()


def mark_detector(am, composition: str, folder: Path, *, epochs: int, lr: float, seed: int):
    """``am`` (an :class:`~covid_lib.audit.model.AuditModel`) fine-tuned to tell an image with the
    :func:`local_corner` mark from its unmarked copy: every train/val image of ``composition``
    twice (label 1 = marked; PNG copies in ``folder``), through the run's chain, ``epochs``
    epochs of Adam (``lr``, batches of 16, no augmentation). Its only evidence is the mark, outside
    the lungs. Returns the fine-tuned :class:`~covid_lib.audit.model.AuditModel` (same chain, crop
    and normalisation) and its training accuracy."""
    import copy

    import torch
    import torch.nn.functional as F

    from covid_lib.audit.model import AuditModel
    from covid_lib.data import compose
    from covid_lib.train import make_dataset

    c = compose(composition, seed=seed)
    rows = []
    for i, p in enumerate(c.loc[c["split"] != "test", "image_path"]):
        img = read_image(p)
        for marked in (0, 1):
            dest = folder / f"detector-{i}-{marked}.png"
            Image.fromarray(local_corner(img) if marked else img).save(dest)
            rows.append({"image_path": str(dest), "image_id": f"{i}-{marked}", "source": "planted", "label": marked,
                         "patient_id": str(i), "group_id": str(i)})
    images, kept = _chain_images(am, pd.DataFrame(rows))
    data = make_dataset(kept, images, input_size=int(am.meta["input_size"]), mean=am.meta["mean"], std=am.meta["std"])
    torch.manual_seed(seed)
    model = copy.deepcopy(am.model).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="fine-tuning a mark detector"):
        model.train()
        for x, y, _ in data.batches(16, shuffle=True, generator=gen, drop_single=True):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    p = _p_positive(model, _inputs(am, kept, images))
    accuracy = float(((p >= 0.5) == kept["label"].to_numpy().astype(bool)).mean())
    note = (f"{am.run_id} fine-tuned for {epochs} epochs (Adam, lr {lr:g}) to detect the local corner mark on "
            f"{len(kept) // 2} {composition} train/val images and their marked copies (training accuracy {accuracy:.2f})")
    return AuditModel(model, am.meta, am.pipeline, am.checkpoint, [note]), accuracy


def _shortfall(table: pd.DataFrame, share: np.ndarray, names, *, n_boot: int, seed: int, layer: str) -> dict:
    """:func:`covid_lib.audit.model.lung_shortfall` with each mapped image's in-lung share ``share``."""
    from covid_lib.audit.model import lung_shortfall

    t = table.copy()
    t.loc[t["mapped"], "share"] = share
    f = rank_findings(lung_shortfall(t, names, n_boot=n_boot, seed=seed, layer=layer))
    return {"flagged": flagged(f), "measures": f[["measure", "value", "low", "high", "flag", "note"]].to_dict("records")}


def lung_shortfall_positive(folder: Path, run: str, composition: str, *, n_boot: int, seed: int,
                            epochs: int = 4, lr: float = 1e-3) -> dict:
    """Section 6's saliency lung shortfall (:func:`covid_lib.audit.model.lung_shortfall`) on models
    whose evidence lies outside the lungs, on ``composition``'s test images with a corner mark
    planted on the COVID+ images (PNG copies in ``folder``) and, for contrast, without it; every
    image mapped:

    - ``run``, trained with the grid's corner mark on its COVID+ training images (grid ``planted``,
      chain ``none``), on test images with that mark: how much it leans on the mark is its AUC
      with the mark against without;
    - :func:`mark_detector`, the same network fine-tuned to detect the :func:`local_corner` mark, on
      test images with that mark; that its evidence is the mark's own pixels is checked by
      scoring the chain's output with the mark's pixels alone pasted in (``mark only``) and with
      them put back (``mark removed``).

    Each with the audit's maps (Grad-CAM at its layer) and, not the audit's, input-gradient maps
    (:func:`covid_lib.analysis.saliency.saliency_maps` ``gradinput``): the lung shortfall, the share
    of the COVID+ maps' mass on the mark's pixels (against their share of the image) and the paired
    change of each COVID+ map's in-lung share when the mark is planted (patient-bootstrap mean)."""
    from covid_lib.analysis.saliency import in_lung_share, input_masks, map_status, saliency_maps
    from covid_lib.audit.model import class_names, positive_labels, resolve_model, score_model
    from covid_lib.data import compose
    from covid_lib.metrics import auc_estimate, mean_estimate

    am = resolve_model(run)
    detector, accuracy = mark_detector(am, composition, folder, epochs=epochs, lr=lr, seed=seed)
    c = compose(composition, seed=seed)
    c = c[c["split"] == "test"].reset_index(drop=True)
    out = {"composition": composition, "test images": len(c), "marked": "the COVID+ test images"}
    for name, model, marking in (("planted run", am, "grid mark"), ("mark detector", detector, "local mark")):
        res = {"run": run, "checkpoint": str(am.checkpoint), "notes": model.notes, "mark": marking}
        if name == "mark detector":
            res["training accuracy"] = accuracy
        runs, chained = {}, {}
        for variant in ("marked", "unmarked"):
            t0 = time.perf_counter()
            paths = []
            for i, (p, label) in enumerate(zip(c["image_path"], c["label"].astype(int))):
                img = read_image(p)
                if variant == "marked" and label == 1:
                    img = MARKINGS[marking](img)
                dest = folder / f"shortfall-{name.replace(' ', '_')}-{variant}-{i}.png"
                Image.fromarray(img).save(dest)
                paths.append(str(dest))
            csv = folder / f"shortfall_{variant}.csv"
            pd.DataFrame({"path": paths, "label": c["label"].astype(int), "patient_id": c["group_id"],
                          "source": c["source"]}).to_csv(csv, index=False)
            manifest = load_manifest(csv)
            rows = manifest.rows.assign(y=positive_labels(manifest))
            sal = score_model(model, rows, rows["y"].to_numpy(), saliency_images=len(rows), seed=seed, keep_maps=True)
            t = sal.table
            assert t["mapped"].all(), "every image is mapped"
            images, kept = _chain_images(am, rows)
            assert list(kept["image_id"]) == list(t["image_id"])
            x = _inputs(am, kept, images)
            grads = np.concatenate([saliency_maps(model.model, x[i:i + 32], "gradinput") for i in range(0, len(x), 32)])
            shares = {"Grad-CAM (the audit's)": t["share"].to_numpy(float),
                      "input gradient": np.where(map_status(grads, t["has_mask"].to_numpy()) == "measured",
                                                 in_lung_share(grads, sal.masks), np.nan)}
            runs[variant] = {"table": t, "maps": {"Grad-CAM (the audit's)": sal.maps, "input gradient": grads},
                             "shares": shares}
            chained[variant] = images
            names = class_names(manifest)
            res[variant] = {"model AUC": auc_estimate(t["y"], t["score"], groups=t["group_id"].astype(str),
                                                      n_boot=n_boot, seed=seed).to_dict(),
                            "maps measured": {k: int(np.isfinite(v).sum()) for k, v in shares.items()},
                            **{k: _shortfall(t, v, names, n_boot=n_boot, seed=seed, layer=sal.layer)
                               for k, v in shares.items()},
                            "seconds": round(time.perf_counter() - t0, 1)}
            res["layer"] = sal.layer
        # the mark's pixels at the network's input: where the marked and unmarked outputs differ by
        # more than 25 grey levels in the top-left quarter (the chain's contrast stretch moves the
        # rest by a few levels at most)
        assert list(runs["marked"]["table"].index) == list(runs["unmarked"]["table"].index)  # the same images kept
        pos = (runs["marked"]["table"]["y"] == 1).to_numpy()
        side = chained["marked"].shape[1]
        region = np.abs(chained["marked"][pos].astype(int) - chained["unmarked"][pos].astype(int)) > 25
        region[:, side // 2:, :] = False
        region[:, :, side // 2:] = False
        crop_region = input_masks(region, int(am.meta["input_size"]))
        res["mark's pixels, share of the input"] = float(crop_region.mean())
        res["COVID+ maps' mass on the mark's pixels (median)"] = {
            k: float(np.nanmedian(in_lung_share(m[pos], crop_region))) for k, m in runs["marked"]["maps"].items()}
        if name == "mark detector":
            only = np.where(region, chained["marked"][pos], chained["unmarked"][pos]).astype(np.uint8)
            removed = np.where(region, chained["unmarked"][pos], chained["marked"][pos]).astype(np.uint8)
            kept_rows = runs["marked"]["table"][pos]
            res["P(marked) of the COVID+ test images (median)"] = {
                what: float(np.median(_p_positive(model.model, _inputs(am, kept_rows, arr))))
                for what, arr in (("marked", chained["marked"][pos]), ("unmarked", chained["unmarked"][pos]),
                                  ("mark only", only), ("mark removed", removed))}
        shift = {}
        for k in runs["marked"]["shares"]:
            d = (runs["marked"]["shares"][k] - runs["unmarked"]["shares"][k])[pos]
            ok = np.isfinite(d)
            groups = runs["marked"]["table"]["group_id"].astype(str).to_numpy()[pos][ok]
            shift[k] = {**mean_estimate(d[ok], groups=groups, n_boot=n_boot, seed=seed).to_dict(), "images": int(ok.sum())}
        res["COVID+ maps' in-lung share, marked minus unmarked"] = shift
        out[name] = res
    return out


SECTIONS = ("compositions", "control", "model-gaps", "metadata-null", "source-null", "model-nulls",
            "leakage-null", "shortfall-positive")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                    help="what to measure (model-gaps and model-nulls need --model)")
    ap.add_argument("--per-class", type=int, default=120)
    ap.add_argument("--permutations", type=int, default=10, help="label permutations of the control")
    ap.add_argument("--null-permutations", type=int, default=200,
                    help="draws of the metadata null (test split) and of the source null")
    ap.add_argument("--oof-permutations", type=int, default=100,
                    help="draws of the metadata null scored out-of-fold (slower: five fits per measure)")
    ap.add_argument("--model-null-permutations", type=int, default=1000, help="draws of each model null")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--marks", nargs="*", default=["corner", "gamma"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO_ROOT / "bench" / "audit_validation.json"))
    ap.add_argument("--model", default=None, metavar="RUN", help="the run whose section 6 the model nulls check")
    ap.add_argument("--model-composition", default="CORDA&ChestXRay")
    ap.add_argument("--model-permutations", type=int, default=100, help="label permutations of the AUC-gap null")
    ap.add_argument("--metadata-composition", default="CORDA&ChestXRay")
    ap.add_argument("--max-seconds", type=float, default=0,
                    help="stop drawing control permutations after this long (0: never)")
    ap.add_argument("--planted-model", default=PLANTED_MODEL,
                    help="shortfall-positive: a model that learnt the corner mark (run id or checkpoint)")
    ap.add_argument("--planted-composition", default="CORDA")
    ap.add_argument("--detector-epochs", type=int, default=4, help="shortfall-positive: epochs of the mark detector")
    ap.add_argument("--detector-lr", type=float, default=1e-3, help="shortfall-positive: the mark detector's learning rate")
    ap.add_argument("--leakage-draws", type=int, default=200,
                    help="random patient-level splits (labels permuted between patients) of the leakage null")
    ap.add_argument("--leakage-plants", type=int, default=50, help="audits per planted leak (leakage-null)")
    ap.add_argument("--update", action="store_true", help="keep the sections of --out that this run does not measure")
    args = ap.parse_args()
    sections = set(args.sections)
    if sections & {"model-gaps", "model-nulls"} and not args.model:
        ap.error("the sections model-gaps and model-nulls need --model RUN")
    settings = AuditSettings(image_size=args.image_size, side=32, bins=32, max_images=10 ** 6, n_boot=args.n_boot)
    summary: dict = {"settings": vars(args)}
    seconds: dict = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="audit-validation-") as tmp:
        folder = Path(tmp)
        if "compositions" in sections:
            t = time.perf_counter()
            summary["compositions"], summary["compositions_timing"] = composition_checks(folder, n_boot=2000,
                                                                                         seed=args.seed)
            seconds["compositions"] = round(time.perf_counter() - t, 1)
        if "model-gaps" in sections:
            t = time.perf_counter()
            summary["model_permutations"] = model_null(folder, args.model, args.model_composition,
                                                       args.model_permutations, n_boot=args.n_boot, seed=args.seed)
            seconds["model-gaps"] = round(time.perf_counter() - t, 1)
        if "metadata-null" in sections:
            t = time.perf_counter()
            summary["metadata_null"] = {
                scoring: metadata_null(folder, args.metadata_composition,
                                       args.oof_permutations if scoring == "out-of-fold" else args.null_permutations,
                                       settings=settings, seed=args.seed, out_of_fold=scoring == "out-of-fold")
                for scoring in ("test split", "out-of-fold")}
            seconds["metadata-null"] = round(time.perf_counter() - t, 1)
        control = arrays = None
        if sections & {"control", "source-null", "model-nulls", "leakage-null"}:
            t = time.perf_counter()
            control = load_manifest(control_manifest(folder, args.per_class, args.seed))
            if sections & {"control", "source-null"}:
                rows = probe_rows(control, settings.max_images, seed=args.seed)
                arrays = chain_arrays(rows, PROBE_STEPS, image_size=settings.image_size, use_cache=False)
            seconds["control images"] = round(time.perf_counter() - t, 1)
        if "control" in sections:
            t = time.perf_counter()
            control_checks(summary, control, arrays, folder, args, settings, t0)
            seconds["control"] = round(time.perf_counter() - t, 1)
        if "source-null" in sections:
            t = time.perf_counter()
            summary["source_null"] = source_null(control, arrays, args.null_permutations, settings=settings,
                                                 seed=args.seed)
            seconds["source-null"] = round(time.perf_counter() - t, 1)
        if "model-nulls" in sections:
            t = time.perf_counter()
            test = load_manifest(composition_manifest(args.model_composition, folder, args.seed))
            test = _with_rows(test, test.rows[test.rows["split"] == "test"].reset_index(drop=True))
            summary["model_nulls"] = model_null_sections(
                folder, args.model, {f"{args.model_composition} test set": test, "Kermany control": control},
                args.model_null_permutations, n_boot=args.n_boot, seed=args.seed)
            seconds["model-nulls"] = round(time.perf_counter() - t, 1)
        if "leakage-null" in sections:
            from covid_lib.data.dedup import image_hashes

            t = time.perf_counter()
            whole = load_manifest(kermany_manifest(folder))
            sets = {name: (m, image_hashes(list(m.rows["image_path"]), progress=True))
                    for name, m in (("Kermany control", control), ("Kermany bacterial vs viral, whole set", whole))}
            summary["leakage_null"] = leakage_null(folder, sets, args.leakage_draws, args.leakage_plants,
                                                   seed=args.seed)
            seconds["leakage-null"] = round(time.perf_counter() - t, 1)
        if "shortfall-positive" in sections:
            t = time.perf_counter()
            summary["shortfall_positive"] = lung_shortfall_positive(folder, args.planted_model,
                                                                    args.planted_composition, n_boot=args.n_boot,
                                                                    seed=args.seed, epochs=args.detector_epochs,
                                                                    lr=args.detector_lr)
            seconds["shortfall-positive"] = round(time.perf_counter() - t, 1)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["seconds_by_section"] = seconds
    _write(args, summary)


def control_checks(summary: dict, control, arrays, folder: Path, args, settings: AuditSettings, t0: float) -> None:
    """The control on its true labels and ``args.permutations`` label permutations, and the planted marks."""
    f = rank_findings(run_audit(control, settings=settings, seed=args.seed, arrays=arrays)["measures"])
    summary["control"] = {"images": len(control.rows), "patients": int(control.rows["patient_id"].nunique()),
                          "flagged": flagged(f), "measures": f[["measure", "target", "metric", "value", "low",
                                                              "high", "flag"]].to_dict("records")}
    perm = []
    for k in tqdm(range(args.permutations), desc="permutations"):
        if args.max_seconds and time.perf_counter() - t0 > args.max_seconds:
            print(f"stopped after {k} permutations: --max-seconds {args.max_seconds} reached")
            break
        fk = rank_findings(run_audit(permuted(control, 1000 + k), settings=settings, seed=args.seed,
                                     arrays=arrays)["measures"])
        pred = fk[fk["metric"] != "share"]
        perm.append({"permutation": k, "measures": len(pred), "flagged": flagged(pred)})
    summary["permutations"] = {**rates(perm), "runs_detail": perm}
    summary["planted"] = {}
    for mark in args.marks:
        null = permuted(control, PLANT_PERMUTATION)  # labels without signal: only the mark separates them
        planted = load_manifest(planted_manifest(null, folder, mark))
        fm = rank_findings(run_audit(planted, settings=settings, seed=args.seed)["measures"])
        summary["planted"][mark] = {"flagged": flagged(fm), "measures": fm[
            ["measure", "target", "metric", "value", "low", "high", "flag"]].to_dict("records")}


def _write(args, summary: dict) -> None:
    """Write (``--update``: merge into) ``--out`` and print the summary without the details."""
    if args.update and Path(args.out).is_file():
        old = json.loads(Path(args.out).read_text())
        measured = {k: v for k, v in summary.items() if k not in ("settings", "seconds") and v}
        old.setdefault("updates", []).append({"settings": summary["settings"], "seconds": summary["seconds"],
                                             "sections": sorted(measured)})
        if "seconds_by_section" in measured:  # the sections not measured now keep their times
            measured["seconds_by_section"] = {**old.get("seconds_by_section", {}), **measured["seconds_by_section"]}
        summary = {**old, **measured}
    Path(args.out).write_text(json.dumps(_slim(summary), indent=1, default=float))
    print(json.dumps(_short({k: v for k, v in summary.items() if k not in ("settings", "updates")}), indent=1,
                     default=float))


def _slim(obj):
    """The summary as written: of the permuted audits (``runs_detail``) only those with a false alarm
    (``runs_with_a_false_alarm``), without the list of measures each ran (``by_kind`` counts them)."""
    if isinstance(obj, dict):
        out = {k: _slim(v) for k, v in obj.items() if k != "runs_detail"}
        if "runs_detail" in obj:
            out["runs_with_a_false_alarm"] = [{k: v for k, v in r.items() if k != "measured"}
                                              for r in obj["runs_detail"] if r["flagged"]]
        return out
    if isinstance(obj, list):
        return [_slim(v) for v in obj]
    return obj


def _short(obj):
    """The summary without per-run details and per-measure tables (what is printed)."""
    if isinstance(obj, dict):
        out = {k: _short(v) for k, v in obj.items() if k not in ("runs_with_a_false_alarm", "true_measures", "unequal",
                                                                    "by_kind")
               and not (isinstance(v, list) and v and isinstance(v[0], dict))}
        if "by_kind" in obj:
            out["by_kind"] = {k: f"{v['false_alarms']}/{v['measured']}" for k, v in obj["by_kind"].items()}
        return out
    return obj


if __name__ == "__main__":
    main()
