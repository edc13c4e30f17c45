"""Independent recomputation of claim C1 (Tartaglione et al. 2020, Table II, Sec. IV-A).

What it recomputes, from the protocol's text (book/protocol.md, header and section "C1") and the
raw run records only (results/<run_id>/spec.json, metrics.json, scores.csv). It does NOT import
covid_lib and was written without reading its code.

Claim C1: a model trained on an augmented composition (CORDA&ChestXRay, CORDA&RSNA,
CORDA&COVID-ChestXRay) scores better on its own test set than on the other Table II test sets,
by more than the CORDA-only model of the same pre-training and seed does on the same images.

  gap(model; A)  = AUC(model, test set of A) - mean AUC(model, the other three Table II test sets)
                   (Table II test sets: CORDA, CORDA&ChestXRay, CORDA&RSNA, CORDA&COVID-ChestXRay;
                    the 15-image COVID-ChestXRay test set belongs to Table IV and is not one of them)
  comparison     = gap(model trained on A; A) - gap(CORDA-only model; A)
                   same architecture (ResNet-18), same pre-training, same seed
  pooled         = mean over the usable comparisons (3 pre-trainings x 3 compositions x seeds)

Scales:
  full : pre-trainings scratch, kermany_full (whole ChestXRay set), nih (RSNA); seeds 0-4.
  563  : "the older records" (protocol.md): pre-trainings scratch, kermany (the 563-image
         ChestXRay set), nih; seeds 0-2 (profile "cpu" seeds [0, 1, 2]); only records created
         before the first record of the whole-set scale (the earliest `created` of any record
         pre-trained on, or pre-training on, kermany_full). The scratch and nih records that
         the whole-set grid added later (seeds 1-2 of CORDA&RSNA and CORDA&COVID-ChestXRay) are
         not "older records" and count as missing here; --include-newer adds them (sensitivity).

Records: profile "cpu", ResNet-18, default variant only (pipeline "paper", input 128, no freeze,
no adapt, no plant, no explicit precision override); excluded variants are listed in the report.

Models left out (protocol header): did not learn (best validation AUC < 0.6, metrics.json
best_value) or collapsed (scores on the model's OWN composition's test set all >= 0.5 or all
< 0.5, or a 5-95% percentile range < 0.001). A comparison is left out when either of its two
models is left out or has no record; left_out_reasons counts each left-out comparison once, by
precedence missing > did not learn > collapsed.

Resampling: paired patient-cluster bootstrap, 2000 replicates, numpy default_rng(0). ONE set of
multinomial draws over the union of every test patient (scores.csv column group_id: the patient
cluster) of the four test sets of the claim, shared by every model, test set, pre-training and
seed, so CORDA's test patients nested inside each CORDA&X test set are resampled together. Each
image is weighted by the number of times its patient was drawn and the AUC is the weighted
Mann-Whitney statistic (ties count 1/2). A replicate in which some AUC is undefined (a test set
drew no COVID- or no COVID+ patient; CORDA's test set has only 9 COVID- patients among 143, so
this happens about once in 10,000 replicates; none with seed 0) is dropped and counted in the
report. Interval: 2.5 and 97.5 percentiles of the replicate pooled estimates;
MDE = (z(0.975) + z(0.8)) x their standard deviation (ddof=1).

Decision (directional): reproduced when low > 0; not reproduced when high < 0; no detectable
effect when the interval includes 0 and high < MDE; inconclusive otherwise; always inconclusive
with fewer than 3 usable comparisons or more than 50% of the planned comparisons left out.

Usage:
    python rechecks/recheck_c1.py [--results DIR] [--scale full|563] [--json PATH] [--include-newer]
                                  [--keep-threshold-collapsed]

--keep-threshold-collapsed: the collapse-rule sensitivity reading (book/verdicts.json,
collapse_sensitivity): a model counts as collapsed only when its own-test 5-95% score range is under
0.001; one whose scores all fall on one side of 0.5 but spread is kept. Did-not-learn is unchanged.
"""
import argparse
import glob
import json
import os
import sys
from pathlib import Path

import numpy as np

from shared import (
    TestSetAUCs, add_collapse_option, apply_collapse_option, collapse_reason, decide, pool_defined, read_specs, record_reason, record_scores,
    whole_set_start)

TABLE2_TEST_SETS = ["CORDA", "CORDA&ChestXRay", "CORDA&RSNA", "CORDA&COVID-ChestXRay"]
AUGMENTED = ["CORDA&ChestXRay", "CORDA&RSNA", "CORDA&COVID-ChestXRay"]
BASE = "CORDA"
ARCH = "resnet18"
SCALES = {
    "full": {"pretrains": [None, "kermany_full", "nih"], "seeds": [0, 1, 2, 3, 4]},
    "563": {"pretrains": [None, "kermany", "nih"], "seeds": [0, 1, 2]},
}
N_BOOT = 2000
BOOT_SEED = 0
MIN_VAL_AUC = 0.6


def index_records(results, pretrains, seeds, before=None):
    """(pretrain, composition, seed) -> list of (dir, spec.json); plus the excluded records."""
    cells, excluded = {}, []
    for d in sorted(glob.glob(os.path.join(results, "covid-*"))):
        p = os.path.join(d, "spec.json")
        if not os.path.exists(p):
            continue
        with open(p) as f:
            j = json.load(f)
        s = j.get("spec", {})
        if s.get("arch") != ARCH or s.get("composition") not in TABLE2_TEST_SETS:
            continue
        if s.get("pretrain") not in pretrains or s.get("seed") not in seeds:
            continue
        why = record_reason(j, before)
        if why:
            excluded.append((os.path.basename(d), why))
            continue
        cells.setdefault((s.get("pretrain"), s["composition"], s["seed"]), []).append((d, j))
    return cells, excluded


def choose(cands, notes, key):
    ok = [c for c in cands if os.path.exists(os.path.join(c[0], "scores.csv"))]
    if len(ok) > 1:
        ok.sort(key=lambda c: c[1].get("created", ""))
        notes.append(f"{key}: {len(ok)} default-variant records "
                     f"{[os.path.basename(c[0]) for c in ok]}; took the latest created")
    return ok[-1] if ok else None


def fmt_pre(p):
    return "scratch" if p is None else p


def main(argv=None):
    ap = argparse.ArgumentParser(description="Independent recomputation of claim C1 from the run records")
    ap.add_argument("--results", default=str(Path(__file__).resolve().parents[1] / "results"))
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--json", default=None)
    ap.add_argument("--include-newer", action="store_true",
                    help="scale 563 only: also use the scratch/nih records made after the whole-set scale began")
    add_collapse_option(ap)
    args = ap.parse_args(argv)
    rule = apply_collapse_option(args)
    cfg = SCALES[args.scale]
    before = whole_set_start(read_specs(args.results)) if args.scale == "563" and not args.include_newer else None
    cells, excluded = index_records(args.results, cfg["pretrains"], cfg["seeds"], before)


    # ---- one record per model (pretrain, composition, seed) and its exclusion status ----
    notes, models = [], {}
    for pre in cfg["pretrains"]:
        for comp in [BASE] + AUGMENTED:
            for seed in cfg["seeds"]:
                key = (pre, comp, seed)
                rec = choose(cells.get(key, []), notes, f"{fmt_pre(pre)} {comp} s{seed}")
                if rec is None:
                    models[key] = dict(dir=None, reason="no record")
                    continue
                d, j = rec
                mpath = os.path.join(d, "metrics.json")
                m = json.load(open(mpath)) if os.path.exists(mpath) else {}
                bv = m.get("best_value", j.get("best_value"))
                flag = m.get("did_not_learn", j.get("did_not_learn"))
                reason = None
                if bv is None or not np.isfinite(bv) or bv < MIN_VAL_AUC:
                    reason = f"did not learn (best val AUC {bv:.3f})" if bv is not None else "did not learn (no best value)"
                if bool(flag) != (reason is not None):
                    notes.append(f"{fmt_pre(pre)} {comp} s{seed}: did_not_learn flag {flag} "
                                 f"disagrees with best_value {bv}")
                if reason is None:
                    own = record_scores(d)
                    s = own.loc[own.test_set == comp, "score"].to_numpy(float)
                    if len(s) == 0 or not np.isfinite(s).all():
                        reason = "no (finite) own-test scores"
                    else:
                        reason = collapse_reason(s)
                models[key] = dict(dir=d, run=os.path.basename(d), best_value=bv, reason=reason)

    # ---- planned comparisons ----
    comps = []
    for pre in cfg["pretrains"]:
        for comp in AUGMENTED:
            for seed in cfg["seeds"]:
                a, b = models[(pre, comp, seed)], models[(pre, BASE, seed)]
                reasons = []
                for role, m in (("augmented", a), ("CORDA-only", b)):
                    if m["reason"]:
                        reasons.append(f"{role} model: {m['reason']}")
                comps.append(dict(pretrain=fmt_pre(pre), composition=comp, seed=seed,
                                  aug=a, base=b, used=not reasons, reason="; ".join(reasons)))
    used = [c for c in comps if c["used"]]

    # ---- the claim's test patients and the one set of draws ----
    dirs = sorted({m["dir"] for c in comps for m in (c["aug"], c["base"]) if m["dir"]})
    if not dirs:
        raise SystemExit("no records found")
    table = TestSetAUCs(record_scores(dirs[0]), TABLE2_TEST_SETS, N_BOOT, BOOT_SEED)
    groups = table.groups

    def aucs(d):
        """{test set: (point AUC, (B,) bootstrap AUCs)} for one record, checked against the reference."""
        return table(os.path.basename(d), record_scores(d))

    def gap(d, comp):
        a = aucs(d)
        others = [ts for ts in TABLE2_TEST_SETS if ts != comp]
        pt = a[comp][0] - np.mean([a[ts][0] for ts in others])
        bt = a[comp][1] - np.mean([a[ts][1] for ts in others], axis=0)
        return pt, bt

    boot_rows = []
    for c in comps:
        if c["aug"]["dir"] and c["base"]["dir"]:
            ga, gba = gap(c["aug"]["dir"], c["composition"])
            gb, gbb = gap(c["base"]["dir"], c["composition"])
            c.update(gap_aug=ga, gap_base=gb, diff=ga - gb)
            if c["used"]:
                boot_rows.append(gba - gbb)

    n_plan = len(comps)
    n_used = len(used)
    n_out = n_plan - n_used
    reasons = {}
    for c in comps:
        if not c["used"]:
            for r in c["reason"].split("; "):
                kind = r.split(": ", 1)[1].split(" (")[0]
                reasons[kind] = reasons.get(kind, 0) + 1
    # one reason per left-out comparison, by precedence: missing > did not learn > collapsed
    by_comparison = {}
    for c in comps:
        if not c["used"]:
            kinds = {r.split(": ", 1)[1].split(" (")[0] for r in c["reason"].split("; ")}
            k = next(name for key, name in (("no record", "missing"), ("did not learn", "did not learn"),
                                             ("collapsed", "collapsed"), ("no (finite) own-test scores", "no scores"))
                     if key in kinds)
            by_comparison[k] = by_comparison.get(k, 0) + 1

    r = pool_defined(boot_rows, [c["diff"] for c in used])
    est, lo, hi, se, mde, n_nan = (r[k] for k in ("estimate", "low", "high", "se", "mde", "n_nan"))
    outcome, why = decide(lo, hi, mde, n_used, n_plan)

    # ---- report ----
    print(f"C1 recheck, scale {args.scale}: pre-trainings {[fmt_pre(p) for p in cfg['pretrains']]}, "
          f"seeds {cfg['seeds']}; results {args.results}")
    if args.scale == "563":
        print(f"older records only: created before {before}" if before is not None
              else "all records of these pre-trainings and seeds (--include-newer)")
    print(f"bootstrap: {N_BOOT} replicates (seed {BOOT_SEED}), one draw over {len(groups)} patients "
          f"(group_id) of the test sets {TABLE2_TEST_SETS}; replicates with an undefined AUC (dropped): {n_nan}")
    if excluded:
        print(f"excluded records ({len(excluded)}):")
        for run, what in excluded:
            print(f"  {run}: {what}")
    for n in notes:
        print("NOTE", n)
    print("\ncomparisons (gap = own-test AUC - mean AUC on the other three; diff = gap(aug) - gap(CORDA-only)):")
    for c in comps:
        if "diff" in c:
            nums = f"gap aug {c['gap_aug']:+.4f}  gap CORDA {c['gap_base']:+.4f}  diff {c['diff']:+.4f}"
        else:
            nums = " " * 52
        print(f"  {c['pretrain']:<12} {c['composition']:<22} s{c['seed']}  {'USED' if c['used'] else 'LEFT OUT':<8} "
              f"{nums}  {c['reason']}")
    print(f"\npooled estimate {est:+.9f}   95% interval [{lo:+.4f}, {hi:+.4f}]   SE {se:.4f}   MDE {mde:.4f}")
    print(f"used {n_used} / {n_plan}; left out {n_out}: {by_comparison}")
    print(f"outcome: {outcome} ({why})")
    print("\nreported beside (usable comparisons):")
    for comp in AUGMENTED:
        g = [c for c in used if c["composition"] == comp]
        if g:
            print(f"  {comp:<22} n={len(g):2d}  controlled diff {np.mean([c['diff'] for c in g]):+.4f}   "
                  f"uncontrolled gap (aug model) {np.mean([c['gap_aug'] for c in g]):+.4f}   "
                  f"CORDA-only gap {np.mean([c['gap_base'] for c in g]):+.4f}")
    for pre in cfg["pretrains"]:
        g = [c for c in used if c["pretrain"] == fmt_pre(pre)]
        if g:
            print(f"  pretrain {fmt_pre(pre):<13} n={len(g):2d}  controlled diff {np.mean([c['diff'] for c in g]):+.4f}")
    if used:
        print(f"  uncontrolled gap, all usable: {np.mean([c['gap_aug'] for c in used]):+.4f}")

    if args.json:
        res = {"claim": "C1", "scale": args.scale, "estimate": est, "low": lo, "high": hi, "mde": mde,
               "se": se, "n_used": n_used, "n_left_out": n_out, "n_planned": n_plan,
               "left_out_reasons": by_comparison, "left_out_model_reasons": reasons,
               "outcome": outcome, "n_patients": len(groups),
               "comparisons": [{k: c.get(k) for k in ("pretrain", "composition", "seed", "used", "reason",
                                                      "gap_aug", "gap_base", "diff")}
                               | {"aug_run": c["aug"].get("run"), "base_run": c["base"].get("run")}
                               for c in comps],
               "excluded_records": [{"run": r, "why": w} for r, w in excluded],
               "records_before": str(before) if before is not None else None, **rule}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
