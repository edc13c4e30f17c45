"""Independent recomputation of claim C4 (Tartaglione et al. 2020, Fig. 3, Sec. IV-C): "the encoder
of a model fine-tuned on CORDA&ChestXRay organises its features more by the SOURCE of an image than
by its COVID label".

What it recomputes, from the text of book/protocol.md (header and section "C4") and the analysis
record of the claim only: results/claims/c4-{scale}.csv (one row per image, encoder and reading:
columns encoder, reading, group_id, target, predicted; the leave-one-patient-out 10-nearest-
neighbour votes on 50 principal components were computed by the library and are NOT recomputed
here: no features are stored) and c4-{scale}.json (which run record each fine-tuned encoder came
from), plus those run records (results/<run_id>/spec.json, metrics.json, scores.csv) for the
protocol's "did not learn / collapsed" rule. It does NOT import covid_lib and was written without
reading any file of that package (nor its tests or notebooks).

Encoders in the CSV (read off the names): "fine-tuned/s<k>" = the encoder of ResNet-18 pre-trained
on kermany_full and fine-tuned on CORDA&ChestXRay with seed k (c4-full.json "runs"[k] names its
record); "random/s<k>" = the same architecture randomly initialised with seed k (the control; it has
no run record); "pixels/s0" = raw pixels of the chain's output (reported beside, never deciding).
Readings: "ChestXRay vs CORDA, COVID- only" (target ChestXRay / CORDA) is the SOURCE reading;
"COVID+ vs COVID- within CORDA" (target 1 / 0) is the LABEL reading. Every encoder has the same
rows (reading, group_id, target) in the same order; this is checked.

  balanced accuracy (BA) of one encoder and reading
              = mean over the reading's two target classes of the recall (share of the class's
                images whose predicted class is the target), images weighted by their patient's
                bootstrap count (weight 1 for the point estimate);
  margin(e)   = BA(e, source reading) - BA(e, label reading);
  comparison  = one seed s in 0-4: margin(fine-tuned/s) - margin(random/s);
  estimate    = the mean over the usable comparisons (seeds).

Models left out (protocol header), applied to the fine-tuned model of each seed (the record named by
c4-full.json; an independent lookup of the default-variant record of that cell - task covid, profile
cpu, arch resnet18, composition CORDA&ChestXRay, pre-training kermany_full, pipeline paper, input
128, nothing frozen / adapted / planted, no precision override - is printed beside and a mismatch is
noted): did not learn = metrics.json best_value (best validation AUC) < 0.6; collapsed = its scores
on its OWN test set (scores.csv test_set "CORDA&ChestXRay", the composition it was trained on) all
>= 0.5, all < 0.5, or a 5-95% percentile range < 0.001. Reading chosen: the randomly initialised
control has not been trained and has no record or scores, so the rule cannot and does not apply to
it; it is "missing" only when its rows are absent from the CSV. A comparison is left out when either
encoder's rows are missing from the CSV or the fine-tuned record is missing, did not learn or
collapsed (precedence in left_out_reasons: missing > did not learn > collapsed). Planned: seeds 0-4
(5 comparisons).

Resampling: paired patient-cluster bootstrap, 2000 replicates, numpy default_rng(0)
(shared.patient_draws: multinomial, N patients out of N). ONE set of draws over the sorted unique
group_id of every row of the CSV (the union over encoders and both readings: CORDA's test patients,
COVID+ and COVID-, and the ChestXRay COVID- patients; CORDA's COVID- patients appear in both
readings and are resampled together), shared by every encoder, reading and seed. A replicate in
which some class of some reading has zero weight (no CORDA COVID- patient drawn; ~e^-9 per
replicate) has an undefined BA; it is dropped from the pooled replicates and counted
(shared.pool_defined). Interval: 2.5 and 97.5 percentiles of the replicate pooled estimates; MDE =
(z(0.975) + z(0.8)) x their SD (ddof=1).
The protocol fixes the number of replicates and the seed, not the generator call. --draws indices
(a sensitivity, not the default) draws the same bootstrap distribution another way: patient indices
default_rng(0).integers(0, N, (2000, N)) over the same sorted patients, counted per replicate. Found
after this script's numbers were written: that variant reproduces the library's C4 interval and MDE
(and its raw-pixel interval) exactly, so the library draws indices where shared.patient_draws draws
multinomial counts; the point estimate does not depend on the draws.

Decision (directional, shared.decide): inconclusive with fewer than 3 usable comparisons or more
than 50% of the 5 planned left out; reproduced when low > 0; not reproduced when high < 0; no
detectable effect when the interval includes 0 and high < MDE; inconclusive otherwise.

Reported beside, never deciding: source and label BA per encoder (chance 0.5), each encoder's margin,
the pooled uncontrolled margin of the fine-tuned encoders (the paper's reading), and the raw-pixel
margin. Only the `full` scale has a record (there is no c4-563.csv); --scale 563 writes an
"inconclusive, not evaluated" entry when asked for --json.

Note on the data: the CSV's ChestXRay COVID- images (262 images, 223 patients) are more than the 40
ChestXRay images (38 patients) of the CORDA&ChestXRay test set in the run's scores.csv (those 38
patients are all among them); which ChestXRay test images "the study's sets" means is the library's
choice, taken from the record as is (the counts are printed).

Usage:
    python rechecks/recheck_c4.py [--results DIR] [--scale full|563] [--json PATH]
                                  [--draws multinomial|indices]
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shared import collapse_reason, decide, patient_draws, pool_defined, read_specs, variant_reason, write_json

CLAIM = "C4"
SOURCE_READING = "ChestXRay vs CORDA, COVID- only"
LABEL_READING = "COVID+ vs COVID- within CORDA"
READINGS = [SOURCE_READING, LABEL_READING]
COMPOSITION = "CORDA&ChestXRay"
PRETRAIN = "kermany_full"
SEEDS = [0, 1, 2, 3, 4]
N_BOOT = 2000
BOOT_SEED = 0
MIN_VAL_AUC = 0.6


def balanced_accuracy(target, predicted, W):
    """Point BA (unit weights) and (B,) replicate BAs under image weights W (B, n); NaN where a
    class has zero weight."""
    classes = sorted(set(target))
    pt, bt = [], []
    for c in classes:
        m = target == c
        hit = (predicted[m] == c).astype(float)
        pt.append(hit.mean())
        w = W[:, m]
        den = w.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            bt.append(np.where(den > 0, (w * hit).sum(1) / den, np.nan))
    return float(np.mean(pt)), np.mean(bt, axis=0)


def fine_tuned_status(results, run, seed, indep):
    """(reason or None, info) for the fine-tuned record ``run`` of ``seed``."""
    info = dict(run=run, seed=seed, best_value=None, independent=indep)
    if run is None:
        return "missing (no record named)", info
    d = os.path.join(results, run)
    if not os.path.exists(os.path.join(d, "spec.json")):
        return "missing (record not found)", info
    j = json.load(open(os.path.join(d, "spec.json")))
    s = j.get("spec", {})
    info["spec_check"] = None
    bad = [k for k, v in (("arch", "resnet18"), ("composition", COMPOSITION), ("pretrain", PRETRAIN),
                          ("seed", seed)) if s.get(k) != v]
    why = variant_reason(s)
    if bad or why:
        info["spec_check"] = f"record is not the planned cell: {bad} {why or ''}"
    mp = os.path.join(d, "metrics.json")
    m = json.load(open(mp)) if os.path.exists(mp) else {}
    bv = m.get("best_value", j.get("best_value"))
    info["best_value"] = bv
    if bv is None or not np.isfinite(bv) or bv < MIN_VAL_AUC:
        return f"did not learn (best val AUC {bv})", info
    sp = os.path.join(d, "scores.csv")
    if not os.path.exists(sp):
        return "missing (no scores.csv for the collapse rule)", info
    sc = pd.read_csv(sp)
    own = sc.loc[sc.test_set == COMPOSITION, "score"].to_numpy(float)
    info["n_own_test"] = int(len(own))
    if len(own) == 0 or not np.isfinite(own).all():
        return "collapsed (no finite own-test scores)", info
    return collapse_reason(own), info


def independent_lookup(results):
    """seed -> [default-variant record names] of the planned cell, found from the specs alone."""
    out = {}
    for d, j in read_specs(results):
        s = j.get("spec", {})
        if not os.path.basename(d).startswith("covid-"):
            continue
        if s.get("arch") != "resnet18" or s.get("composition") != COMPOSITION or s.get("pretrain") != PRETRAIN:
            continue
        if variant_reason(s):
            continue
        out.setdefault(int(s["seed"]), []).append((j.get("created", ""), os.path.basename(d)))
    return {k: [n for _, n in sorted(v)] for k, v in out.items()}


def not_evaluated(args, t0, why):
    print(f"C4 recheck, scale {args.scale}: {why}; not evaluated")
    if args.json:
        nan = float("nan")
        out = {"claim": CLAIM, "scale": args.scale, "estimate": nan, "low": nan, "high": nan, "mde": nan,
               "se": nan, "n_used": 0, "n_left_out": len(SEEDS), "n_planned": len(SEEDS),
               "left_out_reasons": {"missing": len(SEEDS)}, "outcome": "inconclusive",
               "reason": f"not evaluated: {why}"}
        write_json(args.json, out)
    print(f"runtime {time.time() - t0:.1f} s")
    return 0


def main(argv=None):
    t0 = time.time()
    ap = argparse.ArgumentParser(description="Independent recomputation of claim C4 from its analysis record")
    ap.add_argument("--results", default=str(Path(__file__).resolve().parents[1] / "results"))
    ap.add_argument("--scale", choices=["full", "563"], default="full")
    ap.add_argument("--json", default=None)
    ap.add_argument("--draws", choices=["multinomial", "indices"], default="multinomial",
                    help="bootstrap draws: multinomial counts (shared.patient_draws, default) or patient "
                         "indices default_rng(0).integers(0, N, (B, N)) (sensitivity)")
    args = ap.parse_args(argv)

    csv_path = os.path.join(args.results, "claims", f"c4-{args.scale}.csv")
    meta_path = os.path.join(args.results, "claims", f"c4-{args.scale}.json")
    if not os.path.exists(csv_path):
        return not_evaluated(args, t0, f"no record {os.path.relpath(csv_path, args.results)}")
    df = pd.read_csv(csv_path, dtype=str)
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    runs = {int(k): v for k, v in meta.get("runs", {}).items()}
    need = {"encoder", "reading", "group_id", "target", "predicted"}
    if not need <= set(df.columns):
        raise SystemExit(f"{csv_path}: columns {list(df.columns)} lack {need - set(df.columns)}")
    if df[list(need)].isna().any().any():
        raise SystemExit(f"{csv_path}: empty cells")
    unknown = set(df.reading) - set(READINGS)
    if unknown:
        raise SystemExit(f"{csv_path}: unknown readings {unknown}")

    # ---- the rows of each encoder must be the same images (reading, patient, target, order) ----
    encoders = sorted(df.encoder.unique())
    ref = None
    for e in encoders:
        t = df[df.encoder == e][["reading", "group_id", "target"]].reset_index(drop=True)
        if ref is None:
            ref = t
        elif not t.equals(ref):
            raise SystemExit(f"{e}: rows differ from {encoders[0]}'s (reading, patient, target)")
    for r in READINGS:
        tg = sorted(ref[ref.reading == r].target.unique())
        if len(tg) != 2:
            raise SystemExit(f"reading {r!r}: targets {tg}, expected two classes")

    # ---- the one set of draws: every patient of the record, sorted ----
    groups = sorted(df.group_id.unique())
    gidx = {g: i for i, g in enumerate(groups)}
    if args.draws == "multinomial":
        counts = patient_draws(groups, N_BOOT, BOOT_SEED)
    else:
        idx = np.random.default_rng(BOOT_SEED).integers(0, len(groups), (N_BOOT, len(groups)))
        counts = np.stack([np.bincount(i, minlength=len(groups)) for i in idx]).astype(float)

    rows = {}  # reading -> (target, group columns)
    for r in READINGS:
        t = ref[ref.reading == r]
        rows[r] = (t.target.to_numpy(), counts[:, [gidx[g] for g in t.group_id]])

    enc = {}
    for e in encoders:
        g = df[df.encoder == e]
        res = {}
        for r in READINGS:
            tgt, W = rows[r]
            pred = g[g.reading == r].predicted.to_numpy()
            res[r] = balanced_accuracy(tgt, pred, W)
        pt = res[SOURCE_READING][0] - res[LABEL_READING][0]
        bt = res[SOURCE_READING][1] - res[LABEL_READING][1]
        enc[e] = dict(source_ba=res[SOURCE_READING][0], label_ba=res[LABEL_READING][0], margin=pt, margin_bt=bt,
                      source_bt=res[SOURCE_READING][1], label_bt=res[LABEL_READING][1])

    # ---- comparisons, left-out rule ----
    indep = independent_lookup(args.results)
    notes, comps = [], []
    for s in SEEDS:
        ft, rd = f"fine-tuned/s{s}", f"random/s{s}"
        reasons = []
        if ft not in enc:
            reasons.append(f"missing ({ft} not in the CSV)")
        if rd not in enc:
            reasons.append(f"missing ({rd} not in the CSV)")
        why, info = fine_tuned_status(args.results, runs.get(s), s, indep.get(s, []))
        if why:
            reasons.append(f"fine-tuned: {why}")
        if info.get("spec_check"):
            notes.append(f"seed {s}: {info['spec_check']}")
        if runs.get(s) and indep.get(s) and runs[s] != indep[s][-1]:
            notes.append(f"seed {s}: the CSV's record {runs[s]} is not the latest default record {indep[s]}")
        c = dict(seed=s, fine_tuned=ft, random=rd, run=runs.get(s), best_value=info.get("best_value"),
                 used=not reasons, reason="; ".join(reasons))
        if ft in enc and rd in enc:
            c["margin_fine_tuned"] = enc[ft]["margin"]
            c["margin_random"] = enc[rd]["margin"]
            c["diff"] = enc[ft]["margin"] - enc[rd]["margin"]
            c["diff_bt"] = enc[ft]["margin_bt"] - enc[rd]["margin_bt"]
        comps.append(c)

    used = [c for c in comps if c["used"]]
    n_plan, n_used = len(comps), len(used)
    n_out = n_plan - n_used
    left = {}
    for c in comps:
        if not c["used"]:
            k = next(n for n in ("missing", "did not learn", "collapsed") if n in c["reason"])
            left[k] = left.get(k, 0) + 1

    res = pool_defined([c["diff_bt"] for c in used], [c["diff"] for c in used])
    outcome, why = decide(res["low"], res["high"], res["mde"], n_used, n_plan)
    unctl = pool_defined([enc[c["fine_tuned"]]["margin_bt"] for c in used],
                         [enc[c["fine_tuned"]]["margin"] for c in used])
    ctrl = pool_defined([enc[c["random"]]["margin_bt"] for c in used],
                        [enc[c["random"]]["margin"] for c in used])
    per_seed = {c["seed"]: pool_defined([c["diff_bt"]], [c["diff"]]) for c in comps if "diff" in c}

    # ---- report ----
    n_img = {r: len(rows[r][0]) for r in READINGS}
    print(f"C4 recheck, scale {args.scale}: margin(fine-tuned encoder) - margin(random-init encoder, same seed), "
          f"margin = BA(source) - BA(label), 10-NN votes of {csv_path}")
    print(f"k = {meta.get('k')}; encoders {encoders}")
    for r in READINGS:
        t = ref[ref.reading == r]
        print(f"  reading {r!r}: {n_img[r]} images per encoder; per class "
              + ", ".join(f"{k}: {len(g)} images / {g.group_id.nunique()} patients" for k, g in t.groupby("target")))
    print(f"bootstrap: {N_BOOT} replicates (seed {BOOT_SEED}, {args.draws} draws), one draw over {len(groups)} patients (sorted group_id "
          f"of the whole CSV); replicates dropped for an undefined BA: {res['n_nan']}")
    for n in notes:
        print("NOTE", n)
    print("\nper encoder (point; chance 0.5):")
    for e in encoders:
        x = enc[e]
        print(f"  {e:<14} BA source {x['source_ba']:.4f}  BA label {x['label_ba']:.4f}  margin {x['margin']:+.4f}")
    print("\ncomparisons (fine-tuned minus random margin):")
    for c in comps:
        nums = (f"ft {c['margin_fine_tuned']:+.4f}  rand {c['margin_random']:+.4f}  diff {c['diff']:+.4f} "
                f"[{per_seed[c['seed']]['low']:+.3f}, {per_seed[c['seed']]['high']:+.3f}]") if "diff" in c else ""
        print(f"  s{c['seed']}  {'USED' if c['used'] else 'LEFT OUT':<8} {nums}  best val AUC {c['best_value']}  "
              f"{c['reason']}")
        print(f"      record {c['run']}  (independent lookup: {indep.get(c['seed'], [])})")
    print(f"\nDECIDING  pooled estimate {res['estimate']:+.9f}   95% interval [{res['low']:+.4f}, {res['high']:+.4f}]"
          f"   SE {res['se']:.4f}   MDE {res['mde']:.4f}")
    print(f"used {n_used} / {n_plan}; left out {n_out}: {left}")
    print(f"outcome: {outcome} ({why})")
    print("\nreported beside, never deciding:")
    print(f"  uncontrolled margin of the fine-tuned encoders (paper's reading): {unctl['estimate']:+.4f} "
          f"[{unctl['low']:+.4f}, {unctl['high']:+.4f}]")
    print(f"  CONTROL margin of the random-init encoders: {ctrl['estimate']:+.4f} [{ctrl['low']:+.4f}, {ctrl['high']:+.4f}]")
    for kind in ("fine-tuned", "random"):
        es = [f"{kind}/s{c['seed']}" for c in used]
        if es:
            print(f"  {kind:<10} mean BA source {np.mean([enc[e]['source_ba'] for e in es]):.4f}  "
                  f"mean BA label {np.mean([enc[e]['label_ba'] for e in es]):.4f}")
    pix = [e for e in encoders if e.startswith("pixels")]
    for e in pix:
        p = pool_defined([enc[e]["margin_bt"]], [enc[e]["margin"]])
        print(f"  raw pixels {e}: margin {p['estimate']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}]")
    print(f"runtime {time.time() - t0:.1f} s")

    if args.json:
        out = {"claim": CLAIM, "scale": args.scale, "estimate": res["estimate"], "low": res["low"],
               "high": res["high"], "mde": res["mde"], "se": res["se"], "n_used": n_used, "n_left_out": n_out,
               "n_planned": n_plan, "left_out_reasons": left, "outcome": outcome, "reason": why,
               "n_patients": len(groups), "draws": args.draws, "replicates_dropped": res["n_nan"], "k": meta.get("k"),
               "uncontrolled_fine_tuned_margin": unctl, "control_random_margin": ctrl,
               "encoders": {e: {"source_ba": enc[e]["source_ba"], "label_ba": enc[e]["label_ba"],
                                "margin": enc[e]["margin"]} for e in encoders},
               "comparisons": [{k: v for k, v in c.items() if k != "diff_bt"} for c in comps],
               "notes": notes}
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
