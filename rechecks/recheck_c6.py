"""Independent recomputation of claim C6 (Tartaglione et al. 2020, Sec. IV-C, the pre-processing ablation):
"the paper's pre-processing chain helps the model generalise across datasets".

What it recomputes, from the text of book/protocol.md (header and section "C6") and the raw run
records only (results/<run_id>/spec.json, metrics.json, scores.csv). It does NOT import covid_lib,
and it was written without reading any file of that package.

  comparison  = one (pre-training, training composition, seed) cell: ResNet-18 trained with the
                paper's chain (spec.pipeline "paper") against the same model, same pre-training,
                composition and seed, trained without any pre-processing (spec.pipeline "none").
  estimand    = AUC(chain) - AUC(no chain) on each OFF-DIAGONAL test set, i.e. each Table II test
                set other than the model's own composition's; pooled = the mean over the usable
                comparisons x their three off-diagonal test sets (each comparison has exactly
                three, so this equals the mean over comparisons of their per-comparison means).
  control     = the same difference on the model's OWN test set, same draws; reported beside,
                never deciding, together with (off-diagonal minus own), the part of the chain's
                effect that is specific to the other datasets.

Table II test sets: CORDA, CORDA&ChestXRay, CORDA&RSNA, CORDA&COVID-ChestXRay. Reading chosen:
the protocol's C1 text defines the Table II matrix as an own test set plus "the other three
Table II test sets", so there are four; the 15-image COVID-ChestXRay test set (scores.csv
test_set "COVID-ChestXRay") belongs to Table IV (claim C5) and is not an off-diagonal test set
here. --with-covidcx adds it (sensitivity reading, four off-diagonal sets per comparison).

Scales and planned comparisons:
  full : pre-trainings scratch and kermany_full (the whole ChestXRay set) x compositions CORDA
         and CORDA&ChestXRay x seeds 0-2 = 12 comparisons (grids ablation_full for pipeline
         none, table2_full for the chain). Every default-variant record of those cells counts,
         whatever its date: the seed-0 scratch records of both pipelines were made on
         2026-12-02 and are the only records of their cells (the later grids share their spec).
  563  : the older records, whose ChestXRay pre-training used the 563-image `kermany` set:
         pre-trainings scratch and kermany, only records created before the first record of
         the whole-set scale (earliest `created` of any record pre-trained on, or pre-training,
         kermany_full). Reading chosen for the planned grid: the older ablation grid is read off
         the records, i.e. the seeds at which an older pipeline-none record of these
         pre-trainings and compositions exists (seed 0 only), giving 4 planned comparisons.
         --plan-563 profile plans seeds 0-2 instead (the cpu profile's seeds; the 8 cells
         without an older pipeline-none record count as missing, so > 50% are left out and the
         verdict is inconclusive by rule). --include-newer also admits records made after the
         whole-set scale began (the ablation_full scratch records of seeds 1-2).

Records: task covid, profile cpu, arch resnet18, input 128, no freeze / adapt / plant, no
explicit precision override (spec.precision null); pipeline "paper" or "none" (the two arms).
Excluded variants are listed in the report. Where several default records fill one cell (none
do at present) the latest created is taken and a note printed.

Models left out (protocol header): did not learn (metrics.json best_value, the best validation
AUC, < 0.6) or collapsed (scores on the model's OWN composition's test set all >= 0.5 or all
< 0.5, or a 5-95% percentile range < 0.001). A comparison is left out when either of its two
models is missing or left out; left_out_reasons counts each left-out comparison once, by
precedence missing > did not learn > collapsed.

Resampling: paired patient-cluster bootstrap, 2000 replicates, numpy default_rng(0). ONE set of
multinomial draws (N patients out of N) over the union of the test patients (scores.csv
group_id) of the four Table II test sets, shared by every model, test set, pre-training and
seed, so CORDA's test patients nested inside each CORDA&X test set, and the same patients scored
by both arms, are resampled together. Each image is weighted by its patient's count and the AUC
is the weighted Mann-Whitney statistic (ties 1/2). A replicate in which some AUC is undefined
(a test set drew no COVID- or no COVID+ patient) is dropped and counted. Interval: 2.5 and 97.5
percentiles of the replicate pooled estimates; MDE = (z(0.975) + z(0.8)) x their SD (ddof=1).

Decision (directional): inconclusive with fewer than 3 usable comparisons or more than 50% of the
planned comparisons left out; otherwise reproduced when low > 0, not reproduced when high < 0,
no detectable effect when the interval includes 0 and high < MDE, inconclusive otherwise.

Usage:
    python rechecks/recheck_c6.py [--results DIR] [--scale full|563] [--json PATH]
                                  [--plan-563 records|profile] [--include-newer] [--with-covidcx]
                                  [--keep-threshold-collapsed]

--keep-threshold-collapsed: the collapse-rule sensitivity reading (book/verdicts.json,
collapse_sensitivity): a model counts as collapsed only when its own-test 5-95% score range is under
0.001; one whose scores all fall on one side of 0.5 but spread is kept. Did-not-learn is unchanged.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shared import (
    TestSetAUCs, add_collapse_option, apply_collapse_option, collapse_reason, decide, pool_defined, read_specs, record_reason, record_scores,
    whole_set_start, write_json)

TABLE2_TEST_SETS = ["CORDA", "CORDA&ChestXRay", "CORDA&RSNA", "CORDA&COVID-ChestXRay"]
EXTRA_TEST_SET = "COVID-ChestXRay"  # Table IV's 15 images; only with --with-covidcx
COMPOSITIONS = ["CORDA", "CORDA&ChestXRay"]
ARMS = ["paper", "none"]  # with the chain, without any pre-processing
SCALES = {"full": [None, "kermany_full"], "563": [None, "kermany"]}
FULL_SEEDS = [0, 1, 2]
N_BOOT = 2000
BOOT_SEED = 0
MIN_VAL_AUC = 0.6


def pre_name(p):
    return "scratch" if p is None else p


def index_records(specs, pretrains, before=None):
    """(arm, pretrain, composition, seed) -> [(dir, spec.json)], plus the excluded records."""
    cells, excluded = {}, []
    for d, j in specs:
        s = j.get("spec", {})
        if not os.path.basename(d).startswith("covid-"):
            continue
        if s.get("arch") != "resnet18" or s.get("composition") not in COMPOSITIONS:
            continue
        if s.get("pretrain") not in pretrains:
            continue
        why = record_reason(j, before, tuple(ARMS))
        if why:
            excluded.append((os.path.basename(d), f"{why} [pipeline {s.get('pipeline')}, seed {s.get('seed')}]"))
            continue
        cells.setdefault((s["pipeline"], s.get("pretrain"), s["composition"], int(s["seed"])), []).append((d, j))
    return cells, excluded


def choose(cands, notes, label):
    ok = [c for c in cands if os.path.exists(os.path.join(c[0], "scores.csv"))]
    if len(ok) > 1:
        ok.sort(key=lambda c: c[1].get("created", ""))
        notes.append(f"{label}: {len(ok)} default records {[os.path.basename(c[0]) for c in ok]}; took the latest created")
    return ok[-1] if ok else None


def main(argv=None):
    t0 = time.time()
    ap = argparse.ArgumentParser(description="Independent recomputation of claim C6 from the run records")
    ap.add_argument("--results", default=str(Path(__file__).resolve().parents[1] / "results"))
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--json", default=None)
    ap.add_argument("--plan-563", choices=["records", "profile"], default="records",
                    help="563 scale: plan the seeds of the older pipeline-none records (default) or seeds 0-2")
    ap.add_argument("--include-newer", action="store_true",
                    help="563 scale: also use records made after the whole-set scale began")
    ap.add_argument("--with-covidcx", action="store_true",
                    help="sensitivity: count the 15-image COVID-ChestXRay test set as an off-diagonal test set")
    add_collapse_option(ap)
    args = ap.parse_args(argv)
    rule = apply_collapse_option(args)

    test_sets = TABLE2_TEST_SETS + ([EXTRA_TEST_SET] if args.with_covidcx else [])
    pretrains = SCALES[args.scale]
    specs = read_specs(args.results)
    before = whole_set_start(specs) if args.scale == "563" and not args.include_newer else None
    cells, excluded = index_records(specs, pretrains, before)

    if args.scale == "full":
        seeds = FULL_SEEDS
        excluded = [e for e in excluded]  # nothing filtered by seed yet
    elif args.plan_563 == "profile":
        seeds = [0, 1, 2]
    else:
        seeds = sorted({k[3] for k in cells if k[0] == "none"})
    # records of seeds outside the plan (e.g. table2_full seeds 3-4) are not candidates: drop quietly
    cells = {k: v for k, v in cells.items() if k[3] in seeds}


    # ---- one record per model and its status ----
    notes, models = [], {}
    for arm in ARMS:
        for pre in pretrains:
            for comp in COMPOSITIONS:
                for seed in seeds:
                    key = (arm, pre, comp, seed)
                    rec = choose(cells.get(key, []), notes, f"{arm} {pre_name(pre)} {comp} s{seed}")
                    if rec is None:
                        models[key] = dict(dir=None, run=None, reason="missing (no record)")
                        continue
                    d, j = rec
                    mp = os.path.join(d, "metrics.json")
                    m = json.load(open(mp)) if os.path.exists(mp) else {}
                    bv = m.get("best_value", j.get("best_value"))
                    reason = None
                    if bv is None or not np.isfinite(bv) or bv < MIN_VAL_AUC:
                        reason = f"did not learn (best val AUC {bv})"
                    flag = m.get("did_not_learn", j.get("did_not_learn"))
                    if bool(flag) != (reason is not None):
                        notes.append(f"{os.path.basename(d)}: did_not_learn flag {flag} disagrees with best_value {bv}")
                    if reason is None:
                        df = record_scores(d)
                        s = df.loc[df.test_set == comp, "score"].to_numpy(float)
                        if len(s) == 0 or not np.isfinite(s).all():
                            reason = "collapsed (no finite own-test scores)"
                        else:
                            reason = collapse_reason(s)
                    models[key] = dict(dir=d, run=os.path.basename(d), best_value=bv, reason=reason,
                                       created=j.get("created"))

    comps = []
    for pre in pretrains:
        for comp in COMPOSITIONS:
            for seed in seeds:
                a, b = models[("paper", pre, comp, seed)], models[("none", pre, comp, seed)]
                reasons = [f"{role}: {m['reason']}" for role, m in (("chain", a), ("no chain", b)) if m["reason"]]
                comps.append(dict(pretrain=pre_name(pre), composition=comp, seed=seed, chain=a, nochain=b,
                                  used=not reasons, reason="; ".join(reasons)))

    dirs = sorted({m["dir"] for c in comps for m in (c["chain"], c["nochain"]) if m["dir"]})
    if not dirs:
        raise SystemExit("no records found")

    # ---- the claim's patients and the one set of draws ----
    table = TestSetAUCs(record_scores(dirs[0]), test_sets, N_BOOT, BOOT_SEED)
    groups = table.groups

    def aucs(d):
        """{test set: (point AUC, (B,) bootstrap AUCs)} for one record, checked against the reference."""
        return table(os.path.basename(d), record_scores(d))

    off_pt, off_bt, own_pt, own_bt, spec_pt, spec_bt, cell_rows = [], [], [], [], [], [], []
    for c in comps:
        if not (c["chain"]["dir"] and c["nochain"]["dir"]):
            continue
        A, B = aucs(c["chain"]["dir"]), aucs(c["nochain"]["dir"])
        own = c["composition"]
        offs = [ts for ts in test_sets if ts != own]
        c["diff_by_test_set"] = {ts: A[ts][0] - B[ts][0] for ts in test_sets}
        c["auc_chain"] = {ts: A[ts][0] for ts in test_sets}
        c["auc_nochain"] = {ts: B[ts][0] for ts in test_sets}
        c["diff_off"] = float(np.mean([c["diff_by_test_set"][ts] for ts in offs]))
        c["diff_own"] = c["diff_by_test_set"][own]
        if c["used"]:
            for ts in offs:
                off_pt.append(A[ts][0] - B[ts][0])
                off_bt.append(A[ts][1] - B[ts][1])
                cell_rows.append((c["pretrain"], own, c["seed"], ts, A[ts][0] - B[ts][0]))
            own_pt.append(A[own][0] - B[own][0])
            own_bt.append(A[own][1] - B[own][1])
            boff = np.mean([A[ts][1] - B[ts][1] for ts in offs], axis=0)
            spec_pt.append(c["diff_off"] - c["diff_own"])
            spec_bt.append(boff - (A[own][1] - B[own][1]))

    n_plan = len(comps)
    used = [c for c in comps if c["used"]]
    n_used, n_out = len(used), n_plan - len(used)
    by_comparison = {}
    for c in comps:
        if not c["used"]:
            k = next(name for name in ("missing", "did not learn", "collapsed") if name in c["reason"])
            by_comparison[k] = by_comparison.get(k, 0) + 1

    res = pool_defined(off_bt, off_pt)
    outcome, why = decide(res["low"], res["high"], res["mde"], n_used, n_plan)
    ctrl = pool_defined(own_bt, own_pt)
    spec = pool_defined(spec_bt, spec_pt)

    # ---- report ----
    print(f"C6 recheck, scale {args.scale}: ResNet-18 with the paper's chain minus without (pipeline none), "
          f"AUC on the off-diagonal Table II test sets")
    print(f"pre-trainings {[pre_name(p) for p in pretrains]}, compositions {COMPOSITIONS}, seeds {seeds}; "
          f"results {args.results}")
    print(f"test sets: {test_sets}")
    if args.scale == "563":
        print("older records only: created before " + str(before) if before is not None
              else "all records of these pre-trainings (--include-newer)")
        print(f"planned seeds: {seeds} ({'seeds of the older pipeline-none records' if args.plan_563 == 'records' else 'the cpu profile seeds 0-2'})")
    print(f"bootstrap: {N_BOOT} replicates (seed {BOOT_SEED}), one draw over {len(groups)} patients; "
          f"replicates dropped for an undefined AUC: {res['n_nan']}")
    ex = [e for e in excluded if int(e[1].rsplit("seed ", 1)[1].rstrip("]")) in seeds]
    if ex:
        print(f"excluded records of the planned cells ({len(ex)}):")
        for run, what in ex:
            print(f"  {run}: {what}")
    for n in notes:
        print("NOTE", n)
    print("\ncomparisons (chain minus no chain; off = mean over the off-diagonal test sets):")
    for c in comps:
        if "diff_off" in c:
            per = "  ".join(f"{ts.replace('CORDA&', 'C&')}:{c['diff_by_test_set'][ts]:+.3f}"
                            for ts in test_sets if ts != c["composition"])
            nums = f"off {c['diff_off']:+.4f}  own {c['diff_own']:+.4f}  [{per}]"
        else:
            nums = ""
        print(f"  {c['pretrain']:<12} {c['composition']:<16} s{c['seed']}  {'USED' if c['used'] else 'LEFT OUT':<8} "
              f"{nums}  {c['reason']}")
        print(f"      chain {c['chain']['run']}  |  no chain {c['nochain']['run']}")
    print(f"\nDECIDING  pooled off-diagonal estimate {res['estimate']:+.9f}   95% interval "
          f"[{res['low']:+.4f}, {res['high']:+.4f}]   SE {res['se']:.4f}   MDE {res['mde']:.4f}")
    print(f"used {n_used} / {n_plan}; left out {n_out}: {by_comparison}")
    print(f"outcome: {outcome} ({why})")
    print("\nreported beside, never deciding:")
    print(f"  CONTROL own test set: {ctrl['estimate']:+.6f} [{ctrl['low']:+.4f}, {ctrl['high']:+.4f}] MDE {ctrl['mde']:.4f}")
    print(f"  off-diagonal minus own (cross-dataset-specific part): {spec['estimate']:+.6f} "
          f"[{spec['low']:+.4f}, {spec['high']:+.4f}]")
    cdf = pd.DataFrame(cell_rows, columns=["pretrain", "composition", "seed", "test_set", "diff"])
    if len(cdf):
        for col in ("pretrain", "composition", "test_set"):
            for k, g in cdf.groupby(col):
                print(f"  by {col:<11} {k:<22} off-diagonal diff {g['diff'].mean():+.4f} ({len(g)} cells)")
        for (p, cp), g in cdf.groupby(["pretrain", "composition"]):
            own = [c["diff_own"] for c in used if c["pretrain"] == p and c["composition"] == cp]
            print(f"  {p:<12} {cp:<16} off {g['diff'].mean():+.4f}  own {np.mean(own):+.4f}")
    print(f"runtime {time.time() - t0:.1f} s")

    if args.json:
        out = {"claim": "C6", "scale": args.scale, "estimate": res["estimate"], "low": res["low"],
               "high": res["high"], "mde": res["mde"], "se": res["se"], "n_used": n_used, "n_left_out": n_out,
               "n_planned": n_plan, "left_out_reasons": by_comparison, "outcome": outcome,
               "control_own_test": ctrl, "off_minus_own": spec, "n_patients": len(groups),
               "replicates_dropped": res["n_nan"], "test_sets": test_sets, "seeds": seeds,
               "records_before": str(before) if before is not None else None,
               "comparisons": [{"pretrain": c["pretrain"], "composition": c["composition"], "seed": c["seed"],
                                "used": c["used"], "reason": c["reason"], "chain_run": c["chain"]["run"],
                                "nochain_run": c["nochain"]["run"], "diff_off": c.get("diff_off"),
                                "diff_own": c.get("diff_own"), "diff_by_test_set": c.get("diff_by_test_set")}
                               for c in comps],
               "excluded_records": [{"run": r, "why": w} for r, w in ex], **rule}
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
