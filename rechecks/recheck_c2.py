"""Independent recomputation of claim C2 (Tartaglione et al. 2020, Sec. IV-A, Table II rows):
"pre-training helps": AUC of the pre-trained ResNet-18 minus AUC of the ResNet-18 trained from
scratch on the same composition with the same seed, on the composition's own test set.

Reads only the raw run records under results/ (spec.json, metrics.json, scores.csv). Nothing is
imported from the project's library (covid_lib), and it was written without reading that library's
code, from the text of book/protocol.md alone.

Comparisons (protocol section C2):
  * scale "full": pre-trainings kermany_full (the whole ChestXRay set) and nih (RSNA), each against
    the model from scratch; the five Table II compositions x seeds 0-4 = 50 planned comparisons.
  * scale "563": the older records, whose ChestXRay pre-training used the 563-image `kermany` set.
    Their grid is read off the records: the (composition, seed) cells for which a `kermany`
    pre-trained ResNet-18 exists (seeds 0-2 for CORDA, CORDA&ChestXRay and COVID-ChestXRay, seed 0
    for CORDA&RSNA and CORDA&COVID-ChestXRay; the same cells are the only ones whose scratch and nih
    records were made on 2026-12-02, before the table2_full grid). Pre-trainings kermany and nih on
    those cells. With --cells-563 all, nih is taken at seeds 0-4 instead (a sensitivity reading).
Only default-variant grid runs count: task covid, profile cpu, arch resnet18, paper pipeline,
128 px input, no freeze / adapt / plant, no explicit precision override.

Estimand per comparison: AUC_pre - AUC_scratch (Mann-Whitney, ties 1/2) on the own test set.
Pooled estimate: the mean over usable comparisons.

Left out: a comparison is left out when either model is missing, did not learn (best validation
AUC in metrics.json < 0.6) or collapsed (own-test scores all >= 0.5 or all < 0.5, or 5-95%
percentile range < 0.001).

Bootstrap (paired, patient clusters): 2000 replicates, numpy default_rng(0). ONE set of draws
over the union of every test patient (scores.csv group_id) of the claim's own test sets: each
replicate is a multinomial draw of N patients out of N, shared by every model, composition,
seed and pre-training, so the nested test sets (CORDA's test inside each CORDA&X test) and the
same patients scored by both models are resampled together. An image's weight is its patient's
count; the AUC of a replicate is the weighted Mann-Whitney statistic. A replicate in which a test
set has no positive or no negative weight gives NaN for that comparison; the pooled value of the
replicate is the mean over its defined comparisons (the count of such replicates is printed).
Interval: 2.5 and 97.5 percentiles of the pooled replicates. MDE = (z(0.975) + z(0.8)) x SD of
the pooled replicates.

Decision (directional): inconclusive when fewer than 3 usable comparisons or more than 50% of
the planned comparisons left out; otherwise reproduced when low > 0, not reproduced when
high < 0, no detectable effect when the interval includes 0 and its upper end is below the MDE,
inconclusive otherwise.

Usage: python rechecks/recheck_c2.py [--results DIR] [--scale full|563] [--json PATH]
                                     [--cells-563 old|all|profile] [--keep-threshold-collapsed]

--keep-threshold-collapsed: the collapse-rule sensitivity reading (book/verdicts.json,
collapse_sensitivity): a model counts as collapsed only when its own-test 5-95% score range is under
0.001; one whose scores all fall on one side of 0.5 but spread is kept. Did-not-learn is unchanged.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shared import Z, add_collapse_option, apply_collapse_option, collapse_reason as _collapse, decide, pair_matrix, patient_draws, variant_reason, weighted_auc, write_json

COMPOSITIONS = ["CORDA", "CORDA&ChestXRay", "CORDA&RSNA", "CORDA&COVID-ChestXRay", "COVID-ChestXRay"]
N_BOOT = 2000
BOOT_SEED = 0
MIN_VAL_AUC = 0.6
SCALES = {"full": ["kermany_full", "nih"], "563": ["kermany", "nih"]}


# ---------------------------------------------------------------- records

def index_records(results: Path):
    cells: dict[tuple, list[dict]] = {}
    excluded: list[tuple[str, str]] = []
    for d in sorted(results.glob("covid-*")):
        p = d / "spec.json"
        if not p.exists():
            continue
        j = json.loads(p.read_text())
        s = j.get("spec", {})
        if s.get("arch") != "resnet18" or s.get("composition") not in COMPOSITIONS:
            continue  # other claims' records, not candidates
        why = variant_reason(s)
        if why:
            excluded.append((d.name, why))
            continue
        key = (s.get("pretrain") or "scratch", s["composition"], int(s["seed"]))
        cells.setdefault(key, []).append(dict(dir=d, spec=j))
    return cells, excluded


def pick(cands: list[dict], notes: list[str], label: str):
    ok = [c for c in cands if (c["dir"] / "scores.csv").exists() and (c["dir"] / "metrics.json").exists()]
    if len(ok) > 1:
        ok.sort(key=lambda c: c["spec"].get("created", ""))
        notes.append(f"{label}: {len(ok)} default records {[c['dir'].name for c in ok]}; took latest created")
    return ok[-1] if ok else None


# ---------------------------------------------------------------- statistics


def specificity_at(scores, labels, thr):
    return float(np.mean(scores[labels == 0] < thr))


def spec_at_sens(scores, labels, target=0.90):
    pos = np.sort(scores[labels == 1])[::-1]
    k = max(1, math.ceil(target * len(pos)))
    thr = pos[k - 1]  # highest threshold (score >= thr positive) with sensitivity >= target
    return float(np.mean(scores[labels == 0] < thr))


def reason_counts(comps) -> dict:
    """Left-out comparisons by first reason: missing, then did not learn, then collapsed."""
    out: dict[str, int] = {}
    for c in comps:
        if c["used"]:
            continue
        text = " ".join(c["reasons"])
        key = next(k for k in ("missing", "did not learn", "collapsed", "no own-test scores") if k in text)
        out[key] = out.get(key, 0) + 1
    return out


# ---------------------------------------------------------------- main
def planned_cells(scale: str, cells: dict, cells_563: str):
    if scale == "full":
        return [(pre, comp, seed) for pre in SCALES[scale] for comp in COMPOSITIONS for seed in range(5)]
    old = sorted({(comp, seed) for (pre, comp, seed) in cells if pre == "kermany"},
                 key=lambda cs: (COMPOSITIONS.index(cs[0]), cs[1]))
    out = [("kermany", comp, seed) for comp, seed in old]
    if cells_563 == "profile":
        seeds = sorted({seed for (pre, comp, seed) in cells if pre == "kermany"})
        return [(pre, comp, seed) for pre in SCALES[scale] for comp in COMPOSITIONS for seed in seeds]
    if cells_563 == "all":
        out += [("nih", comp, seed) for comp in COMPOSITIONS for seed in range(5)]
    else:
        out += [("nih", comp, seed) for comp, seed in old]
    return out


def main(argv=None) -> int:
    t0 = time.time()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cells-563", choices=["old", "all", "profile"], default="old",
                    help="563 scale: nih on the old grid's cells (default); nih at seeds 0-4 everywhere "
                         "(all); or every composition x the old grid's seeds (0-2) for both pre-trainings, "
                         "counting only records made before the whole-set grid began (profile)")
    add_collapse_option(ap)
    args = ap.parse_args(argv)
    rule = apply_collapse_option(args)

    cells, excluded = index_records(args.results)
    if args.scale == "563" and args.cells_563 == "profile":
        start = min(r["spec"].get("created", "") for (pre, _, _), recs in cells.items()
                    if pre == "kermany_full" for r in recs)
        cells = {k: [r for r in v if r["spec"].get("created", "") < start] for k, v in cells.items()}
        print(f"(profile reading: only records created before {start}, the first kermany_full record)")
    notes: list[str] = []
    cache: dict[Path, pd.DataFrame] = {}

    def scores(rec):
        d = rec["dir"]
        if d not in cache:
            cache[d] = pd.read_csv(d / "scores.csv")
        return cache[d]

    def model_status(rec, comp, name):
        if rec is None:
            return [f"{name} missing"]
        m = json.loads((rec["dir"] / "metrics.json").read_text())
        reasons = []
        bv = m.get("best_value")
        if bv is None or bv < MIN_VAL_AUC:
            reasons.append(f"{name} did not learn (best val AUC {bv if bv is None else round(bv, 3)})")
        df = scores(rec)
        own = df.loc[df.test_set == comp, "score"].to_numpy(float)
        c = _collapse(own) if len(own) else "no own-test scores"
        if c:
            reasons.append(f"{name} {c}")
        return reasons

    comps = []
    for pre, comp, seed in planned_cells(args.scale, cells, args.cells_563):
        label = f"{pre} {comp} s{seed}"
        a = pick(cells.get((pre, comp, seed), []), notes, f"{pre} {comp} s{seed}")
        b = pick(cells.get(("scratch", comp, seed), []), notes, f"scratch {comp} s{seed}")
        reasons = model_status(a, comp, "pre-trained") + model_status(b, comp, "scratch")
        comps.append(dict(label=label, pretrain=pre, composition=comp, seed=seed, pre=a, scr=b,
                          reasons=reasons, used=not reasons))

    # global patient universe: every test patient of the claim's own test sets
    frames = [scores(r)[lambda x: x.test_set == c["composition"]]
              for c in comps for r in (c["pre"], c["scr"]) if r is not None]
    groups = sorted(set(pd.concat(frames).group_id.astype(str)))
    gidx = {g: i for i, g in enumerate(groups)}
    counts = patient_draws(groups, N_BOOT, BOOT_SEED)

    for c in comps:
        if c["pre"] is None or c["scr"] is None:
            continue
        A = scores(c["pre"]); A = A[A.test_set == c["composition"]].sort_values("image_id").reset_index(drop=True)
        B = scores(c["scr"]); B = B[B.test_set == c["composition"]].sort_values("image_id").reset_index(drop=True)
        assert (A.image_id.to_numpy() == B.image_id.to_numpy()).all(), c["label"]
        assert (A.label.to_numpy() == B.label.to_numpy()).all() and (A.group_id.to_numpy() == B.group_id.to_numpy()).all()
        lab = A.label.to_numpy(int)
        sa, sb = A.score.to_numpy(float), B.score.to_numpy(float)
        Ca, Cb = pair_matrix(sa, lab), pair_matrix(sb, lab)
        c["auc_pre"], c["auc_scr"] = float(Ca.mean()), float(Cb.mean())
        c["diff"] = c["auc_pre"] - c["auc_scr"]
        c["dspec05"] = specificity_at(sa, lab, 0.5) - specificity_at(sb, lab, 0.5)
        c["dspec90"] = spec_at_sens(sa, lab) - spec_at_sens(sb, lab)
        if c["used"]:
            w = counts[:, [gidx[str(g)] for g in A.group_id]]
            c["boot"] = weighted_auc(Ca, w[:, lab == 1], w[:, lab == 0]) - weighted_auc(Cb, w[:, lab == 1], w[:, lab == 0])

    def pooled(sub):
        used = [c for c in sub if c["used"]]
        if not used:
            return dict(estimate=float("nan"), low=float("nan"), high=float("nan"), se=float("nan"),
                        mde=float("nan"), n_used=0, n_nan=0, low_drop=float("nan"), high_drop=float("nan"))
        est = float(np.mean([c["diff"] for c in used]))
        Bt = np.vstack([c["boot"] for c in used])
        with np.errstate(invalid="ignore"):
            pb = np.nanmean(Bt, axis=0)
        bad = np.isnan(Bt).any(0)
        lo, hi = np.percentile(pb[~np.isnan(pb)], [2.5, 97.5])
        lod, hid = np.percentile(pb[~bad], [2.5, 97.5])
        se = float(np.nanstd(pb, ddof=1))
        return dict(estimate=est, low=float(lo), high=float(hi), se=se, mde=float(Z * se), n_used=len(used),
                    n_nan=int(bad.sum()), low_drop=float(lod), high_drop=float(hid))

    res = pooled(comps)
    n_total = len(comps)
    outcome = decide(res["low"], res["high"], res["mde"], res["n_used"], n_total)[0]

    # ---- report
    print(f"C2 recheck, scale {args.scale}: pre-trained ResNet-18 minus scratch, AUC on own test set")
    print(f"results: {args.results}")
    print(f"records not counted (variants): {len(excluded)}")
    for name, why in excluded:
        print(f"   {name}: {why}")
    for n in notes:
        print("NOTE", n)
    print(f"bootstrap: {N_BOOT} replicates, seed {BOOT_SEED}, one multinomial draw over {len(groups)} test patients")
    print(f"\n{'comparison':<36}{'AUC pre':>9}{'AUC scr':>9}{'diff':>9}{'dSpec@.5':>10}{'dSpec@se90':>11}  status")
    for c in comps:
        if "diff" in c:
            nums = f"{c['auc_pre']:9.4f}{c['auc_scr']:9.4f}{c['diff']:+9.4f}{c['dspec05']:+10.3f}{c['dspec90']:+11.3f}"
        else:
            nums = " " * 48
        st = "used" if c["used"] else "LEFT OUT: " + "; ".join(c["reasons"])
        print(f"{c['label']:<36}{nums}  {st}")
    print(f"\npooled estimate {res['estimate']:+.6f}  95% CI [{res['low']:+.4f}, {res['high']:+.4f}]  "
          f"SE {res['se']:.4f}  MDE {res['mde']:.4f}")
    print(f"used {res['n_used']} / {n_total}; left out {n_total - res['n_used']}; replicates with an undefined "
          f"comparison: {res['n_nan']} (interval dropping them: [{res['low_drop']:+.4f}, {res['high_drop']:+.4f}])")
    print(f"left out by first reason: {reason_counts(comps)}")
    print(f"decision: {outcome}")
    per_pre = {}
    for pre in dict.fromkeys(c["pretrain"] for c in comps):
        sub = [c for c in comps if c["pretrain"] == pre]
        r = pooled(sub)
        r["n_left_out"] = len(sub) - r["n_used"]
        r["outcome_if_decided_alone"] = decide(r["low"], r["high"], r["mde"], r["n_used"], len(sub))[0]
        used = [c for c in sub if c["used"]]
        r["dspec05"] = float(np.mean([c["dspec05"] for c in used])) if used else float("nan")
        r["dspec90"] = float(np.mean([c["dspec90"] for c in used])) if used else float("nan")
        per_pre[pre] = r
        print(f"  beside, {pre:<13}: {r['estimate']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] MDE {r['mde']:.4f}, "
              f"used {r['n_used']}/{len(sub)}; dSpec@0.5 {r['dspec05']:+.3f}, dSpec@sens0.90 {r['dspec90']:+.3f}")
    used = [c for c in comps if c["used"]]
    if used:
        print(f"  beside: specificity difference at 0.5 {np.mean([c['dspec05'] for c in used]):+.4f}; "
              f"at sensitivity 0.90 {np.mean([c['dspec90'] for c in used]):+.4f}")
    print(f"runtime {time.time() - t0:.1f} s")

    if args.json:
        out = dict(claim="C2", scale=args.scale, estimate=res["estimate"], low=res["low"], high=res["high"],
                   mde=res["mde"], se=res["se"], n_used=res["n_used"], n_left_out=n_total - res["n_used"],
                   left_out_reasons=reason_counts(comps),
                   left_out={c["label"]: "; ".join(c["reasons"]) for c in comps if not c["used"]},
                   outcome=outcome, n_patients=len(groups), n_boot=N_BOOT, replicates_with_undefined=res["n_nan"],
                   per_pretrain=per_pre,
                   comparisons=[{k: (v["dir"].name if isinstance(v, dict) else v) for k, v in c.items()
                                 if k not in ("boot",)} for c in comps],
                   excluded_variants=dict(excluded), **rule)
        write_json(args.json, out, indent=2, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
