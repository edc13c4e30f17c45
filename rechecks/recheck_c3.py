"""Independent recomputation of claim C3 (Tartaglione et al. 2020, Table III).

Reads only the raw run records under results/ (spec.json with its did_not_learn and best_value, scores.csv);
does not import or read covid_lib.

Contrasts (each decided separately, protocol section C3):
  * ResNet-50 minus ResNet-18, pre-trainings kermany_full and nih
  * Conv8     minus ResNet-18, pre-trainings None (scratch) and kermany_full
  compositions: the five Table II compositions, seeds 0-2, profile cpu.

Estimand: AUC(other) - AUC(resnet18) on every Table II test set; pooled = mean over
usable comparisons x test sets.

Bootstrap: 2000 replicates, ONE global set of multinomial patient draws over the union
of all test patients (group_id) of the claim (both contrasts), shared by every model,
test set and seed (protocol: "one set of bootstrap draws over every test patient of
the claim ... nested test sets ... resampled together"). An image gets the weight
(number of times its group_id was drawn); AUC is the weighted Mann-Whitney statistic.
A replicate where a test set has no positive or no negative weight gives NaN for that
cell; the pooled value of that replicate is the mean over its defined cells (counted
and reported).

Scales (--scale): "full" (default), the whole-set pre-training scale (kermany_full), the scale whose
records issue 17 adds; "563", the older records: kermany (the 563-image ChestXRay set) in place of
kermany_full, only records created before the first record of the whole-set scale (the earliest
`created` of any record pre-trained on, or pre-training on, kermany_full), at the seeds of the older
ResNet-50 and Conv8 records of the two parts' pre-trainings (seed 0 only).

A cell's record: among the default-variant records (`is_default_variant`: cpu profile, paper pipeline,
128 px, nothing frozen, adapted or planted, no precision override), the one whose spec has the cell's
(arch, pretrain, composition, seed), with scores.csv; with several, the latest created.

--fill-twins (full scale only; the twin-completed reading, which decides nothing): a ResNet-50 cell
(pre-training kermany_full or nih) with no record takes its fp32 twin's record where there is one, i.e.
the record found the same way among specs that are default-variant except `precision == "fp32"`. A twin
that did not learn or collapsed is left out like any record. --json lists the twins used (`filled`).

Usage:
    python rechecks/recheck_c3.py [--results DIR] [--scale full|563] [--json PATH] [--out DIR] [--per-testset]
                                  [--keep-threshold-collapsed] [--fill-twins]

--results defaults to the repository's results/; --out writes the per-comparison and per-test-set
tables as CSV; --json writes the two parts' numbers (tests/test_rechecks.py compares them with
book/verdicts.json); --per-testset is a sensitivity run with independent draws per test set;
--keep-threshold-collapsed is the collapse-rule sensitivity reading (book/verdicts.json,
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
import pandas as pd

from shared import (
    add_collapse_option, apply_collapse_option, collapse_reason, pair_matrix, read_specs, weighted_auc,
    whole_set_start)

_ARGS = argparse.ArgumentParser(description="Independent recomputation of claim C3 from the run records")
_ARGS.add_argument("--results", default=str(Path(__file__).resolve().parents[1] / "results"))
_ARGS.add_argument("--json", default=None, help="write the pooled numbers of both parts here")
_ARGS.add_argument("--out", default=None, help="write c3_*.csv tables into this folder")
_ARGS.add_argument("--per-testset", action="store_true", help="independent draws per test set")
_ARGS.add_argument("--scale", choices=["full", "563"], default="full",
                   help="whole-set pre-training (default) or the older 563-image records")
_ARGS.add_argument("--fill-twins", action="store_true",
                   help="full scale: a ResNet-50 cell without a record takes its fp32 twin's record")
add_collapse_option(_ARGS)
ARGS = _ARGS.parse_args()
if ARGS.fill_twins and ARGS.scale != "full":
    _ARGS.error("--fill-twins reads the full scale only")
RULE = apply_collapse_option(ARGS)
RESULTS = ARGS.results
OUT = ARGS.out
COMPOSITIONS = ["CORDA", "CORDA&ChestXRay", "CORDA&RSNA", "CORDA&COVID-ChestXRay", "COVID-ChestXRay"]
SEEDS = [0, 1, 2]  # the whole-set scale's; at 563 the older records' (set in main)
KERMANY = {"full": "kermany_full", "563": "kermany"}[ARGS.scale]
N_BOOT = 2000
BOOT_SEED = 0
MARGIN = 0.05
PER_TESTSET = ARGS.per_testset
Z = 1.959964 + 0.841621

PARTS = {
    "resnet50": {"other": "resnet50", "pretrains": [KERMANY, "nih"]},
    "conv8": {"other": "conv8", "pretrains": [None, KERMANY]},
}


def is_default_variant(s, precision=None):
    """True for a grid run: paper pipeline, no freeze/adapt/plant, 128 px, no explicit precision
    (``precision="fp32"``: the same, with that precision instead, i.e. an fp32 twin)."""
    if s.get("pipeline", "paper") not in ("paper", None):
        return False
    for k in ("freeze", "adapt", "plant"):
        if s.get(k) not in (None, False):
            return False
    if s.get("input_size") not in (128, None):
        return False
    if s.get("precision") != precision:
        return False
    if s.get("profile") != "cpu":
        return False
    return True


def index_runs(before=None, precision=None):
    """(arch, pretrain, composition, seed) -> [(dir, spec.json)] of the default-variant records
    (of their fp32 twins with ``precision="fp32"``); with ``before`` (scale 563) only those created before it."""
    cells = {}
    for d in sorted(glob.glob(os.path.join(RESULTS, "covid-*"))):
        p = os.path.join(d, "spec.json")
        if not os.path.exists(p):
            continue
        j = json.load(open(p))
        s = j.get("spec", {})
        if not is_default_variant(s, precision):
            continue
        if before is not None and pd.Timestamp(j["created"]) >= before:
            continue
        key = (s.get("arch"), s.get("pretrain"), s.get("composition"), s.get("seed"))
        cells.setdefault(key, []).append((d, j))
    return cells


def choose(cands):
    """Pick one record per cell; with several, take the one with scores.csv, latest created."""
    ok = [c for c in cands if os.path.exists(os.path.join(c[0], "scores.csv"))]
    if not ok:
        return None
    ok.sort(key=lambda c: c[1].get("created", ""))
    return ok[-1]


def main():
    global SEEDS
    before = whole_set_start(read_specs(RESULTS)) if ARGS.scale == "563" else None
    cells = index_runs(before)
    twins = index_runs(precision="fp32") if ARGS.fill_twins else {}
    filled = []
    if ARGS.scale == "563":
        SEEDS = sorted({k[3] for k in cells
                        if any(k[0] == cfg["other"] and k[1] in cfg["pretrains"] for cfg in PARTS.values())})
        print(f"scale 563: older records only (created before {before}); seeds {SEEDS}")
    scores_cache = {}

    def load(d):
        if d not in scores_cache:
            scores_cache[d] = pd.read_csv(os.path.join(d, "scores.csv"))
        return scores_cache[d]

    # ---- enumerate comparisons ----
    comps = []
    notes = []
    for part, cfg in PARTS.items():
        for pre in cfg["pretrains"]:
            for comp in COMPOSITIONS:
                for seed in SEEDS:
                    row = dict(part=part, composition=comp, pretrain=pre if pre else "scratch", seed=seed)
                    recs = {}
                    for role, arch in (("other", cfg["other"]), ("r18", "resnet18")):
                        cands = cells.get((arch, pre, comp, seed), [])
                        if len(cands) > 1:
                            notes.append(f"{part} {arch} {pre} {comp} s{seed}: {len(cands)} candidates "
                                         f"{[os.path.basename(c[0]) for c in cands]}; took latest created")
                        recs[role] = choose(cands)
                        if recs[role] is None and arch == "resnet50" and (arch, pre, comp, seed) in twins:
                            recs[role] = choose(twins[(arch, pre, comp, seed)])
                            if recs[role] is not None:
                                filled.append(os.path.basename(recs[role][0]))
                                row["filled"] = filled[-1]
                    row["other_run"] = os.path.basename(recs["other"][0]) if recs["other"] else None
                    row["r18_run"] = os.path.basename(recs["r18"][0]) if recs["r18"] else None
                    missing = [r for r in ("other", "r18") if recs[r] is None]
                    if missing:
                        row["status"] = "missing"
                        row["reason"] = "no record: " + ", ".join(
                            cfg["other"] if m == "other" else "resnet18" for m in missing)
                        comps.append(row)
                        continue
                    row["status"] = "found"
                    reasons = []
                    for role in ("other", "r18"):
                        d, j = recs[role]
                        name = cfg["other"] if role == "other" else "resnet18"
                        row[f"{role}_best_val"] = j.get("best_value")
                        if j.get("did_not_learn"):
                            reasons.append(f"{name} did not learn (best val AUC {j.get('best_value'):.3f})")
                        df = load(d)
                        own = df[df.test_set == comp]
                        c = collapse_reason(own.score.values) if len(own) else "no own-test scores"
                        if c:
                            reasons.append(f"{name} {c}")
                    row["reason"] = "; ".join(reasons)
                    row["used"] = not reasons
                    row["_recs"] = recs
                    comps.append(row)

    # ---- global patient universe for the claim ----
    used_dirs = set()
    for r in comps:
        if r["status"] == "found":
            used_dirs.add(r["_recs"]["other"][0])
            used_dirs.add(r["_recs"]["r18"][0])
    groups = sorted(set().union(*[set(load(d).group_id.astype(str)) for d in used_dirs]))
    gidx = {g: i for i, g in enumerate(groups)}
    rng = np.random.default_rng(BOOT_SEED)
    counts = rng.multinomial(len(groups), np.full(len(groups), 1.0 / len(groups)), size=N_BOOT).astype(float)

    # test-set reference (check every run scores the same images)
    ref = {}
    ts_counts = {}
    per_cell = []
    boot_by_part = {p: [] for p in PARTS}
    for r in comps:
        if r["status"] != "found":
            continue
        a = load(r["_recs"]["other"][0])
        b = load(r["_recs"]["r18"][0])
        diffs_pt = {}
        for ts in COMPOSITIONS:
            A = a[a.test_set == ts].sort_values("image_id").reset_index(drop=True)
            Bm = b[b.test_set == ts].sort_values("image_id").reset_index(drop=True)
            if len(A) == 0 or len(Bm) == 0:
                raise SystemExit(f"test set {ts} missing in {r['other_run']} or {r['r18_run']}")
            assert (A.image_id.values == Bm.image_id.values).all(), ("image mismatch", ts)
            assert (A.label.values == Bm.label.values).all()
            assert (A.group_id.values == Bm.group_id.values).all()
            key = tuple(A.image_id)
            ref.setdefault(ts, key)
            assert ref[ts] == key, ("test set differs across runs", ts)
            lab = A.label.values.astype(int)
            gi = np.array([gidx[str(g)] for g in A.group_id])
            if PER_TESTSET:  # sensitivity: independent draws per test set (still shared by models/seeds)
                ug = sorted(set(gi))
                loc = {g: k for k, g in enumerate(ug)}
                cnt = ts_counts.setdefault(ts, np.random.default_rng([BOOT_SEED, COMPOSITIONS.index(ts)])
                                           .multinomial(len(ug), np.full(len(ug), 1.0 / len(ug)), size=N_BOOT).astype(float))
                w = cnt[:, [loc[g] for g in gi]]
            else:
                w = counts[:, gi]
            wpos, wneg = w[:, lab == 1], w[:, lab == 0]
            Ca = pair_matrix(A.score.values.astype(float), lab)
            Cb = pair_matrix(Bm.score.values.astype(float), lab)
            one = np.ones((1, w.shape[1]))
            auc_a = weighted_auc(Ca, one[:, lab == 1], one[:, lab == 0])[0]
            auc_b = weighted_auc(Cb, one[:, lab == 1], one[:, lab == 0])[0]
            per_cell.append(dict(part=r["part"], composition=r["composition"], pretrain=r["pretrain"],
                                 seed=r["seed"], test_set=ts, auc_other=auc_a, auc_r18=auc_b,
                                 diff=auc_a - auc_b, used=r["used"]))
            diffs_pt[ts] = auc_a - auc_b
            if r["used"]:
                boot_by_part[r["part"]].append(weighted_auc(Ca, wpos, wneg) - weighted_auc(Cb, wpos, wneg))
        r["mean_diff"] = float(np.mean(list(diffs_pt.values())))
        r["diff_own"] = diffs_pt[r["composition"]]

    cell_df = pd.DataFrame(per_cell)
    comp_df = pd.DataFrame([{k: v for k, v in r.items() if k != "_recs"} for r in comps])
    if PER_TESTSET:
        print("SENSITIVITY RUN: independent patient draws per test set")
    sfx = "_pertestset" if PER_TESTSET else ""
    if OUT:
        os.makedirs(OUT, exist_ok=True)
        cell_df.to_csv(os.path.join(OUT, "c3_per_testset" + sfx + ".csv"), index=False)
        comp_df.to_csv(os.path.join(OUT, "c3_comparisons" + sfx + ".csv"), index=False)

    print(f"patients in the global bootstrap universe: {len(groups)}; replicates {N_BOOT}, seed {BOOT_SEED}")
    for n in notes:
        print("NOTE duplicate:", n)
    if ARGS.fill_twins:
        print(f"TWIN-COMPLETED (--fill-twins): {len(filled)} ResNet-50 cells without a record read from their "
              f"fp32 twins: {sorted(filled) or 'none'}")
    summary = []
    for part in PARTS:
        sub = comp_df[comp_df.part == part]
        print(f"\n=== {part} vs resnet18 ===")
        for _, r in sub.iterrows():
            status = r["status"]
            used = bool(r.get("used")) if status == "found" else False
            md = f"{r['mean_diff']:+.4f}" if status == "found" else "   -   "
            twin = f"  (fp32 twin {r['filled']})" if isinstance(r.get("filled"), str) else ""
            print(f"  {r['composition']:<22} {r['pretrain']:<12} s{r['seed']}  {status:<7} "
                  f"{'USED' if used else 'LEFT OUT':<8} mean diff {md}  {r['reason'] or ''}{twin}")
        n_total = len(sub)
        n_used = int(sub["used"].fillna(False).astype(bool).sum())
        n_out = n_total - n_used
        n_missing = int((sub.status == "missing").sum())
        n_excl = n_out - n_missing
        cu = cell_df[(cell_df.part == part) & cell_df.used]
        est = float(cu["diff"].mean()) if len(cu) else float("nan")
        if boot_by_part[part]:
            Bt = np.vstack(boot_by_part[part])  # (cells, B)
            n_nan = int(np.isnan(Bt).any(0).sum())
            pooled = np.nanmean(Bt, axis=0)
            lo, hi = np.percentile(pooled, [2.5, 97.5])
            se = float(np.std(pooled, ddof=1))
        else:
            lo = hi = se = float("nan")
            n_nan = 0
        mde = Z * se
        # decision; the brief's "more than 50% left out" is read over the 30 planned comparisons
        if n_used < 3 or n_out > 0.5 * n_total:
            dec = "inconclusive (too few usable / >50% left out)"
        elif hi < MARGIN:
            dec = "reproduced"
        elif lo > MARGIN:
            dec = "not reproduced"
        else:
            dec = "inconclusive"
        # alternative denominator: only found comparisons
        n_found = n_total - n_missing
        print(f"  pooled estimate {est:+.4f}  95% CI [{lo:+.4f}, {hi:+.4f}]  SE {se:.4f}  MDE {mde:.4f}")
        print(f"  used {n_used}/{n_total}; left out {n_out} (missing {n_missing}, excluded {n_excl}); "
              f"replicates with an undefined cell: {n_nan}")
        print(f"  decision: {dec}")
        if n_found:
            print(f"  (left out among found records only: {n_excl}/{n_found})")
        # per pre-training, reported beside
        for pre, g in cu.groupby("pretrain"):
            print(f"    beside: pretrain {pre}: mean diff {g['diff'].mean():+.4f} over {g[['composition','seed']].drop_duplicates().shape[0]} comparisons")
        for ts, g in cu.groupby("test_set"):
            print(f"    beside: test set {ts}: mean diff {g['diff'].mean():+.4f}")
        summary.append(dict(part=part, estimate=est, lo=lo, hi=hi, se=se, mde=mde, n_used=n_used,
                            n_left_out=n_out, n_missing=n_missing, n_excluded=n_excl, decision=dec))
    if OUT:
        pd.DataFrame(summary).to_csv(os.path.join(OUT, "c3_summary" + sfx + ".csv"), index=False)
    if ARGS.json:
        names = {"resnet50": "ResNet-50", "conv8": "Conv8"}
        outcome = {"reproduced": "reproduced", "not reproduced": "not reproduced"}
        parts = {names[r["part"]]: {"estimate": r["estimate"], "low": r["lo"], "high": r["hi"], "mde": r["mde"],
                                    "n_used": r["n_used"], "n_left_out": r["n_left_out"],
                                    "outcome": outcome.get(r["decision"], "inconclusive")} for r in summary}
        twin = {"filled": sorted(filled)} if ARGS.fill_twins else {}
        Path(ARGS.json).write_text(json.dumps({"claim": "C3", "scale": ARGS.scale, "parts": parts, **RULE, **twin},
                                              indent=1))


if __name__ == "__main__":
    sys.exit(main())
