"""Independent recomputation of finding F3 (chapter 10, after DeGrave et al. 2021): "a corner mark
planted on the COVID+ training and validation images is still read by the model after the paper's
pre-processing chain", measured PAIRED on the same test images: AUC with the mark on the COVID+
test images minus AUC with the mark moved onto the COVID- test images.

Reads only the raw run records under results/ (spec.json, metrics.json, scores.csv). Nothing is
imported from the project's library (covid_lib), and it was written without reading that
library's code, from the text of book/protocol.md alone (header and section "F3").

Records (grid `planted`): task covid, composition CORDA, arch resnet18, pretrain None (from
scratch), freeze / adapt None, profile cpu, input 128, no precision override, seed 0, and
spec.plant in {corner, gamma}, spec.pipeline in {paper, none}. Four models:
  corner / paper  : DECIDES (the mark through the paper's chain)
  corner / none   : control (the same contrast without the chain)
  gamma  / paper, gamma / none : reported beside (the gamma mark)
Every other record (no plant: the ordinary grids) is not part of this finding; records that carry
a plant but differ in another field would be listed as excluded variants (there are none on the
present records). If several records fill one (plant, pipeline) cell the latest `created` is taken
and a note is printed (on the present records every cell has exactly one).

How the marked scores are recorded: each planted run's scores.csv holds the same 86 CORDA test
images three times, test_set "CORDA · marked" (mark on the COVID+ images, as in training),
"CORDA · flipped" (the mark moved onto the COVID- images) and "CORDA · unmarked" (no mark).
Image ids, labels and patient groups are checked to be identical across the three sets and the
four models.

Estimand (deciding comparison, planned count 1): AUC(marked) - AUC(flipped) of the corner/paper
model. AUC = Mann-Whitney statistic, ties 1/2, every test image one observation. The pooled
estimate is the mean over usable comparisons, i.e. this one comparison when it is usable.

Left out (protocol header): a comparison is left out when its model has no record, did not learn
(metrics.json best_value = best validation AUC < 0.6; on these runs the monitored val_auc is the
validation AUC with the mark on the COVID+ images, as trained) or collapsed (own-test scores all
>= 0.5 or all < 0.5, or 5-95% percentile range < 0.001). READING: "own test" = the test images as
the model was trained to see them, test_set "CORDA · marked"; the check is also printed for the
unmarked and flipped sets (on the present records the verdict of the check is the same for all
three). READING: the deciding comparison involves one model (the chain model); the control model
is a separate beside quantity, so its status does not leave the deciding comparison out (its own
status is printed; on the present records it is usable anyway). With no usable comparison the
finding is inconclusive (protocol: "Always inconclusive with no usable comparison ... or more than
50% of them left out"). In that case the JSON's estimate / low / high / mde are still those of the
left-out deciding comparison, flagged "estimate_from": "left-out comparison (not deciding)", so
the numbers can be compared; they decide nothing.

Bootstrap (paired, patient clusters): 2000 replicates, numpy default_rng(0). ONE multinomial draw
(N out of N) over the test patients of the claim, shared by all four models and the three test
sets, so the same patients with the mark on, moved, or off, and scored by every model, are
resampled together. READING: the patient is scores.csv group_id (53 groups; patient ids cohen:137
and cohen:202 share one group, so 54 patient ids), as in the earlier rechecks; --unit patient_id
uses the 54 raw patient ids instead (sensitivity). An image's weight is its group's draw count; a
replicate's AUC is the weighted Mann-Whitney statistic; replicates with no positive or no negative
weight are NaN and dropped (counted). Interval: 2.5 and 97.5 percentiles of the replicates of the
pooled estimate; MDE = (z(0.975) + z(0.8)) x their SD (ddof=1).

Decision (directional): inconclusive with no usable comparison or more than 50% of the planned
comparisons left out; otherwise reproduced when low > 0, not reproduced when high < 0, no
detectable effect when the interval includes 0 and its upper end is below the MDE (READING of
"stays below the MDE"), inconclusive otherwise.

Reported beside, never deciding: the control (corner / none: marked - flipped); marked - unmarked
for every model; the gamma mark (gamma / paper and gamma / none, both contrasts); the chain model's
contrast minus the control's (a reading of "control" as a difference, shown only); the AUC of each
model on each test set.

Scale: the finding has one scale (the `planted` grid, cpu profile, from scratch); labelled
"planted". --scale accepts only that value, for a uniform interface.

--keep-threshold-collapsed: the collapse-rule sensitivity reading (book/verdicts.json,
collapse_sensitivity.findings.F3): a model is collapsed only when its own-test 5-95% range is under
0.001, so a model whose scores all sit on one side of 0.5 but spread is kept (rechecks/shared.py);
did-not-learn unchanged. The JSON then carries "collapse_rule"; without the flag the output is the
protocol's.

Usage: python rechecks/recheck_f3.py [--results DIR] [--scale planted] [--json PATH]
                                     [--unit group_id|patient_id] [--keep-threshold-collapsed]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shared import (Z, add_collapse_option, apply_collapse_option, collapse_reason, decide, pair_matrix, patient_draws,
                    weighted_auc, write_json)

N_BOOT = 2000
BOOT_SEED = 0
MIN_VAL_AUC = 0.6
MARKED, FLIPPED, UNMARKED = "CORDA · marked", "CORDA · flipped", "CORDA · unmarked"
TEST_SETS = [MARKED, FLIPPED, UNMARKED]
MODELS = [("corner", "paper"), ("corner", "none"), ("gamma", "paper"), ("gamma", "none")]
DECIDING = ("corner", "paper")
CONTROL = ("corner", "none")


# ---------------------------------------------------------------- records
def cell_of(s: dict):
    """((plant, pipeline), None) for a planted-grid default record, (None, why) for a planted variant,
    (None, None) for a record that is not of the planted grid at all."""
    if s.get("plant") in (None, False):
        return None, None
    checks = [("task", "covid"), ("composition", "CORDA"), ("arch", "resnet18"), ("profile", "cpu"),
              ("input_size", 128), ("pretrain", None), ("seed", 0)]
    for k, v in checks:
        if s.get(k) != v:
            return None, f"{k} {s.get(k)}"
    for k in ("freeze", "adapt", "precision"):
        if s.get(k) not in (None, False):
            return None, f"{k} {s.get(k)}"
    cell = (s.get("plant"), s.get("pipeline"))
    if cell not in MODELS:
        return None, f"plant {cell[0]} / pipeline {cell[1]} (not a cell of the planted grid)"
    return cell, None


def index_records(results: Path):
    cells: dict[tuple, list[dict]] = {}
    excluded: list[tuple[str, str]] = []
    for d in sorted(results.glob("covid-*")):
        p = d / "spec.json"
        if not p.exists():
            continue
        j = json.loads(p.read_text())
        cell, why = cell_of(j.get("spec", {}))
        if why:
            excluded.append((d.name, why))
        elif cell:
            cells.setdefault(cell, []).append(dict(dir=d, spec=j))
    return cells, excluded


def pick(cands, notes, label):
    ok = [c for c in cands if (c["dir"] / "scores.csv").exists() and (c["dir"] / "metrics.json").exists()]
    if len(ok) > 1:
        ok.sort(key=lambda c: c["spec"].get("created", ""))
        notes.append(f"{label}: {len(ok)} records {[c['dir'].name for c in ok]}; took latest created")
    return ok[-1] if ok else None


# ---------------------------------------------------------------- statistics


def own_collapse(scores, spread_only=None):
    """The shared collapse rule, with the scores' range in the reason when they sit on one side
    (``spread_only``: as in shared.collapse_reason, default the --keep-threshold-collapsed switch)."""
    if len(scores) == 0:
        return "no own-test scores"
    why = collapse_reason(scores, spread_only=spread_only)
    if why is not None and "one side" in why:
        side = ">= 0.5" if (scores >= 0.5).all() else "< 0.5"
        return f"collapsed (own-test scores all {side}: {scores.min():.3f}-{scores.max():.3f})"
    return why


def summarise(boot, point):
    ok = ~np.isnan(boot)
    if not ok.any():
        nan = float("nan")
        return dict(estimate=float(point), low=nan, high=nan, se=nan, mde=nan, n_nan=int((~ok).sum()))
    lo, hi = np.percentile(boot[ok], [2.5, 97.5])
    se = float(np.std(boot[ok], ddof=1))
    return dict(estimate=float(point), low=float(lo), high=float(hi), se=se, mde=float(Z * se),
                n_nan=int((~ok).sum()))


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    t0 = time.time()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    ap.add_argument("--scale", choices=["planted"], default="planted",
                    help="F3 has one scale (the planted grid)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--unit", choices=["group_id", "patient_id"], default="group_id",
                    help="column of scores.csv that names the resampled patient (default group_id)")
    add_collapse_option(ap)
    args = ap.parse_args(argv)
    rule = apply_collapse_option(args)

    cells, excluded = index_records(args.results)
    notes: list[str] = []

    # ---- models, their scores and status
    models: dict[tuple, dict] = {}
    for cell in MODELS:
        label = f"{cell[0]}/{cell[1]}"
        rec = pick(cells.get(cell, []), notes, label)
        m = dict(cell=cell, label=label, rec=rec, reasons=[], collapse_by_set={})
        if rec is None:
            m["reasons"].append(f"{label} missing")
        else:
            met = json.loads((rec["dir"] / "metrics.json").read_text())
            bv = met.get("best_value")
            m["best_val"] = bv
            m["plant_info"] = met.get("plant", {})
            if bv is None or bv < MIN_VAL_AUC:
                m["reasons"].append(f"{label} did not learn (best val AUC {bv})")
            df = pd.read_csv(rec["dir"] / "scores.csv")
            m["sets"] = {t: df[df.test_set == t].sort_values("image_id").reset_index(drop=True) for t in TEST_SETS}
            for t in TEST_SETS:
                m["collapse_by_set"][t] = own_collapse(m["sets"][t].score.to_numpy(float))
            c = m["collapse_by_set"][MARKED]
            if c:
                m["reasons"].append(f"{label} {c}")
            strict = own_collapse(m["sets"][MARKED].score.to_numpy(float), spread_only=False)
            if rule and strict and not c:  # kept by the sensitivity reading only
                m["kept"] = f"kept by --keep-threshold-collapsed; the protocol's rule: {strict}"
        models[cell] = m

    present = [m for m in models.values() if m["rec"] is not None]
    if not present:
        print("no F3 records found")
        return 1
    ref = present[0]["sets"][MARKED]
    for m in present:
        for t in TEST_SETS:
            df = m["sets"][t]
            assert len(df) == len(ref) and (df.image_id.to_numpy() == ref.image_id.to_numpy()).all(), (m["label"], t)
            assert (df.label.to_numpy() == ref.label.to_numpy()).all(), (m["label"], t)
            assert (df[args.unit].astype(str).to_numpy() == ref[args.unit].astype(str).to_numpy()).all(), (m["label"], t)

    # ---- the one set of patient draws
    lab = ref.label.to_numpy(int)
    units = ref[args.unit].astype(str)
    groups = sorted(set(units))
    gidx = {g: i for i, g in enumerate(groups)}
    counts = patient_draws(groups, N_BOOT, BOOT_SEED)
    w = counts[:, units.map(gidx).to_numpy(int)]
    wpos, wneg = w[:, lab == 1], w[:, lab == 0]

    for m in present:
        m["auc"], m["boot"] = {}, {}
        for t in TEST_SETS:
            C = pair_matrix(m["sets"][t].score.to_numpy(float), lab)
            m["auc"][t] = float(C.mean())
            m["boot"][t] = weighted_auc(C, wpos, wneg)

    def contrast(m, a, b):
        if m["rec"] is None:
            return None
        r = summarise(m["boot"][a] - m["boot"][b], m["auc"][a] - m["auc"][b])
        r.update(auc_a=m["auc"][a], auc_b=m["auc"][b], status="; ".join(m["reasons"]) or "usable",
                 run=m["rec"]["dir"].name)
        return r

    # ---- deciding comparison
    dm = models[DECIDING]
    planned = [dict(label="corner/paper marked-flipped", model=dm)]
    used = [c for c in planned if not c["model"]["reasons"]]
    n_total, n_used = len(planned), len(used)
    dec = contrast(dm, MARKED, FLIPPED)
    if used:
        res, estimate_from = dec, "usable comparisons"
    else:
        res, estimate_from = dec, "left-out comparison (not deciding)"
    outcome = decide(res["low"], res["high"], res["mde"], n_used, n_total, min_used=1)[0] if res is not None else "inconclusive"
    reasons_count: dict[str, int] = {}
    for c in planned:
        if c["model"]["reasons"]:
            text = " ".join(c["model"]["reasons"])
            k = next(k for k in ("missing", "did not learn", "collapsed", "no own-test scores") if k in text)
            reasons_count[k] = reasons_count.get(k, 0) + 1

    # ---- beside
    beside = {}
    for cell in MODELS:
        m = models[cell]
        beside[f"{m['label']} marked-flipped"] = contrast(m, MARKED, FLIPPED)
        beside[f"{m['label']} marked-unmarked"] = contrast(m, MARKED, UNMARKED)
    cm = models[CONTROL]
    chain_minus_control = None
    if dm["rec"] is not None and cm["rec"] is not None:
        bd = (dm["boot"][MARKED] - dm["boot"][FLIPPED]) - (cm["boot"][MARKED] - cm["boot"][FLIPPED])
        pd_ = (dm["auc"][MARKED] - dm["auc"][FLIPPED]) - (cm["auc"][MARKED] - cm["auc"][FLIPPED])
        chain_minus_control = summarise(bd, pd_)

    # ---- report
    print("F3 recheck, scale planted: AUC with the corner mark on the COVID+ test images minus AUC with the mark "
          "moved onto the COVID- images, ResNet-18 from scratch on CORDA through the paper's chain, seed 0")
    print(f"results: {args.results}")
    print(f"planted records excluded as variants: {len(excluded)}")
    for name, why in excluded:
        print(f"   {name}: {why}")
    for n in notes:
        print("NOTE", n)
    print("models:")
    for m in models.values():
        if m["rec"] is None:
            print(f"   {m['label']:<13} missing")
            continue
        aucs = "  ".join(f"{t.split(' · ')[1]} {m['auc'][t]:.4f}" for t in TEST_SETS)
        print(f"   {m['label']:<13} {m['rec']['dir'].name}  best val AUC {m['best_val']:.4f}  {aucs}")
        for t in TEST_SETS:
            s = m["sets"][t].score
            print(f"      {t:<18} scores {s.min():.4f}-{s.max():.4f}  share >= 0.5 {np.mean(s >= 0.5):.3f}  "
                  f"collapse check: {m['collapse_by_set'][t] or 'ok'}")
        print(f"      status: {'; '.join(m['reasons']) or 'usable'}" + (f" ({m['kept']})" if m.get("kept") else ""))
    print(f"bootstrap: {N_BOOT} replicates, seed {BOOT_SEED}, one multinomial draw over {len(groups)} "
          f"test patients ({args.unit}), shared by every model and test set")

    def line(name, r):
        if r is None:
            return f"   {name:<30} no record"
        return (f"   {name:<30} {r['auc_a']:.4f} - {r['auc_b']:.4f} = {r['estimate']:+.4f}  "
                f"[{r['low']:+.4f}, {r['high']:+.4f}]  MDE {r['mde']:.4f}  ({r['status']})")

    print("\ndeciding comparison (planned 1):")
    print(line("corner/paper marked-flipped", dec))
    print(f"\nestimate {res['estimate']:+.6f}  95% CI [{res['low']:+.4f}, {res['high']:+.4f}]  SE {res['se']:.4f}  "
          f"MDE {res['mde']:.4f}   (from: {estimate_from})")
    print(f"used {n_used} / {n_total}; left out {n_total - n_used} {reasons_count}; "
          f"replicates undefined: {res['n_nan']}")
    print(f"decision: {outcome}")
    print("\nreported beside, never deciding:")
    print("  control (the model without the chain):")
    print(line("corner/none marked-flipped", beside["corner/none marked-flipped"]))
    print("  marked minus unmarked:")
    for cell in MODELS:
        k = f"{models[cell]['label']} marked-unmarked"
        print(line(k, beside[k]))
    print("  the gamma mark:")
    print(line("gamma/paper marked-flipped", beside["gamma/paper marked-flipped"]))
    print(line("gamma/none marked-flipped", beside["gamma/none marked-flipped"]))
    if chain_minus_control:
        r = chain_minus_control
        print(f"  chain contrast minus control contrast (corner): {r['estimate']:+.4f} [{r['low']:+.4f}, "
              f"{r['high']:+.4f}] MDE {r['mde']:.4f}")
    print(f"runtime {time.time() - t0:.1f} s")

    if args.json:
        out = dict(claim="F3", scale=args.scale, estimate=res["estimate"], low=res["low"], high=res["high"],
                   mde=res["mde"], se=res["se"], n_used=n_used, n_left_out=n_total - n_used,
                   left_out_reasons=reasons_count,
                   left_out={c["label"]: "; ".join(c["model"]["reasons"]) for c in planned if c["model"]["reasons"]},
                   outcome=outcome, estimate_from=estimate_from, n_patients=len(groups), unit=args.unit,
                   n_boot=N_BOOT, replicates_undefined=res["n_nan"],
                   deciding=dict(dec, auc_marked=dec["auc_a"], auc_flipped=dec["auc_b"]) if dec else None,
                   beside=beside, chain_minus_control=chain_minus_control,
                   models={m["label"]: dict(run=m["rec"]["dir"].name if m["rec"] else None,
                                            best_val_auc=m.get("best_val"), auc=m.get("auc"),
                                            collapse_by_set=m["collapse_by_set"],
                                            status="; ".join(m["reasons"]) or "usable",
                                            **({"kept": m["kept"]} if m.get("kept") else {}))
                           for m in models.values()},
                   excluded_variants=dict(excluded), **rule)
        write_json(args.json, out, indent=2, default=float, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
