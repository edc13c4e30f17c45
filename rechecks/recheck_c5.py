"""Independent recomputation of claim C5 (Tartaglione et al. 2020, Table IV, Sec. IV-E).

Claim C5: a ResNet-18 pre-trained on ChestXRay and trained on COVID-ChestXRay alone (Table IV)
scores higher on its own fixed 15-image test set than on the CORDA test set.

What it recomputes, from the protocol's text (book/protocol.md, header and section "C5") and the
raw run records only (results/<run_id>/spec.json, metrics.json, scores.csv). It does NOT import
covid_lib and was written without reading its code.

  comparison (one per seed) = AUC(model, test set "COVID-ChestXRay", the fixed 15 images)
                              - AUC(same model, test set "CORDA")
  pooled estimate           = mean over the usable comparisons (seeds)

Scales:
  full : pre-training kermany_full (the whole ChestXRay set), seeds 0-4 (grid table2_full).
  563  : "the older records": pre-training kermany (the 563-image ChestXRay set); the seeds of
         the records' own profile ("cpu": seeds [0, 1, 2]); only records created before the first
         record of the whole-set scale (the earliest `created` of any record pre-trained on, or
         pre-training on, kermany_full).

Records: task covid, profile cpu, arch resnet18, composition COVID-ChestXRay, default variant only
(pipeline "paper", input 128, no freeze / adapt / plant, no explicit precision override); other
records of that arch / composition / pre-training are listed as excluded, with the reason. When
several default records fill one (pre-training, seed) cell the latest created is taken (noted).

Models left out (protocol header): did not learn (metrics.json best_value, the best validation
AUC, < 0.6) or collapsed: the scores on the model's OWN test set all >= 0.5 or all < 0.5, or
their 5-95% percentile range < 0.001. Reading chosen: for a model trained on COVID-ChestXRay the
"own test" is its composition's test set, i.e. the 15 images (the same reading as the C1-C3
rechecks: the test set named like the training composition). Its scores on all its test images
are reported beside as a sensitivity (would it also count as collapsed there?). A comparison has
one model, so it is left out exactly when that model is missing, did not learn or collapsed
(precedence in left_out_reasons: missing > did not learn > collapsed).

Control (protocol: "the same model's AUC on all of its test patients in place of the 15
images"), reported beside, not deciding. Reading chosen: the protocol's estimand does not subtract
the control (unlike C1), so the decision uses the estimand alone; the control contrast is
AUC(all its test images) - AUC(CORDA), where "all its test images" is the union, de-duplicated by
image_id, of every test image the record scored (CORDA, CORDA&ChestXRay, CORDA&RSNA,
CORDA&COVID-ChestXRay, COVID-ChestXRay; an image scored in several test sets has one score, this
is checked). AUC on CORDA&COVID-ChestXRay (= CORDA's test + the 15 images) is also shown beside.

Resampling: paired patient-cluster bootstrap, 2000 replicates, numpy default_rng(0). ONE set of
multinomial draws (N patients out of N) over the union of every test patient (scores.csv
group_id) that the claim touches - by default the test sets of the estimand AND of the control,
i.e. all the model's test patients (--universe estimand: only the patients of the 15 images and
of CORDA's test, a sensitivity) - shared by every seed and test set. An image is weighted by the
number of times its patient was drawn; AUC is the weighted Mann-Whitney statistic (ties 1/2). The
15-image set has 5 COVID- patients, so in ~0.7% of replicates none of them is drawn and its AUC
is undefined; as every seed shares the draws, such a replicate is undefined for all comparisons:
it is dropped and counted (reading chosen; the protocol does not say). Interval: 2.5 and 97.5
percentiles of the pooled replicates. MDE = (z(0.975) + z(0.8)) x their SD (ddof=1).

Decision (directional): inconclusive when fewer than 3 usable comparisons or more than 50% of
the planned comparisons left out; otherwise reproduced when low > 0, not reproduced when
high < 0, no detectable effect when the interval includes 0 and high < MDE, inconclusive
otherwise. The estimate, interval and MDE are computed on the usable comparisons even when the
count rule forces "inconclusive"; the same over every record (nothing left out) is printed
beside as a sensitivity.

Reported beside: per seed, balanced accuracy on the 15 images at the paper's threshold 0.5
(score >= 0.5 is COVID+) and the Wilson 95% interval of the accuracy k/15.

Usage:
    python rechecks/recheck_c5.py [--results DIR] [--scale full|563] [--json PATH]
                                  [--universe claim|estimand] [--keep-threshold-collapsed]

--keep-threshold-collapsed: the collapse-rule sensitivity reading (book/verdicts.json,
collapse_sensitivity): a model counts as collapsed only when its own-test 5-95% score range is under
0.001; one whose scores all fall on one side of 0.5 but spread is kept. Did-not-learn is unchanged.
"""
import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

from shared import (
    add_collapse_option, apply_collapse_option, collapse_reason, decide, pair_matrix, patient_draws, pool_defined, read_specs, record_reason, record_scores,
    weighted_auc, whole_set_start)

CLAIM = "C5"
ARCH = "resnet18"
COMPOSITION = "COVID-ChestXRay"
OWN = "COVID-ChestXRay"  # the fixed 15-image test set
OTHER = "CORDA"
BESIDE_SET = "CORDA&COVID-ChestXRay"
SCALES = {"full": {"pretrain": "kermany_full", "seeds": [0, 1, 2, 3, 4]},
          "563": {"pretrain": "kermany", "seeds": None}}  # None: the records' profile seeds
N_BOOT = 2000
BOOT_SEED = 0
MIN_VAL_AUC = 0.6


def own_collapse(s, what="own-test"):
    """This recheck's reading: empty or non-finite scores are a reason of their own."""
    if len(s) == 0 or not np.isfinite(s).all():
        return f"no (finite) {what} scores"
    return collapse_reason(s, what)


def wilson(k, n, z=float(norm.ppf(0.975))):
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, c - h), min(1.0, c + h)


def main(argv=None):
    t0 = time.time()
    ap = argparse.ArgumentParser(description="Independent recomputation of claim C5 from the run records")
    ap.add_argument("--results", default=str(Path(__file__).resolve().parents[1] / "results"))
    ap.add_argument("--scale", choices=["full", "563"], default="full")
    ap.add_argument("--json", default=None)
    ap.add_argument("--universe", choices=["claim", "estimand"], default="claim",
                    help="patients drawn: every test patient of the claim's models (default) or only "
                         "those of the 15 images and CORDA's test (sensitivity)")
    add_collapse_option(ap)
    args = ap.parse_args(argv)
    rule = apply_collapse_option(args)
    cfg = SCALES[args.scale]
    pretrain = cfg["pretrain"]
    before = whole_set_start(read_specs(args.results)) if args.scale == "563" else None

    # ---- records ----
    cells, excluded, profile_seeds = {}, [], set()
    for d in sorted(glob.glob(os.path.join(args.results, "covid-*"))):
        p = os.path.join(d, "spec.json")
        if not os.path.exists(p):
            continue
        with open(p) as f:
            j = json.load(f)
        s = j.get("spec", {})
        if s.get("arch") != ARCH or s.get("composition") != COMPOSITION or s.get("pretrain") != pretrain:
            continue
        why = record_reason(j, before)
        if why:
            excluded.append((os.path.basename(d), why))
            continue
        profile_seeds.update(j.get("profile", {}).get("seeds") or [])
        cells.setdefault(int(s["seed"]), []).append((d, j))
    seeds = cfg["seeds"] if cfg["seeds"] is not None else sorted(profile_seeds)
    for sd in sorted(set(cells) - set(seeds)):
        for d, _ in cells[sd]:
            excluded.append((os.path.basename(d), f"seed {sd} outside the planned seeds {seeds}"))

    notes = []

    comps = []
    for seed in seeds:
        cands = [c for c in cells.get(seed, []) if os.path.exists(os.path.join(c[0], "scores.csv"))]
        if len(cands) > 1:
            cands.sort(key=lambda c: c[1].get("created", ""))
            notes.append(f"seed {seed}: {len(cands)} default records "
                         f"{[os.path.basename(c[0]) for c in cands]}; took the latest created")
        c = dict(seed=seed, dir=None, run=None, reason=None)
        if not cands:
            c["reason"] = "missing (no record)"
            comps.append(c)
            continue
        d, j = cands[-1]
        c.update(dir=d, run=os.path.basename(d), created=j.get("created"))
        mpath = os.path.join(d, "metrics.json")
        m = json.load(open(mpath)) if os.path.exists(mpath) else {}
        bv = m.get("best_value", j.get("best_value"))
        flag = m.get("did_not_learn", j.get("did_not_learn"))
        c["best_value"] = bv
        if bv is None or not np.isfinite(bv) or bv < MIN_VAL_AUC:
            c["reason"] = f"did not learn (best val AUC {bv})"
        if bool(flag) != (c["reason"] is not None):
            notes.append(f"seed {seed}: did_not_learn flag {flag} disagrees with best_value {bv}")
        df = record_scores(d)
        own = df.loc[df.test_set == OWN, "score"].to_numpy(float)
        allsc = df.drop_duplicates("image_id").score.to_numpy(float)
        cr = own_collapse(own)
        if c["reason"] is None and cr:
            c["reason"] = cr
        c["own_min"], c["own_max"] = float(own.min()), float(own.max())
        c["own_range_5_95"] = float(np.percentile(own, 95) - np.percentile(own, 5))
        c["collapsed_on_all_test_images"] = own_collapse(allsc, "all-test-image")
        comps.append(c)

    dirs = [c["dir"] for c in comps if c["dir"]]
    if not dirs:
        raise SystemExit("no records found")

    # ---- the reference image lists (checked identical across records) ----
    ref = record_scores(dirs[0])
    sets_needed = sorted(ref.test_set.unique())
    for s_ in (OWN, OTHER):
        if s_ not in sets_needed:
            raise SystemExit(f"test set {s_} not in {dirs[0]}")
    for d in dirs:
        dup = record_scores(d).groupby("image_id").agg(sd=("score", lambda x: x.max() - x.min()),
                                              nl=("label", "nunique"), ng=("group_id", "nunique"))
        if (dup[["nl", "ng"]] > 1).any().any() or dup.sd.max() > 1e-5:
            raise SystemExit(f"{os.path.basename(d)}: an image has several labels / patients / scores "
                             f"(spread {dup.sd.max():.2g}) across test sets")
        if dup.sd.max() > 0:
            notes.append(f"{os.path.basename(d)}: {int((dup.sd > 0).sum())} images scored in several test sets "
                         f"differ by up to {dup.sd.max():.1e} (float noise); 'all test images' takes the first")
    if args.universe == "claim":
        groups = sorted(ref.group_id.unique())
    else:
        groups = sorted(ref[ref.test_set.isin([OWN, OTHER])].group_id.unique())
    gidx = {g: i for i, g in enumerate(groups)}
    counts = patient_draws(groups, N_BOOT, BOOT_SEED)

    def subset(df, name):
        if name == "ALL":
            t = df.drop_duplicates("image_id")
        else:
            t = df[df.test_set == name]
        return t.sort_values("image_id").reset_index(drop=True)

    eval_sets = [OWN, OTHER, "ALL", BESIDE_SET]
    info = {}
    for name in eval_sets:
        t = subset(ref, name)
        lab = t.label.to_numpy(int)
        entry = dict(ids=t.image_id.to_numpy(), groups=t.group_id.to_numpy(), lab=lab,
                     n_img=len(t), n_pat=t.group_id.nunique(),
                     n_pos_pat=t[t.label == 1].group_id.nunique(), n_neg_pat=t[t.label == 0].group_id.nunique())
        if all(g in gidx for g in t.group_id):
            w = counts[:, [gidx[g] for g in t.group_id]]
            entry.update(wpos=w[:, lab == 1], wneg=w[:, lab == 0])
        info[name] = entry

    def aucs(d):
        df = record_scores(d)
        out = {}
        for name, inf in info.items():
            t = subset(df, name)
            if len(t) != inf["n_img"] or (t.image_id.to_numpy() != inf["ids"]).any():
                raise SystemExit(f"{os.path.basename(d)}: test set {name} differs from the reference images")
            if (t.label.to_numpy(int) != inf["lab"]).any() or (t.group_id.to_numpy() != inf["groups"]).any():
                raise SystemExit(f"{os.path.basename(d)}: labels or patients of {name} differ from the reference")
            sc = t.score.to_numpy(float)
            C = pair_matrix(sc, inf["lab"])
            boot = weighted_auc(C, inf["wpos"], inf["wneg"]) if "wpos" in inf else None
            out[name] = (float(C.mean()), boot, sc)
        return out

    for c in comps:
        if not c["dir"]:
            continue
        a = aucs(c["dir"])
        c["auc_15"], c["auc_corda"], c["auc_all"], c["auc_corda_cxr"] = (
            a[OWN][0], a[OTHER][0], a["ALL"][0], a[BESIDE_SET][0])
        c["diff"] = c["auc_15"] - c["auc_corda"]
        c["ctrl"] = c["auc_all"] - c["auc_corda"]
        c["boot"] = a[OWN][1] - a[OTHER][1]
        c["boot_ctrl"] = a["ALL"][1] - a[OTHER][1] if a["ALL"][1] is not None else None
        # cross-check against the record's own metrics.json AUCs (the record, not the library)
        mpath = os.path.join(c["dir"], "metrics.json")
        if os.path.exists(mpath):
            tab = {r["test_set"]: r["auc"] for r in json.load(open(mpath)).get("table", [])}
            for name, key in ((OWN, "auc_15"), (OTHER, "auc_corda")):
                if name in tab and abs(tab[name] - c[key]) > 1e-9:
                    notes.append(f"seed {c['seed']}: AUC on {name} {c[key]:.6f} differs from metrics.json {tab[name]:.6f}")
        # beside: balanced accuracy at 0.5 on the 15 images, Wilson interval of the accuracy
        sc, lab = a[OWN][2], info[OWN]["lab"]
        pred = (sc >= 0.5).astype(int)
        sens, spec = float(np.mean(pred[lab == 1] == 1)), float(np.mean(pred[lab == 0] == 0))
        k = int((pred == lab).sum())
        c["bacc_15"] = (sens + spec) / 2
        c["correct_15"] = k
        c["wilson_15"] = wilson(k, len(lab))

    used = [c for c in comps if c["reason"] is None]
    n_plan, n_used = len(comps), len(used)
    n_out = n_plan - n_used
    reasons = {}
    for c in comps:
        if c["reason"]:
            k = next(name for name in ("missing", "did not learn", "collapsed", "no (finite) own-test scores")
                     if c["reason"].startswith(name))
            reasons[k] = reasons.get(k, 0) + 1

    res = pool_defined([c["boot"] for c in used], [c["diff"] for c in used])
    outcome, why = decide(res["low"], res["high"], res["mde"], n_used, n_plan)
    scored = [c for c in comps if c.get("dir")]
    res_all = pool_defined([c["boot"] for c in scored], [c["diff"] for c in scored])
    out_all, _ = decide(res_all["low"], res_all["high"], res_all["mde"], len(scored), len(scored))
    ctrl = pool_defined([c["boot_ctrl"] for c in used if c["boot_ctrl"] is not None], [c["ctrl"] for c in used])
    # the same control written as AUC(15 images) - AUC(all its test images) (= diff - ctrl)
    ctrl15 = pool_defined([c["boot"] - c["boot_ctrl"] for c in used if c["boot_ctrl"] is not None],
                    [c["diff"] - c["ctrl"] for c in used])

    # ---- report ----
    print(f"C5 recheck, scale {args.scale}: ResNet-18 pre-trained on {pretrain}, trained on {COMPOSITION}, "
          f"seeds {seeds}; results {args.results}")
    if before is not None:
        print(f"older records only: created before {before}")
    i15, ic = info[OWN], info[OTHER]
    print(f"test sets: {OWN} {i15['n_img']} images / {i15['n_pat']} patients ({i15['n_pos_pat']} COVID+, "
          f"{i15['n_neg_pat']} COVID- patients); {OTHER} {ic['n_img']} images / {ic['n_pat']} patients; "
          f"all test images {info['ALL']['n_img']} / {info['ALL']['n_pat']} patients")
    print(f"bootstrap: {N_BOOT} replicates (seed {BOOT_SEED}), one multinomial draw over {len(groups)} patients "
          f"(universe: {args.universe}); replicates with an undefined AUC (dropped): {res['n_nan']}")
    print(f"excluded records ({len(excluded)}):" if excluded else "excluded records: none")
    for r, w in excluded:
        print(f"  {r}: {w}")
    for n in notes:
        print("NOTE", n)
    print(f"\n{'seed':<5}{'run':<58}{'AUC15':>7}{'AUCcorda':>9}{'diff':>8}{'AUCall':>8}{'ctrl':>8}"
          f"{'bAcc15':>8}  status")
    for c in comps:
        if c.get("dir"):
            nums = (f"{c['auc_15']:7.4f}{c['auc_corda']:9.4f}{c['diff']:+8.4f}{c['auc_all']:8.4f}"
                    f"{c['ctrl']:+8.4f}{c['bacc_15']:8.3f}")
        else:
            nums = " " * 48
        st = "USED" if c["reason"] is None else "LEFT OUT: " + c["reason"]
        print(f"s{c['seed']:<4}{str(c['run']):<58}{nums}  {st}")
    for c in comps:
        if c.get("dir"):
            print(f"  s{c['seed']}: best val AUC {c['best_value']:.4f}; own-test (15) scores in "
                  f"[{c['own_min']:.3f}, {c['own_max']:.3f}], 5-95% range {c['own_range_5_95']:.3f}; on all test "
                  f"images: {c['collapsed_on_all_test_images'] or 'not collapsed'}")
    print(f"\npooled estimate {res['estimate']:+.9f}   95% interval [{res['low']:+.4f}, {res['high']:+.4f}]   "
          f"SE {res['se']:.4f}   MDE {res['mde']:.4f}")
    print(f"used {n_used} / {n_plan}; left out {n_out}: {reasons}")
    print(f"outcome: {outcome} ({why})")
    print("\nreported beside, never deciding:")
    print(f"  control, AUC(all its test images) - AUC(CORDA), usable seeds: {ctrl['estimate']:+.4f} "
          f"[{ctrl['low']:+.4f}, {ctrl['high']:+.4f}]")
    print(f"  control written as AUC(15 images) - AUC(all its test images), usable seeds: "
          f"{ctrl15['estimate']:+.4f} [{ctrl15['low']:+.4f}, {ctrl15['high']:+.4f}]")
    if used:
        print(f"  mean AUC on the 15 images {np.mean([c['auc_15'] for c in used]):.4f}; on CORDA "
              f"{np.mean([c['auc_corda'] for c in used]):.4f}; on all test images "
              f"{np.mean([c['auc_all'] for c in used]):.4f}; on {BESIDE_SET} "
              f"{np.mean([c['auc_corda_cxr'] for c in used]):.4f}")
    for c in scored:
        lo_, hi_ = c["wilson_15"]
        print(f"  s{c['seed']}: balanced accuracy on the 15 images at 0.5 = {c['bacc_15']:.3f}; "
              f"{c['correct_15']}/15 correct, Wilson 95% [{lo_:.2f}, {hi_:.2f}]")
    print(f"  wilson(15/15) = [{wilson(15, 15)[0]:.2f}, {wilson(15, 15)[1]:.2f}]")
    print(f"  sensitivity, every scored record used (nothing left out, n={len(scored)}): "
          f"{res_all['estimate']:+.4f} [{res_all['low']:+.4f}, {res_all['high']:+.4f}] MDE {res_all['mde']:.4f} "
          f"-> {out_all}")
    print(f"runtime {time.time() - t0:.1f} s")

    if args.json:
        out = {"claim": CLAIM, "scale": args.scale, "estimate": res["estimate"], "low": res["low"],
               "high": res["high"], "mde": res["mde"], "se": res["se"], "n_used": n_used, "n_left_out": n_out,
               "n_planned": n_plan, "left_out_reasons": reasons, "outcome": outcome,
               "n_patients": len(groups), "universe": args.universe, "replicates_dropped": res["n_nan"],
               "control": {k: ctrl[k] for k in ("estimate", "low", "high")},
               "control_15_minus_all": {k: ctrl15[k] for k in ("estimate", "low", "high")},
               "all_records_sensitivity": dict(res_all, outcome=out_all, n=len(scored)),
               "comparisons": [{k: v for k, v in c.items() if k not in ("boot", "boot_ctrl", "dir")}
                               for c in comps],
               "excluded_records": [{"run": r, "why": w} for r, w in excluded],
               "records_before": str(before) if before is not None else None, **rule}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
