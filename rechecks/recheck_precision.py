"""Independent recomputation of the precision control (issue 17): does training in fp32 instead of the
`cpu` profile's bf16 change a model's test AUC? Each planned pair is a bf16 grid record and its fp32
twin (the same spec with spec.precision == "fp32", another run id); the estimand is the mean over
usable pairs of AUC(fp32 twin) - AUC(bf16 record) on the composition's own test set.

Reads only the raw run records under results/ (spec.json, metrics.json, scores.csv). Nothing is
imported from the project's library (covid_lib) and it was written without reading that library or
the tests: the specification is the brief of this recheck, the docstring of
scripts/run_precision_control.py and the common rules of book/protocol.md (models left out,
resampling, MDE). Helpers come from rechecks/shared.py.

Arms (decided separately):
  * conv8: task covid, arch conv8, profile cpu, input 128, pipeline paper, pretrain null ("scratch")
    or "kermany_full"; compositions CORDA, CORDA&ChestXRay, CORDA&RSNA, CORDA&COVID-ChestXRay,
    COVID-ChestXRay; seeds 0-2: 30 planned pairs. (The three fp32 twin pre-trainings are not pairs:
    they have no COVID test set; a twin fine-tune's `pretrain_run` is only checked to be an fp32
    record, and a mismatch is printed as a note.)
  * resnet18: the same filters with arch resnet18 and pretrain null only: 15 planned pairs.

Readings chosen (each one a choice the brief left open):
  1. Matching. A record's "spec" is compared field by field with precision removed. Older records
     lack the keys adapt / freeze / plant; a missing key is read as null (the newer records write
     null), otherwise the 2026-12-02 bf16 records (e.g. Conv8 from scratch, seed 0) could never have
     a twin. Every other field must be equal, data_version included (so the kermany_full fine-tunes,
     data_version ca46fbe0ccb3, and the scratch runs, dee3cf54a969, match only their own kind, and
     the older pretrain "kermany" records are a different value of pretrain and never enter).
  2. The bf16 record is the record with spec.precision null (the profile's bf16). Records with an
     explicit precision "bf16" (three ResNet-18 CORDA&ChestXRay records of 2026-12-02, an earlier
     precision experiment) are a different spec value and are not the grid's record; they are
     listed as notes. Variants (freeze / adapt / plant set, other input sizes, pipelines, profiles)
     are excluded by the field-by-field match with the planned spec.
  3. The twin is any record whose spec equals the bf16 record's spec except precision == "fp32",
     whatever its creation date: this includes three ResNet-18 CORDA&ChestXRay fp32 records of
     2026-12-02, made before the control was fixed (2026-12-04); they are flagged in the output,
     and --twins-created-after 2026-12-04 drops them (a sensitivity reading). When several records
     match one role, the latest created is taken and a note is printed.
  4. Left out (book/protocol.md "Models left out"), a pair is left out when either model is missing
     (a twin not trained yet counts as missing), did not learn (best_value in metrics.json < 0.6,
     or absent) or collapsed (own-test scores all >= 0.5 or all < 0.5, or 5-95% range < 0.001;
     shared.collapse_reason); no own-test scores or non-finite scores also leave it out (counted
     under "collapsed"). Reasons are counted once per pair by the first that applies, in the order
     missing, did not learn, collapsed; every reason of each pair is listed as well.
  5. AUC: Mann-Whitney with ties 1/2 on the own test set (scores.csv rows with test_set equal to the
     composition); the two records must score the same images with the same labels and patients.
  6. Bootstrap: paired patient-cluster bootstrap, 2000 replicates, numpy default_rng(0) multinomial
     draws (shared.patient_draws: N patients out of N), ONE set of draws per arm over the union of
     the patients (group_id, as text) of the OWN test sets of the arm's usable pairs (not of every
     test set the records score: patients who enter no estimand are left out of the universe). An
     image weighs its patient's count; a replicate's pair value is the weighted AUC difference. A
     replicate in which some used pair's test set has no positive or no negative weight is dropped
     from the interval (shared.pool_defined; the count is printed).
  7. Interval: 2.5 and 97.5 percentiles of the replicate means over used pairs. MDE = Z x SD (ddof 1)
     of those replicate means, Z = z(0.975) + z(0.8).
  8. Rule (equivalence, margin 0.05): "inconclusive" first when fewer than 3 usable pairs or more
     than half of the planned pairs are left out; else "negligible" when -0.05 < low and high < 0.05;
     "matters" when the interval lies wholly outside (-0.05, 0.05) (high <= -0.05 or low >= 0.05);
     "inconclusive" otherwise.
  9. Noise beside: (a) mean |AUC(twin) - AUC(bf16)| over used pairs; (b) mean |AUC difference| over
     every two seeds of one cell (composition x pretrain) at bf16, over the used pairs' bf16 records
     (only seeds whose pair is used, so both precisions are compared on the same seeds); (c) the
     same at fp32 over the used pairs' twins. Also (d) the bf16 seed noise over all usable bf16 grid
     records (seeds 0-2) of those cells. A crosstab of statuses (bf16 record x twin: ok, missing,
     did not learn, collapsed by first reason) over the planned pairs.

Usage: python rechecks/recheck_precision.py [--arm conv8|resnet18|resnet50|resnet50_563|both] [--results DIR]
                                            [--twins-created-after ISO-DATE] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shared import Z, collapse_reason, pair_matrix, patient_draws, pool_defined, weighted_auc, write_json

COMPOSITIONS = ["CORDA", "CORDA&ChestXRay", "CORDA&RSNA", "CORDA&COVID-ChestXRay", "COVID-ChestXRay"]
SEEDS = [0, 1, 2]
N_BOOT = 2000
BOOT_SEED = 0
MIN_VAL_AUC = 0.6
MARGIN = 0.05
OPTIONAL_KEYS = ("adapt", "freeze", "plant")  # absent in older records: read as null
BASE = dict(task="covid", profile="cpu", input_size=128, pipeline="paper",
            adapt=None, freeze=None, plant=None)
ARMS = {
    "conv8": dict(arch="conv8", pretrains=[None, "kermany_full"]),
    "resnet18": dict(arch="resnet18", pretrains=[None]),
    # added by the project (not the recheck's author) when the third arm was fixed: ResNet-50
    # pre-trained on nih (RSNA), seed 0 (the script docstring of run_precision_control.py)
    "resnet50": dict(arch="resnet50", pretrains=["nih"], seeds=[0]),
    # added by the project when the fourth arm was fixed (2026-12-05): ResNet-50 pre-trained on the
    # 563 ChestXRay images (kermany), seed 0
    "resnet50_563": dict(arch="resnet50", pretrains=["kermany"], seeds=[0]),
}
STATUS_ORDER = ["ok", "missing", "did not learn", "collapsed"]


# ---------------------------------------------------------------- records

def norm_spec(s: dict) -> dict:
    s = dict(s)
    for k in OPTIONAL_KEYS:
        s.setdefault(k, None)
    return s


def key_wo_precision(s: dict) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in s.items() if k != "precision"))


def read_records(results: Path) -> list[dict]:
    out = []
    for p in sorted(results.glob("*/spec.json")):
        j = json.loads(p.read_text())
        s = norm_spec(j.get("spec", {}))
        if s.get("task") != "covid" or s.get("arch") not in {a["arch"] for a in ARMS.values()}:
            continue
        out.append(dict(dir=p.parent, run_id=j.get("run_id", p.parent.name), created=j.get("created", ""),
                        spec=s, pretrain_run=j.get("pretrain_run"), git=j.get("git", {})))
    return out


def planned_match(s: dict, arch: str, pretrain, comp: str, seed: int) -> bool:
    want = dict(BASE, arch=arch, pretrain=pretrain, composition=comp, seed=seed)
    return all(s.get(k) == v for k, v in want.items())


# ---------------------------------------------------------------- per-model status

class Loader:
    def __init__(self):
        self.scores: dict[Path, pd.DataFrame] = {}
        self.metrics: dict[Path, dict] = {}

    def sc(self, rec) -> pd.DataFrame:
        d = rec["dir"]
        if d not in self.scores:
            p = d / "scores.csv"
            self.scores[d] = pd.read_csv(p, dtype={"group_id": str, "image_id": str}) if p.exists() else None
        return self.scores[d]

    def me(self, rec) -> dict | None:
        d = rec["dir"]
        if d not in self.metrics:
            p = d / "metrics.json"
            self.metrics[d] = json.loads(p.read_text()) if p.exists() else None
        return self.metrics[d]


def model_status(L: Loader, rec, comp: str, name: str) -> tuple[str, list[str]]:
    """(first status, every reason) of one model."""
    if rec is None:
        return "missing", [f"{name} missing"]
    reasons, first = [], None
    m, df = L.me(rec), L.sc(rec)
    if m is None or df is None:
        return "missing", [f"{name} record incomplete (no metrics.json or scores.csv)"]
    bv = m.get("best_value")
    if bv is None or not np.isfinite(bv) or bv < MIN_VAL_AUC:
        reasons.append(f"{name} did not learn (best val AUC {bv if bv is None else round(bv, 4)})")
        first = first or "did not learn"
    own = df.loc[df.test_set == comp, "score"].to_numpy(float)
    if len(own) == 0:
        c = "no own-test scores"
    elif not np.isfinite(own).all():
        c = "non-finite own-test scores"
    else:
        c = collapse_reason(own)
    if c:
        reasons.append(f"{name} {c}")
        first = first or "collapsed"
    return first or "ok", reasons


def own_test(L: Loader, rec, comp: str) -> pd.DataFrame:
    df = L.sc(rec)
    return df[df.test_set == comp].sort_values("image_id").reset_index(drop=True)


def auc(t: pd.DataFrame) -> float:
    return float(pair_matrix(t.score.to_numpy(float), t.label.to_numpy(int)).mean())


# ---------------------------------------------------------------- one arm

def run_arm(arm: str, records: list[dict], L: Loader, twins_after: str | None) -> dict:
    cfg = ARMS[arm]
    notes: list[str] = []
    pairs = []
    for pre in cfg["pretrains"]:
        for comp in COMPOSITIONS:
            for seed in cfg.get("seeds", SEEDS):
                label = f"{comp} {pre or 'scratch'} s{seed}"
                cands = [r for r in records if planned_match(r["spec"], cfg["arch"], pre, comp, seed)]
                bf = [r for r in cands if r["spec"].get("precision") is None]
                expl = [r for r in cands if r["spec"].get("precision") == "bf16"]
                if expl:
                    notes.append(f"{label}: explicit-bf16 record(s) not counted as the grid record: "
                                 f"{[r['run_id'] for r in expl]}")
                bf.sort(key=lambda r: r["created"])
                if len(bf) > 1:
                    # different spec values (e.g. data_version) would be different cells: say so
                    notes.append(f"{label}: {len(bf)} bf16 records {[(r['run_id'], r['spec'].get('data_version')) for r in bf]}; "
                                 "took the latest created")
                b = bf[-1] if bf else None
                twin = None
                if b is not None:
                    k = key_wo_precision(b["spec"])
                    tw = [r for r in records if r["spec"].get("precision") == "fp32" and key_wo_precision(r["spec"]) == k]
                    if twins_after:
                        dropped = [r for r in tw if r["created"] < twins_after]
                        if dropped:
                            notes.append(f"{label}: twin(s) created before {twins_after} dropped: "
                                         f"{[(r['run_id'], r['created']) for r in dropped]}")
                        tw = [r for r in tw if r["created"] >= twins_after]
                    tw.sort(key=lambda r: r["created"])
                    if len(tw) > 1:
                        notes.append(f"{label}: {len(tw)} fp32 twins {[r['run_id'] for r in tw]}; took the latest created")
                    twin = tw[-1] if tw else None
                else:
                    # a twin without a bf16 record still shows in the listing
                    tw = [r for r in cands if r["spec"].get("precision") == "fp32"]
                    if tw:
                        notes.append(f"{label}: fp32 record(s) without a bf16 grid record: {[r['run_id'] for r in tw]}")
                sb, rb = model_status(L, b, comp, "bf16")
                st, rt = model_status(L, twin, comp, "fp32 twin")
                p = dict(label=label, composition=comp, pretrain=pre or "scratch", seed=seed,
                         bf16_run=b["run_id"] if b else None, twin_run=twin["run_id"] if twin else None,
                         twin_created=twin["created"] if twin else None,
                         status_bf16=sb, status_twin=st, reasons=rb + rt, used=not (rb + rt))
                if twin is not None and twin["created"] < "2026-12-04":
                    p["twin_predates_control"] = True
                    notes.append(f"{label}: twin {twin['run_id']} was created {twin['created']}, before the control "
                                 "was fixed (2026-12-04); counted under the literal twin definition")
                if twin is not None and pre is not None:
                    pr = twin.get("pretrain_run")
                    # pre-training records (task pretrain) are not in `records`: read their spec directly
                    sp = (Path(twin["dir"]).parent / pr / "spec.json") if pr else None
                    prec = (json.loads(sp.read_text()).get("spec", {}).get("precision")
                            if sp is not None and sp.exists() else "no record")
                    p["twin_pretrain_run"], p["twin_pretrain_precision"] = pr, prec
                    if prec != "fp32":
                        notes.append(f"{label}: twin's pre-training {pr} has precision {prec}, not fp32")
                if b is not None and twin is not None and L.sc(b) is not None and L.sc(twin) is not None:
                    A, T = own_test(L, b, comp), own_test(L, twin, comp)
                    if len(A) and len(T):
                        if len(A) != len(T) or (A.image_id.to_numpy() != T.image_id.to_numpy()).any():
                            raise SystemExit(f"{label}: bf16 and twin score different own-test images")
                        if (A.label.to_numpy() != T.label.to_numpy()).any() or (A.group_id.to_numpy() != T.group_id.to_numpy()).any():
                            raise SystemExit(f"{label}: labels or patients differ between bf16 and twin")
                        p["auc_bf16"], p["auc_twin"] = auc(A), auc(T)
                        p["diff"] = p["auc_twin"] - p["auc_bf16"]
                elif b is not None and L.sc(b) is not None:
                    A = own_test(L, b, comp)
                    if len(A):
                        p["auc_bf16"] = auc(A)
                pairs.append(dict(p, _b=b, _t=twin))

    used = [p for p in pairs if p["used"]]
    n_plan, n_used = len(pairs), len(used)

    # ---- one set of draws over the patients of the used pairs' own test sets
    groups = sorted({g for p in used for g in own_test(L, p["_b"], p["composition"]).group_id})
    rows, points = [], []
    if used:
        gidx = {g: i for i, g in enumerate(groups)}
        counts = patient_draws(groups, N_BOOT, BOOT_SEED)
        for p in used:
            A, T = own_test(L, p["_b"], p["composition"]), own_test(L, p["_t"], p["composition"])
            lab = A.label.to_numpy(int)
            w = counts[:, [gidx[g] for g in A.group_id]]
            wp, wn = w[:, lab == 1], w[:, lab == 0]
            Ca, Ct = pair_matrix(A.score.to_numpy(float), lab), pair_matrix(T.score.to_numpy(float), lab)
            rows.append(weighted_auc(Ct, wp, wn) - weighted_auc(Ca, wp, wn))
            points.append(p["diff"])
    res = pool_defined(rows, points)

    # ---- decision
    n_left = n_plan - n_used
    if n_used < 3 or n_left > 0.5 * n_plan:
        outcome, why = "inconclusive", (f"fewer than 3 usable pairs or more than half of the {n_plan} planned "
                                        f"pairs left out ({n_used} used, {n_left} left out)")
    elif -MARGIN < res["low"] and res["high"] < MARGIN:
        outcome, why = "negligible", f"interval inside (-{MARGIN}, +{MARGIN})"
    elif res["high"] <= -MARGIN or res["low"] >= MARGIN:
        outcome, why = "matters", f"interval wholly outside (-{MARGIN}, +{MARGIN})"
    else:
        outcome, why = "inconclusive", f"interval crosses a margin (+-{MARGIN})"

    # ---- left-out reasons (first reason per pair) and crosstab
    reasons: dict[str, int] = {}
    for p in pairs:
        if p["used"]:
            continue
        sts = {p["status_bf16"], p["status_twin"]}
        first = next(s for s in ("missing", "did not learn", "collapsed") if s in sts)
        reasons[first] = reasons.get(first, 0) + 1
    crosstab = {sb: {st: sum(1 for p in pairs if p["status_bf16"] == sb and p["status_twin"] == st)
                     for st in STATUS_ORDER} for sb in STATUS_ORDER}

    # ---- noise beside
    def seed_noise(items):
        by_cell: dict[tuple, list[float]] = {}
        for cell, a in items:
            by_cell.setdefault(cell, []).append(a)
        d = [abs(x - y) for v in by_cell.values() for x, y in itertools.combinations(v, 2)]
        return (float(np.mean(d)) if d else float("nan")), len(d)

    used_cells = {(p["composition"], p["pretrain"]) for p in used}
    twin_abs = [abs(p["diff"]) for p in used]
    sb16, nb16 = seed_noise([((p["composition"], p["pretrain"]), p["auc_bf16"]) for p in used])
    sf32, nf32 = seed_noise([((p["composition"], p["pretrain"]), p["auc_twin"]) for p in used])
    all_bf = [((p["composition"], p["pretrain"]), p["auc_bf16"]) for p in pairs
              if (p["composition"], p["pretrain"]) in used_cells and p["status_bf16"] == "ok"]
    sball, nball = seed_noise(all_bf)
    noise = dict(twin_abs_diff=float(np.mean(twin_abs)) if twin_abs else float("nan"), n_twin=len(twin_abs),
                 seed_abs_diff_bf16=sb16, n_seed_pairs_bf16=nb16,
                 seed_abs_diff_fp32=sf32, n_seed_pairs_fp32=nf32,
                 seed_abs_diff_bf16_all_usable_seeds=sball, n_seed_pairs_bf16_all=nball)

    by_pre = {}
    for pre in dict.fromkeys(p["pretrain"] for p in pairs):
        u = [p for p in used if p["pretrain"] == pre]
        by_pre[pre] = dict(n_used=len(u), mean_diff=float(np.mean([p["diff"] for p in u])) if u else float("nan"))

    return dict(arm=arm, estimate=res["estimate"], low=res["low"], high=res["high"], se=res["se"], mde=res["mde"],
                replicates_dropped_undefined=res["n_nan"], n_planned=n_plan, n_used=n_used, n_left_out=n_left,
                left_out_reasons=reasons, outcome=outcome, reason=why, noise=noise, status_crosstab=crosstab,
                per_pretrain=by_pre, n_patients=len(groups), n_boot=N_BOOT, boot_seed=BOOT_SEED,
                patient_universe="union of the own test sets of the used pairs",
                pairs=[{k: v for k, v in p.items() if not k.startswith("_")} for p in pairs], notes=notes)


# ---------------------------------------------------------------- report

def print_arm(r: dict) -> None:
    print(f"\n=== arm {r['arm']}: AUC(fp32 twin) - AUC(bf16 record), own test set ===")
    for n in r["notes"]:
        print("NOTE", n)
    print(f"\n{'pair':<36}{'bf16 run':>13}{'twin run':>13}{'AUC bf16':>10}{'AUC fp32':>10}{'diff':>9}  status")
    for p in r["pairs"]:
        b = p["bf16_run"][-10:] if p["bf16_run"] else "-"
        t = p["twin_run"][-10:] if p["twin_run"] else "-"
        ab = f"{p['auc_bf16']:10.4f}" if "auc_bf16" in p else " " * 10
        at = f"{p['auc_twin']:10.4f}" if "auc_twin" in p else " " * 10
        d = f"{p['diff']:+9.4f}" if "diff" in p else " " * 9
        st = "used" if p["used"] else "LEFT OUT: " + "; ".join(p["reasons"])
        print(f"{p['label']:<36}{b:>13}{t:>13}{ab}{at}{d}  {st}")
    print(f"\nestimate {r['estimate']:+.6f}  95% CI [{r['low']:+.4f}, {r['high']:+.4f}]  SD {r['se']:.4f}  "
          f"MDE {r['mde']:.4f}  ({r['n_boot']} replicates over {r['n_patients']} patients; "
          f"{r['replicates_dropped_undefined']} dropped as undefined)")
    print(f"used {r['n_used']} / {r['n_planned']}; left out {r['n_left_out']} {r['left_out_reasons']}")
    print(f"per pre-training: {r['per_pretrain']}")
    nz = r["noise"]
    print(f"beside: mean |twin diff| {nz['twin_abs_diff']:.4f} (n={nz['n_twin']}); mean |seed diff| bf16 "
          f"{nz['seed_abs_diff_bf16']:.4f} (n={nz['n_seed_pairs_bf16']}), fp32 {nz['seed_abs_diff_fp32']:.4f} "
          f"(n={nz['n_seed_pairs_fp32']}); bf16 over all usable seeds of those cells "
          f"{nz['seed_abs_diff_bf16_all_usable_seeds']:.4f} (n={nz['n_seed_pairs_bf16_all']})")
    print("status crosstab (rows bf16 record, columns fp32 twin):")
    print(f"   {'':<15}" + "".join(f"{s:>15}" for s in STATUS_ORDER))
    for sb in STATUS_ORDER:
        print(f"   {sb:<15}" + "".join(f"{r['status_crosstab'][sb][st]:>15}" for st in STATUS_ORDER))
    print(f"decision: {r['outcome']} ({r['reason']})")


def main(argv=None) -> int:
    t0 = time.time()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    ap.add_argument("--arm", choices=[*ARMS, "both"], default="both", help="an arm, or both of the first two")
    ap.add_argument("--twins-created-after", default=None,
                    help="count only fp32 twins created at or after this ISO date (sensitivity reading)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    records = read_records(args.results)
    L = Loader()
    arms = ["conv8", "resnet18"] if args.arm == "both" else [args.arm]
    print(f"precision control recheck; results: {args.results}; Z = {Z:.4f}; margin {MARGIN}")
    out = {}
    for arm in arms:
        r = run_arm(arm, records, L, args.twins_created_after)
        print_arm(r)
        out[arm] = r
    print(f"\nruntime {time.time() - t0:.1f} s")
    if args.json:
        write_json(args.json, out, indent=2, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
