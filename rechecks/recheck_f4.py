"""Independent recomputation of finding F4 (chapter 12, saliency; after DeGrave et al. 2021 and the
KTH report): "the saliency of the ResNet-18 models falls inside the lung more than an even spread
would put it there", measured as the share of positive saliency inside the lung mask minus the
lung's share of the image (the excess over an even spread), on COVID+ test images of the sources
each model was trained on, mean over models and images, patients resampled.

Nothing is imported from the project's library (covid_lib) and it was written without reading that
library's code, its tests or notebooks: the specification is the text of book/protocol.md (header
and section "F4"). Saliency maps cannot be recomputed here (the model weights are not in the tree),
so the per-image map numbers are taken from the analysis record; everything ELSE (which models
count, which images count, the leave-out rules, the weighting, the bootstrap, the decision) is
recomputed from that record and from the raw run records:

- results/claims/f4.json: the PLANNED models ("runs": every ResNet-18 model chapter 12 sets out
  to map, with the record's status "done"/"collapsed"), the planted runs and the planted-mark
  check ("candidates", "check", "method", "map");
- results/claims/f4.csv: per model and image, share (of positive saliency inside the lung mask),
  baseline (the lung mask's share of the image), map_status, layer, seen, source, label,
  group_id, did_not_learn;
- results/<run_id>/spec.json, metrics.json, scores.csv: the run records, from which the
  leave-out rules and the "sources trained on" are re-derived (not read off f4.csv's columns,
  which are only cross-checked).

What is recomputed, step by step, and every reading chosen where the text is open:

1. Planted-mark check (protocol: "with no method that passes it, the finding is not evaluated").
   The check itself needs the maps of the planted models and cannot be rerun here; its outcome is
   read from f4.json ("check": method -> passed). If no method passed, the outcome is
   "inconclusive" ("not evaluated"). The chosen map must be the FIRST candidate (f4.json
   "candidates" order) that passed; this is verified, and f4.csv's `layer` must be that map's
   layer (for gradinput: "input"). The planted runs' own records are checked with the same
   leave-out rules (did not learn / collapsed, own test = "CORDA · marked", the images as the model
   was trained to see them, as in recheck_f3.py) and reported: whether the check counted a planted
   model that collapsed. It is reported, not acted on: f4.json gives the check per map only, not
   per planted model (f4.json also says the planted models were retrained for the check and differ
   from their records: "planted_differs_from_record").

2. Planned comparisons. READING: a "usable comparison" is one MODEL (one run of f4.json "runs"):
   the estimand has no paired control model (its control is the fixed value 0 of an even spread),
   so each mapped model contributes one excess. n_plan = the number of runs in f4.json (24 on the
   present record). The min-3 / more-than-50%-left-out rule is applied to these models.

3. Left out, each with a reason, in this order:
   - "no record": the run folder lacks spec.json / metrics.json / scores.csv;
   - "did not learn": metrics.json best_value (the best validation AUC) < 0.6;
   - "collapsed": own-test scores (scores.csv rows whose test_set is the run's own composition,
     spec.composition) all >= 0.5 or all < 0.5, or 5-95% range < 0.001 (shared.collapse_reason);
   - "no checkpoint": a planned model with no row in f4.csv that f4.json's "cached" list (the runs
     whose checkpoint the machine held) does not name: it could not be mapped;
   - "no maps": a planned model with no row in f4.csv for another reason. READING: either is
     counted as left out (it is in the plan and contributes nothing), which is the
     conservative side of the more-than-50% rule; it cannot enter the estimate either way;
   - "no measurable map": every selected image of the model is not measurable (see 5).
   My statuses are compared with f4.json's "done"/"collapsed" and f4.csv's did_not_learn; a
   disagreement is printed (it does not stop the script: my own reading decides).

4. Images. "COVID+ test images of the sources each model was trained on": label == 1 and source
   in the model's TRAINED-ON sources. READING: the trained-on sources are the sources of the
   model's own test set in its scores.csv (test_set == spec.composition; a composition's test set
   holds the test images of the sources it is made of). Pre-training sources (e.g. kermany for a
   model pre-trained on kermany_full, "pre-trained on" in f4.csv) are NOT "trained on". f4.csv's
   `seen` column must agree ("trained on" exactly for these sources); every selected image must be
   a test image of that source in the model's scores.csv with the same group_id and label.

5. Measurable maps. A map is measurable when map_status == "measured" and share and baseline are
   finite. "Maps with no positive mass" and maps whose lung mask failed ("no mask") are counted as
   not measurable and dropped image by image (counted in the report). On the present record every
   selected image is measured.

6. Estimate. READING of "mean over models and images": per model, the mean excess
   (share - baseline) over its measurable selected images; the pooled estimate is the mean of
   these per-model means (each model weighs equally, as the protocol header's pooled estimate is
   "the mean over the claim's cells and seeds"; the images are the replicate measurements within a
   model). The alternative reading, every (model, image) pair weighing equally, is computed and
   printed beside; on the present record every usable model has the same 30 images, so both
   readings give the same number in every replicate.

7. Bootstrap: patient clusters, 2000 replicates, numpy default_rng(0) multinomial draws N out of N
   (shared.patient_draws). READING: the patient is f4.csv's group_id; the draws run over the
   sorted unique group_ids of the images that enter the estimate (COVID+, trained-on, measurable,
   usable models: 26 patients on the present record), one draw shared by every model, so the same
   patient seen by several models is resampled together (protocol header). An image's weight in a
   replicate is its patient's draw count; a model's replicate value is the weighted mean excess of
   its images (NaN when none of its patients is drawn; such replicates are dropped and counted by
   shared.pool_defined). Interval: 2.5 / 97.5 percentiles of the replicate pooled estimates;
   MDE = (z(0.975) + z(0.8)) x their SD (ddof=1). Sensitivity (printed, not deciding): the same
   with the draws over every patient of f4.csv (all images of the mapped models) and over every
   COVID+ patient of f4.csv, which changes the random stream but not the estimand; and the same
   patients with index draws (default_rng(0).integers(0, n, (2000, n)), each row's counts) in place
   of the multinomial counts: the same bootstrap distribution, another random stream.

8. Decision (directional, shared.decide, min 3 usable): inconclusive with fewer than 3 usable
   models or more than 50% of the planned models left out; reproduced when low > 0; not
   reproduced when high < 0; no detectable effect when the interval includes 0 and its upper end
   is below the MDE; inconclusive otherwise.

Checks of the images against the run records (printed; they do not change the estimate): f4.csv's
images are 40 test images per source (cohen, kermany, nih, hannover), the test sets of the unseen
grid's source splits, while the mapped models are CORDA / CORDA&ChestXRay models (grids
ablation_full / table2_full, not `unseen` as the protocol's F4 names). For each used model the
script counts the selected images that are NOT in its own test set (scores.csv, test_set ==
composition) and those in none of its recorded test or validation sets (possibly its training
images: the records do not list training images), and recomputes the estimate on the images of
the model's own test set only (sensitivity, its own draws over its own patients).

Reported beside, never deciding: per model (with pipeline and pre-training); per pipeline and per
pre-training; the same estimand on UNSEEN sources (COVID+ images of sources that are neither
trained on nor pre-trained on; its own draws over its own patients, seed 0); the mean share and
the mean baseline separately.

Usage: python rechecks/recheck_f4.py [--results DIR] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shared import Z, collapse_reason, decide, patient_draws, pool_defined, write_json

N_BOOT = 2000
BOOT_SEED = 0
MIN_VAL_AUC = 0.6
MIN_USED = 3
PLANTED_OWN = "CORDA · marked"
REASON_KEYS = ("no record", "did not learn", "collapsed", "no checkpoint", "no maps", "no measurable map")


# ---------------------------------------------------------------- records
def read_run(results: Path, run: str) -> dict:
    d = results / run
    out = dict(run=run, reasons=[])
    if not all((d / f).exists() for f in ("spec.json", "metrics.json", "scores.csv")):
        out["reasons"].append("no record")
        return out
    spec = json.loads((d / "spec.json").read_text())
    met = json.loads((d / "metrics.json").read_text())
    sc = pd.read_csv(d / "scores.csv")
    s = spec.get("spec", {})
    out.update(spec=s, created=spec.get("created"), best_val=met.get("best_value"), scores=sc,
               composition=s.get("composition"), pipeline=s.get("pipeline"), pretrain=s.get("pretrain"),
               seed=s.get("seed"), arch=s.get("arch"), plant=s.get("plant"))
    bv = out["best_val"]
    if bv is None or not np.isfinite(bv) or bv < MIN_VAL_AUC:
        out["reasons"].append(f"did not learn (best val AUC {bv})")
    own_name = PLANTED_OWN if s.get("plant") not in (None, False) else s.get("composition")
    own = sc[sc.test_set == own_name]
    out["own_test"] = own_name
    if len(own) == 0:
        out["reasons"].append(f"collapsed? no own-test scores ({own_name})")
    else:
        v = own.score.to_numpy(float)
        out["own_range"] = (float(v.min()), float(v.max()))
        why = collapse_reason(v)
        if why:
            out["reasons"].append(why)
    out["trained_on"] = sorted(own.source.unique()) if len(own) else []
    return out


def reason_key(text: str) -> str:
    return next(k for k in REASON_KEYS if k in text)


# ---------------------------------------------------------------- statistics
def model_replicates(x: np.ndarray, gi: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B,) weighted mean of ``x`` with the draw counts of each image's patient; NaN with no weight."""
    w = counts[:, gi]
    den = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (w @ x) / den, np.nan)


def index_draws(groups: list, n_boot: int, seed: int) -> np.ndarray:
    """Draw counts from index draws (default_rng(seed).integers(0, n, (n_boot, n))): the same
    patient-cluster bootstrap as :func:`shared.patient_draws`, another random stream. Sensitivity only."""
    n = len(groups)
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    return np.stack([np.bincount(row, minlength=n) for row in idx]).astype(float)


def bootstrap(models: list[dict], col: str, groups: list[str], counts: np.ndarray | None = None) -> tuple[dict, dict]:
    """Model-weighted pooled estimate (deciding reading) and the image-pooled one, under one set of
    draws over ``groups`` (multinomial, shared.patient_draws, unless ``counts`` is given)."""
    gidx = {g: i for i, g in enumerate(groups)}
    if counts is None:
        counts = patient_draws(groups, N_BOOT, BOOT_SEED)
    rows, points = [], []
    num = np.zeros(N_BOOT)
    den = np.zeros(N_BOOT)
    all_x = []
    for m in models:
        t = m[col]
        x = (t.share - t.baseline).to_numpy(float)
        gi = t.group_id.map(gidx).to_numpy(int)
        rows.append(model_replicates(x, gi, counts))
        points.append(float(x.mean()))
        w = counts[:, gi]
        num += w @ x
        den += w.sum(1)
        all_x.append(x)
    by_model = pool_defined(rows, points)
    with np.errstate(invalid="ignore", divide="ignore"):
        pb = np.where(den > 0, num / den, np.nan)
    ok = ~np.isnan(pb)
    if all_x and ok.any():
        lo, hi = np.percentile(pb[ok], [2.5, 97.5])
        se = float(np.std(pb[ok], ddof=1))
        pooled = dict(estimate=float(np.concatenate(all_x).mean()), low=float(lo), high=float(hi), se=se,
                      mde=Z * se, n_nan=int((~ok).sum()))
    else:
        nan = float("nan")
        pooled = dict(estimate=nan, low=nan, high=nan, se=nan, mde=nan, n_nan=0)
    by_model["per_model_boot"] = rows
    return by_model, pooled


def fmt(r: dict) -> str:
    return (f"{r['estimate']:+.5f}  95% CI [{r['low']:+.4f}, {r['high']:+.4f}]  SE {r['se']:.4f}  "
            f"MDE {r['mde']:.4f}")


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    t0 = time.time()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    claim_dir = args.results / "claims"
    rec = json.loads((claim_dir / "f4.json").read_text())
    maps = pd.read_csv(claim_dir / "f4.csv")
    maps["group_id"] = maps.group_id.astype(str)
    notes: list[str] = []

    # ---- 1. the planted-mark check (read, verified for consistency) and the planted runs' records
    cands = [tuple(c) for c in rec.get("candidates", [])]
    check = rec.get("check", {})
    passed = [k for k, v in check.items() if v]
    chosen_map = rec.get("map")
    first_passed = None
    for k in check:  # the check's keys are in candidate order
        if check[k]:
            first_passed = k
            break
    if chosen_map != first_passed:
        notes.append(f"chosen map {chosen_map!r} is not the first candidate that passed ({first_passed!r})")
    chosen_layer = chosen_map.split(" · ")[1] if chosen_map and " · " in chosen_map else None
    layers = sorted(maps.layer.astype(str).unique())
    if chosen_layer is not None and layers != [chosen_layer]:
        notes.append(f"f4.csv layers {layers} differ from the chosen map's layer {chosen_layer!r}")
    planted = [read_run(args.results, r) for r in rec.get("planted_runs", [])]

    # ---- 2-3. planned models and their status
    plan = list(rec["runs"])
    models = []
    for run in plan:
        m = read_run(args.results, run)
        m["record_status"] = rec["runs"][run]
        t = maps[maps.run_id == run]
        m["n_map_rows"] = len(t)
        if len(m["reasons"]) == 0 and len(t) == 0:
            m["reasons"].append("no checkpoint (not in f4.json's cached runs; no row in f4.csv)"
                                if run not in rec.get("cached", []) else "no maps (no row in f4.csv)")
        # cross-checks with the analysis record
        mine_collapsed = any("collapsed" in r for r in m["reasons"])
        if (m["record_status"] == "collapsed") != mine_collapsed:
            notes.append(f"{run}: f4.json says {m['record_status']!r}, my collapse check says "
                         f"{'collapsed' if mine_collapsed else 'not collapsed'}")
        if len(t) and "did not learn" not in " ".join(m["reasons"]) and t.did_not_learn.astype(bool).any():
            notes.append(f"{run}: f4.csv flags did_not_learn, my reading does not")
        if len(t) and "did not learn" in " ".join(m["reasons"]) and not t.did_not_learn.astype(bool).all():
            notes.append(f"{run}: my reading says did not learn, f4.csv does not")
        if "spec" in m:
            for k in ("arch", "composition", "pipeline", "seed"):
                col = {"composition": "composition"}.get(k, k)
                if len(t) and col in t:
                    vals = set(t[col].astype(str).str.replace("&", "&"))
                    want = str(m[k])
                    if vals != {want}:
                        notes.append(f"{run}: f4.csv {col} {vals} vs spec {want}")
        # ---- 4-5. the images
        if len(t) and not m["reasons"]:
            trained = set(m["trained_on"])
            seen_col = set(t[t.seen == "trained on"].source.unique())
            if seen_col != trained:
                notes.append(f"{run}: f4.csv 'trained on' sources {sorted(seen_col)} vs own test set's "
                             f"sources {sorted(trained)}")
            sel = t[(t.label == 1) & t.source.isin(trained)].copy()
            own = m["scores"][m["scores"].test_set == m["composition"]].copy()
            own["group_id"] = own.group_id.astype(str)
            chk = sel.merge(own[["image_id", "source", "group_id", "label"]], on=["image_id", "source"], how="left",
                            suffixes=("", "_rec"))
            in_own = (chk.group_id == chk.group_id_rec) & (chk.label == chk.label_rec)
            mismatch = chk.group_id_rec.notna() & ~in_own
            if mismatch.any():
                notes.append(f"{run}: {int(mismatch.sum())} selected images in the own test set with another "
                             f"patient or label")
            anywhere = set(m["scores"].image_id)
            vpath = args.results / run / "val_scores.csv"
            if vpath.exists():
                anywhere |= set(pd.read_csv(vpath).image_id)
            m["n_not_own_test"] = int((~in_own).sum())
            m["n_in_no_recorded_set"] = int((~sel.image_id.isin(anywhere)).sum())
            sel = sel.assign(in_own_test=in_own.to_numpy())
            meas = (sel.map_status == "measured") & np.isfinite(sel.share) & np.isfinite(sel.baseline)
            m["n_selected"] = int(len(sel))
            m["n_not_measurable"] = int((~meas).sum())
            m["not_measurable_status"] = sel[~meas].map_status.value_counts().to_dict()
            m["sel"] = sel[meas].reset_index(drop=True)
            m["sel_own"] = m["sel"][m["sel"].in_own_test].reset_index(drop=True)
            if len(m["sel"]) == 0:
                m["reasons"].append("no measurable map")
            # beside: unseen sources (neither trained on nor pre-trained on)
            un = t[(t.label == 1) & (t.seen == "unseen") & ~t.source.isin(trained)]
            um = (un.map_status == "measured") & np.isfinite(un.share) & np.isfinite(un.baseline)
            m["unseen"] = un[um].reset_index(drop=True)
            m["n_unseen_not_measurable"] = int((~um).sum())
        models.append(m)

    used = [m for m in models if not m["reasons"]]
    n_plan, n_used = len(models), len(used)
    left = [m for m in models if m["reasons"]]
    reasons_count: dict[str, int] = {}
    for m in left:
        k = reason_key(m["reasons"][0])
        reasons_count[k] = reasons_count.get(k, 0) + 1

    # ---- 6-7. estimate and bootstrap
    groups = sorted(set().union(*[set(m["sel"].group_id) for m in used])) if used else []
    res, res_pooled = bootstrap(used, "sel", groups) if used else (pool_defined([], []), pool_defined([], []))
    evaluated = bool(passed)
    if not evaluated:
        outcome, reason = "inconclusive", "no saliency method passed the planted-mark check: not evaluated"
    else:
        outcome, reason = decide(res["low"], res["high"], res["mde"], n_used, n_plan, min_used=MIN_USED)

    # sensitivity: other patient sets for the draws
    sens = {}
    if used:
        g_all = sorted(set(maps[maps.run_id.isin([m["run"] for m in used])].group_id))
        g_pos = sorted(set(maps[maps.run_id.isin([m["run"] for m in used]) & (maps.label == 1)].group_id))
        for name, g in (("draws over every f4.csv patient of the used models", g_all),
                        ("draws over every COVID+ f4.csv patient of the used models", g_pos)):
            r, _ = bootstrap(used, "sel", g)
            r.pop("per_model_boot")
            r["n_patients"] = len(g)
            sens[name] = r
        r, _ = bootstrap(used, "sel", groups, counts=index_draws(groups, N_BOOT, BOOT_SEED))
        r.pop("per_model_boot")
        r["n_patients"] = len(groups)
        sens["index draws rng.integers(0, n, (B, n)) over the same patients"] = r
    # sensitivity: only the selected images that are in the model's OWN test set (scores.csv)
    strict = None
    if used and all(len(m["sel_own"]) for m in used):
        gs = sorted(set().union(*[set(m["sel_own"].group_id) for m in used]))
        strict, _ = bootstrap(used, "sel_own", gs)
        strict.pop("per_model_boot")
        strict["n_patients"] = len(gs)
        strict["n_pairs"] = int(sum(len(m["sel_own"]) for m in used))
    n_not_own = {m["run"]: m["n_not_own_test"] for m in used}
    n_no_set = {m["run"]: m["n_in_no_recorded_set"] for m in used}
    # the grid of the mapped models vs the protocol's "(grids: unseen)"
    unseen_grid = [m["run"] for m in models if str(m.get("composition", "")).startswith("U")]
    if len(unseen_grid) < len(models):
        notes.append(f"{len(models) - len(unseen_grid)} of the {len(models)} planned models are not of the unseen "
                     f"grid (compositions {sorted({str(m.get('composition')) for m in models})}); the protocol's F4 "
                     f"names grids `unseen`")
    # beside: unseen sources
    unseen = None
    if used and all(len(m["unseen"]) for m in used):
        gu = sorted(set().union(*[set(m["unseen"].group_id) for m in used]))
        unseen, _ = bootstrap(used, "unseen", gu)
        unseen.pop("per_model_boot")
        unseen["n_patients"] = len(gu)
        unseen["sources"] = sorted(set().union(*[set(m["unseen"].source) for m in used]))
    # beside: per model, per pipeline, per pretraining
    per_model = {}
    for m, rows in zip(used, res["per_model_boot"]):
        x = (m["sel"].share - m["sel"].baseline).to_numpy(float)
        ok = ~np.isnan(rows)
        lo, hi = np.percentile(rows[ok], [2.5, 97.5])
        per_model[m["run"]] = dict(pipeline=m["pipeline"], pretrain=m["pretrain"], composition=m["composition"],
                                   seed=m["seed"], n_images=len(x), mean_share=float(m["sel"].share.mean()),
                                   mean_baseline=float(m["sel"].baseline.mean()), excess=float(x.mean()),
                                   low=float(lo), high=float(hi),
                                   unseen_excess=float((m["unseen"].share - m["unseen"].baseline).mean())
                                   if len(m["unseen"]) else None)
    groups_beside = {}
    for key in ("pipeline", "pretrain", "composition"):
        for val in sorted({str(m[key]) for m in used}):
            idx = [i for i, m in enumerate(used) if str(m[key]) == val]
            r = pool_defined([res["per_model_boot"][i] for i in idx],
                             [per_model[used[i]["run"]]["excess"] for i in idx])
            r["n_models"] = len(idx)
            groups_beside[f"{key}={val}"] = r
    per_boot = res.pop("per_model_boot")
    del per_boot

    # ---- report
    print("F4 recheck: share of positive saliency inside the lung mask minus the lung's share of the image "
          "(excess over an even spread), COVID+ test images of the sources each model was trained on, "
          "mean over models (each the mean over its images)")
    print(f"results: {args.results}")
    print("\nplanted-mark check (read from f4.json; maps not recomputable here):")
    print(f"   candidates in order: {cands}")
    for k, v in check.items():
        print(f"   {k:<20} {'PASSED' if v else 'failed'}")
    print(f"   chosen map: {chosen_map}  (first candidate that passed: {first_passed});  f4.csv layers: {layers}")
    print(f"   planted runs the check used ({len(planted)}):")
    for p in planted:
        rng = p.get("own_range")
        rs = f"{rng[0]:.3f}-{rng[1]:.3f}" if rng else "n/a"
        print(f"      {p['run']}  pipeline {p.get('pipeline')}  best val AUC {p.get('best_val', float('nan')):.3f}  "
              f"{p['own_test']} scores {rs}  -> {'; '.join(p['reasons']) or 'usable'}")
    if rec.get("planted_differs_from_record"):
        print(f"   f4.json planted_trained_here={rec.get('planted_trained_here')}; planted_differs_from_record "
              f"(retrained vs recorded scores): {rec['planted_differs_from_record']}")
    n_planted_bad = sum(bool(p["reasons"]) for p in planted)
    print(f"   -> the check counted {n_planted_bad} planted run(s) whose own record is left out by the protocol's rules")

    print(f"\nplanned models (f4.json runs): {n_plan}")
    for m in models:
        st = "; ".join(m["reasons"]) or "usable"
        extra = ""
        if not m["reasons"]:
            extra = (f"  images {len(m['sel'])}/{m['n_selected']} measurable  excess "
                     f"{per_model[m['run']]['excess']:+.4f}")
        bv = m.get("best_val")
        bvs = f"{bv:.3f}" if bv is not None else "n/a"
        print(f"   {m['run']:<66} {str(m.get('pipeline')):<6} val {bvs}  rec {m['record_status']:<9} {st}{extra}")
    for n in notes:
        print("NOTE", n)
    nm = sum(m.get("n_not_measurable", 0) for m in used)
    print(f"\nimages: {sum(len(m['sel']) for m in used)} (model, image) pairs used, {nm} not measurable dropped; "
          f"bootstrap: {N_BOOT} replicates, seed {BOOT_SEED}, one multinomial draw over {len(groups)} patients "
          f"(group_id), shared by every model")
    print(f"estimate (mean over models of the per-model mean): {fmt(res)}   replicates undefined: {res['n_nan']}")
    print(f"   beside, every (model, image) pair equal:         {fmt(res_pooled)}")
    for k, r in sens.items():
        print(f"   sensitivity, {k} ({r['n_patients']}): {fmt(r)}")
    if strict:
        print(f"   sensitivity, only images in each model's own test set ({strict['n_pairs']} pairs, "
              f"{strict['n_patients']} patients): {fmt(strict)}")
    print(f"   selected images NOT in the model's own test set, per used model: {sorted(set(n_not_own.values()))}; "
          f"in none of its recorded test or validation sets: {sorted(set(n_no_set.values()))}")
    print(f"used {n_used} / {n_plan}; left out {n_plan - n_used} {reasons_count}")
    print(f"decision: {outcome} ({reason})")

    print("\nreported beside, never deciding:")
    for k, r in groups_beside.items():
        print(f"   {k:<28} ({r['n_models']:>2} models) {fmt(r)}")
    if unseen:
        print(f"   unseen sources {unseen['sources']} ({unseen['n_patients']} patients): {fmt(unseen)}")
    print(f"   mean share {np.mean([v['mean_share'] for v in per_model.values()]):.4f}, mean baseline "
          f"{np.mean([v['mean_baseline'] for v in per_model.values()]):.4f}")
    print(f"runtime {time.time() - t0:.1f} s")

    if args.json:
        out = dict(claim="F4", estimate=res["estimate"], low=res["low"], high=res["high"], mde=res["mde"],
                   se=res["se"], n_used=n_used, n_left_out=n_plan - n_used, n_plan=n_plan,
                   left_out_reasons=reasons_count,
                   left_out={m["run"]: "; ".join(m["reasons"]) for m in left},
                   outcome=outcome, reason=reason, evaluated=evaluated,
                   n_patients=len(groups), unit="group_id", n_boot=N_BOOT, seed=BOOT_SEED,
                   replicates_undefined=res["n_nan"],
                   n_pairs=int(sum(len(m["sel"]) for m in used)), n_not_measurable=int(nm),
                   image_pooled=res_pooled, sensitivity=sens, own_test_only=strict,
                   n_selected_not_in_own_test=n_not_own, n_selected_in_no_recorded_set=n_no_set,
                   planted_check=dict(candidates=[list(c) for c in cands], check=check, chosen_map=chosen_map,
                                      first_passed=first_passed,
                                      planted_runs={p["run"]: "; ".join(p["reasons"]) or "usable" for p in planted},
                                      planted_differs_from_record=rec.get("planted_differs_from_record")),
                   per_model=per_model, beside=groups_beside, unseen=unseen, notes=notes)
        write_json(args.json, out, indent=2, default=float, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
