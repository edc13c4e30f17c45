"""Independent recomputation of finding F1 (Ben Ahmed et al. 2021, Fig. 4 and Table 4: seen and
unseen sources): "a model loses AUC on sources it never saw", measured PAIRED, i.e. on the same
test patients scored by the model that saw their sources and by a model that did not.

Reads only the raw run records under results/ (spec.json, metrics.json, scores.csv). Nothing is
imported from the project's library (covid_lib), and it was written without reading that
library's code, from the text of book/protocol.md alone (header and section "F1").

Records (grid `unseen`): ResNet-18, seed 0, on the source splits
  U1-hannover-nih  (trained on Hannover COVID+ / NIH COVID-),
  U2-cohen-kermany (trained on Cohen COVID+ / Kermany COVID-),
  U3-cohen-cohen   (trained on Cohen COVID+ / Cohen COVID-),
three variants "before any adaptation":
  scratch   : pretrain None, freeze None
  finetuned : pretrain "kermany" (the unseen grid's ChestXRay pre-training is the 563-image
              `kermany` set; there are no kermany_full records on this grid), freeze None
  frozen    : pretrain "kermany", freeze "encoder"
Only default-variant records count: task covid, profile cpu, arch resnet18, pipeline paper,
input 128, no adapt, no plant, no explicit precision override, seed 0. The adapt4/8/16/32 runs
(test-time / few-shot adaptation) are "after adaptation" and are excluded and listed. If several
records fill one (split, variant) cell, the latest `created` is taken (noted in the report; on
the present records every cell has exactly one).

Every record's scores.csv scores the test images of all five parts (hannover COVID+, nih COVID-,
cohen COVID+, cohen COVID-, kermany COVID-); the image ids, labels and patient ids (group_id) are
checked to be identical across the models compared.

Comparisons (per variant v; 3 contrasts x 3 variants = 9 planned):
  A  U2 minus U1 on Cohen COVID+ / Kermany COVID- :  AUC(U2_v) - AUC(U1_v) on those test images
  B  U1 minus U2 on Hannover COVID+ / NIH COVID-  :  AUC(U1_v) - AUC(U2_v)
  C  U1 minus U3 on Hannover COVID+ / NIH COVID-  :  AUC(U1_v) - AUC(U3_v)
AUC = Mann-Whitney statistic, ties 1/2, every test image one observation (patients with several
images count several times; the patient is only the unit of resampling). Pooled estimate: the
mean over the usable comparisons.

Left out (protocol header): a comparison is left out when either model has no record, did not
learn (metrics.json best_value = best validation AUC < 0.6) or collapsed (scores on its OWN
test set, read here as the test images of the two parts it was trained on = metrics.json
seen_parts, all >= 0.5 or all < 0.5, or 5-95% percentile range < 0.001). Counted once per
comparison by first reason: missing > did not learn > collapsed.

Bootstrap (paired, patient clusters): 2000 replicates, numpy default_rng(0). ONE set of
multinomial draws (N out of N) over the patient universe, shared by all models, variants and
comparisons, so the same patients scored by two models, and the Hannover/NIH patients used by
both contrasts B and C, are resampled together. Universe (a reading): by default every test
patient scored by the claim's models (all five parts, so that the within-model drops reported
beside, which need Cohen COVID-, use the same draws); --universe comparisons restricts it to the
patients of the four parts the deciding comparisons use (sensitivity; AUC is invariant to the
total weight, so this only changes the random stream). An image's weight is its patient's draw
count; a replicate's AUC is the weighted Mann-Whitney statistic; a replicate's pooled value is
the mean over the comparisons defined in it (undefined replicates are counted). Interval: 2.5
and 97.5 percentiles of the pooled replicates; MDE = (z(0.975) + z(0.8)) x their SD (ddof=1).

Decision (directional): inconclusive when fewer than 3 usable comparisons or more than 50% of
the planned comparisons are left out; otherwise reproduced when low > 0, not reproduced when
high < 0, no detectable effect when the interval includes 0 and high < MDE, inconclusive
otherwise.

Reported beside, never deciding: each pair of models (comparison) separately with its own
interval; pooled per contrast and per variant; the within-model drop per model, AUC(seen) minus
AUC(unseen) (Ben Ahmed et al.'s unpaired reading), where seen = the two parts the model was
trained on and unseen = metrics.json unseen_parts (U1: Cohen+/Kermany-; U2 and U3:
Hannover+/NIH-), with the mean over models.

Scale: the finding has a single scale (the unseen grid, pre-training on the 563-image set); it
is labelled "563". --scale accepts only that value, for a uniform interface.

Usage: python rechecks/recheck_f1.py [--results DIR] [--scale 563] [--json PATH]
                                     [--universe all|comparisons]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shared import Z, collapse_reason, decide, pair_matrix, patient_draws, weighted_auc, write_json

N_BOOT = 2000
BOOT_SEED = 0
MIN_VAL_AUC = 0.6
SPLITS = {"U1": "U1-hannover-nih", "U2": "U2-cohen-kermany", "U3": "U3-cohen-cohen"}
SEEN = {"U1": ("hannover COVID+", "nih COVID-"), "U2": ("cohen COVID+", "kermany COVID-"),
        "U3": ("cohen COVID+", "cohen COVID-")}
VARIANTS = ["scratch", "finetuned", "frozen"]
PAIR_CK = ("cohen COVID+", "kermany COVID-")
PAIR_HN = ("hannover COVID+", "nih COVID-")
CONTRASTS = [("U2-U1 on Cohen+/Kermany-", "U2", "U1", PAIR_CK),
             ("U1-U2 on Hannover+/NIH-", "U1", "U2", PAIR_HN),
             ("U1-U3 on Hannover+/NIH-", "U1", "U3", PAIR_HN)]


# ---------------------------------------------------------------- records
def variant_of(s: dict) -> tuple[str | None, str | None]:
    """(variant, None) for a default-variant unseen-grid ResNet-18 run, else (None, why not)."""
    checks = [("task", "covid"), ("profile", "cpu"), ("arch", "resnet18"), ("pipeline", "paper"),
              ("input_size", 128)]
    for k, v in checks:
        if s.get(k) != v:
            return None, f"{k} {s.get(k)}"
    for k in ("adapt", "plant"):
        if s.get(k) not in (None, False):
            return None, f"{k} {s.get(k)} (after adaptation)" if k == "adapt" else f"{k} {s.get(k)}"
    if s.get("precision") is not None:
        return None, f"precision override {s.get('precision')}"
    if s.get("seed") != 0:
        return None, f"seed {s.get('seed')} (protocol: seed 0)"
    pre, fr = s.get("pretrain"), s.get("freeze")
    if pre is None and fr in (None, False):
        return "scratch", None
    if pre == "kermany" and fr in (None, False):
        return "finetuned", None
    if pre == "kermany" and fr == "encoder":
        return "frozen", None
    return None, f"pretrain {pre} / freeze {fr} (not one of the three variants)"


def index_records(results: Path):
    cells: dict[tuple, list[dict]] = {}
    excluded: list[tuple[str, str]] = []
    by_comp = {v: k for k, v in SPLITS.items()}
    for d in sorted(results.glob("covid-*")):
        p = d / "spec.json"
        if not p.exists():
            continue
        j = json.loads(p.read_text())
        s = j.get("spec", {})
        if s.get("composition") not in by_comp:
            continue  # not a source-split record
        var, why = variant_of(s)
        if why:
            excluded.append((d.name, why))
            continue
        cells.setdefault((by_comp[s["composition"]], var), []).append(dict(dir=d, spec=j))
    return cells, excluded


def pick(cands, notes, label):
    ok = [c for c in cands if (c["dir"] / "scores.csv").exists() and (c["dir"] / "metrics.json").exists()]
    if len(ok) > 1:
        ok.sort(key=lambda c: c["spec"].get("created", ""))
        notes.append(f"{label}: {len(ok)} default records {[c['dir'].name for c in ok]}; took latest created")
    return ok[-1] if ok else None


# ---------------------------------------------------------------- statistics


def summarise(boot_rows, point):
    """Pooled point estimate and percentile interval / SE / MDE of the replicate means."""
    if not boot_rows or np.isnan(np.vstack(boot_rows)).all(1).any():  # a row with no replicate at all
        nan = float("nan")
        return dict(estimate=float(point), low=nan, high=nan, se=nan, mde=nan, n_nan=0)
    Bt = np.vstack(boot_rows)
    with np.errstate(invalid="ignore"):
        pb = np.nanmean(Bt, axis=0)
    ok = ~np.isnan(pb)
    lo, hi = np.percentile(pb[ok], [2.5, 97.5])
    se = float(np.std(pb[ok], ddof=1))
    return dict(estimate=float(point), low=float(lo), high=float(hi), se=se, mde=float(Z * se),
                n_nan=int(np.isnan(Bt).any(0).sum()))


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    t0 = time.time()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    ap.add_argument("--scale", choices=["563"], default="563",
                    help="F1 has one scale (the unseen grid, pre-trained on the 563-image set)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--universe", choices=["all", "comparisons"], default="all",
                    help="patients drawn: every scored test patient (default) or only those of the "
                         "four parts the comparisons use")
    args = ap.parse_args(argv)

    cells, excluded = index_records(args.results)
    notes: list[str] = []
    cache: dict[Path, pd.DataFrame] = {}

    def scores(rec):
        d = rec["dir"]
        if d not in cache:
            cache[d] = pd.read_csv(d / "scores.csv").sort_values("image_id").reset_index(drop=True)
        return cache[d]

    # ---- models and their status
    models: dict[tuple, dict] = {}
    for sp in SPLITS:
        for var in VARIANTS:
            rec = pick(cells.get((sp, var), []), notes, f"{sp} {var}")
            m = dict(split=sp, variant=var, rec=rec, reasons=[])
            if rec is None:
                m["reasons"].append(f"{sp} {var} missing")
            else:
                met = json.loads((rec["dir"] / "metrics.json").read_text())
                m["metrics"] = met
                if tuple(met.get("seen_parts", SEEN[sp])) != SEEN[sp]:
                    notes.append(f"{rec['dir'].name}: metrics seen_parts {met.get('seen_parts')} != {SEEN[sp]}")
                bv = met.get("best_value")
                m["best_val"] = bv
                if bv is None or bv < MIN_VAL_AUC:
                    m["reasons"].append(f"{sp} {var} did not learn (best val AUC {bv})")
                df = scores(rec)
                own = df.loc[df.test_set.isin(SEEN[sp]), "score"].to_numpy(float)
                c = collapse_reason(own) if len(own) else "no own-test scores"
                if c:
                    m["reasons"].append(f"{sp} {var} {c}")
            models[(sp, var)] = m

    present = [m for m in models.values() if m["rec"] is not None]
    if not present:
        print("no F1 records found")
        return 1
    ref = scores(present[0]["rec"])
    for m in present:
        df = scores(m["rec"])
        assert len(df) == len(ref) and (df.image_id.to_numpy() == ref.image_id.to_numpy()).all(), m["rec"]["dir"]
        assert (df.label.to_numpy() == ref.label.to_numpy()).all() and \
               (df.group_id.astype(str).to_numpy() == ref.group_id.astype(str).to_numpy()).all() and \
               (df.test_set.to_numpy() == ref.test_set.to_numpy()).all(), m["rec"]["dir"]

    # ---- the one set of patient draws
    if args.universe == "all":
        uni = ref
    else:
        uni = ref[ref.test_set.isin(PAIR_CK + PAIR_HN)]
    groups = sorted(set(uni.group_id.astype(str)))
    gidx = {g: i for i, g in enumerate(groups)}
    counts = patient_draws(groups, N_BOOT, BOOT_SEED)

    auc_cache: dict[tuple, tuple[float, np.ndarray]] = {}

    def auc(m, parts):
        """(point AUC, bootstrap AUC replicates) of model m on the test images of `parts`."""
        key = (m["split"], m["variant"], parts)
        if key not in auc_cache:
            df = scores(m["rec"])
            sub = df[df.test_set.isin(parts)]
            lab = sub.label.to_numpy(int)
            C = pair_matrix(sub.score.to_numpy(float), lab)
            gi = sub.group_id.astype(str).map(gidx)
            if gi.isna().any():  # only the beside drops of U3 under --universe comparisons
                auc_cache[key] = (float(C.mean()), np.full(N_BOOT, np.nan))
            else:
                w = counts[:, gi.to_numpy(int)]
                auc_cache[key] = (float(C.mean()), weighted_auc(C, w[:, lab == 1], w[:, lab == 0]))
        return auc_cache[key]

    # ---- comparisons
    comps = []
    for var in VARIANTS:
        for name, a, b, parts in CONTRASTS:
            ma, mb = models[(a, var)], models[(b, var)]
            reasons = ma["reasons"] + mb["reasons"]
            c = dict(label=f"{var:<9} {name}", variant=var, contrast=name, trained=a, other=b, parts=list(parts),
                     reasons=reasons, used=not reasons)
            if ma["rec"] is not None and mb["rec"] is not None:
                pa, ba = auc(ma, parts)
                pb, bb = auc(mb, parts)
                c.update(auc_seen_model=pa, auc_unseen_model=pb, diff=pa - pb, boot=ba - bb,
                         run_trained=ma["rec"]["dir"].name, run_other=mb["rec"]["dir"].name)
            comps.append(c)

    used = [c for c in comps if c["used"]]
    n_total = len(comps)
    res = summarise([c["boot"] for c in used], np.mean([c["diff"] for c in used]) if used else float("nan"))
    outcome = decide(res["low"], res["high"], res["mde"], len(used), n_total)[0]
    reasons_count: dict[str, int] = {}
    for c in comps:
        if not c["used"]:
            text = " ".join(c["reasons"])
            k = next(k for k in ("missing", "did not learn", "collapsed", "no own-test scores") if k in text)
            reasons_count[k] = reasons_count.get(k, 0) + 1

    for c in comps:
        if "boot" in c:
            r = summarise([c["boot"]], c["diff"])
            c.update(low=r["low"], high=r["high"], mde=r["mde"])

    def group_summary(key):
        out = {}
        for val in dict.fromkeys(c[key] for c in comps):
            sub = [c for c in comps if c[key] == val]
            u = [c for c in sub if c["used"]]
            r = summarise([c["boot"] for c in u], np.mean([c["diff"] for c in u]) if u else float("nan"))
            r.update(n_used=len(u), n_total=len(sub))
            out[val] = r
        return out

    per_contrast, per_variant = group_summary("contrast"), group_summary("variant")

    # ---- within-model drop beside: AUC(seen parts) - AUC(unseen parts), per model
    drops = []
    for (sp, var), m in models.items():
        if m["rec"] is None:
            continue
        unseen = tuple(m["metrics"].get("unseen_parts") or ())
        ps, bs = auc(m, SEEN[sp])
        pu, bu = auc(m, unseen)
        r = summarise([bs - bu], ps - pu)
        drops.append(dict(model=f"{sp} {var}", split=sp, variant=var, seen=list(SEEN[sp]), unseen=list(unseen),
                          auc_seen=ps, auc_unseen=pu, drop=ps - pu, low=r["low"], high=r["high"],
                          left_out="; ".join(m["reasons"]) or None, boot=bs - bu))
    du = [d for d in drops if not d["left_out"]]
    drop_all = summarise([d["boot"] for d in du], np.mean([d["drop"] for d in du]))
    d12 = [d for d in du if d["split"] in ("U1", "U2")]
    drop_12 = summarise([d["boot"] for d in d12], np.mean([d["drop"] for d in d12]))

    # ---- report
    print(f"F1 recheck, scale {args.scale} (unseen grid): AUC of the model that saw a pair of sources minus "
          f"the model of the same variant that did not, on the same test patients")
    print(f"results: {args.results}")
    print(f"records not counted (variants): {len(excluded)}")
    for name, why in excluded:
        print(f"   {name}: {why}")
    for n in notes:
        print("NOTE", n)
    print("models:")
    for (sp, var), m in models.items():
        st = "ok" if not m["reasons"] else "; ".join(m["reasons"])
        print(f"   {sp} {var:<9} {m['rec']['dir'].name if m['rec'] else '-':<62} best val AUC "
              f"{m.get('best_val', float('nan')):.4f}  {st}")
    print(f"bootstrap: {N_BOOT} replicates, seed {BOOT_SEED}, one multinomial draw over {len(groups)} test patients "
          f"(universe: {args.universe})")
    print(f"\n{'comparison':<36}{'AUC seen':>10}{'AUC unseen':>11}{'diff':>9}   95% CI              status")
    for c in comps:
        if "diff" in c:
            nums = (f"{c['auc_seen_model']:10.4f}{c['auc_unseen_model']:11.4f}{c['diff']:+9.4f}   "
                    f"[{c['low']:+.4f}, {c['high']:+.4f}]")
        else:
            nums = " " * 50
        print(f"{c['label']:<36}{nums}  {'used' if c['used'] else 'LEFT OUT: ' + '; '.join(c['reasons'])}")
    print(f"\npooled estimate {res['estimate']:+.6f}  95% CI [{res['low']:+.4f}, {res['high']:+.4f}]  "
          f"SE {res['se']:.4f}  MDE {res['mde']:.4f}")
    print(f"used {len(used)} / {n_total}; left out {n_total - len(used)} {reasons_count}; "
          f"replicates with an undefined comparison: {res['n_nan']}")
    print(f"decision: {outcome}")
    print("\nbeside, per contrast:")
    for k, r in per_contrast.items():
        print(f"   {k:<28} {r['estimate']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] MDE {r['mde']:.4f} "
              f"({r['n_used']}/{r['n_total']})")
    print("beside, per variant:")
    for k, r in per_variant.items():
        print(f"   {k:<28} {r['estimate']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] MDE {r['mde']:.4f} "
              f"({r['n_used']}/{r['n_total']})")
    print("beside, within-model drop AUC(seen) - AUC(unseen) (Ben Ahmed et al.'s reading, unpaired):")
    for d in drops:
        print(f"   {d['model']:<13} seen {'/'.join(d['seen']):<32} {d['auc_seen']:.4f}  unseen "
              f"{'/'.join(d['unseen']):<32} {d['auc_unseen']:.4f}  drop {d['drop']:+.4f} "
              f"[{d['low']:+.4f}, {d['high']:+.4f}]" + (f"  (left out: {d['left_out']})" if d["left_out"] else ""))
    print(f"   mean over {len(du)} models: {drop_all['estimate']:+.4f} [{drop_all['low']:+.4f}, {drop_all['high']:+.4f}]; "
          f"over the {len(d12)} U1/U2 models: {drop_12['estimate']:+.4f} [{drop_12['low']:+.4f}, {drop_12['high']:+.4f}]")
    print(f"runtime {time.time() - t0:.1f} s")

    if args.json:
        out = dict(claim="F1", scale=args.scale, estimate=res["estimate"], low=res["low"], high=res["high"],
                   mde=res["mde"], se=res["se"], n_used=len(used), n_left_out=n_total - len(used),
                   left_out_reasons=reasons_count,
                   left_out={c["label"]: "; ".join(c["reasons"]) for c in comps if not c["used"]},
                   outcome=outcome, n_patients=len(groups), universe=args.universe, n_boot=N_BOOT,
                   replicates_with_undefined=res["n_nan"],
                   per_contrast=per_contrast, per_variant=per_variant,
                   comparisons=[{k: v for k, v in c.items() if k != "boot"} for c in comps],
                   within_model_drop=[{k: v for k, v in d.items() if k != "boot"} for d in drops],
                   within_model_drop_mean=drop_all, within_model_drop_mean_u1u2=drop_12,
                   excluded_variants=dict(excluded))
        write_json(args.json, out, indent=2, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
