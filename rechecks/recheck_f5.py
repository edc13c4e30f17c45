"""Independent recomputation of finding F5 (the KTH report's self-organising maps, chapter 13, "the
latent landscape"): does fine-tuning make the map of an encoder's features purer by COVID label,
net of what it does to the map's purity by data source?

Written from the text of book/protocol.md alone (header and section "F5"); it imports nothing from
the project's library (covid_lib) and was written without reading it. It reads:
  results/claims/f5.csv   one row per (test image, encoder): source, image_id, group_id (patient),
                          label (1 = COVID+), age_group, encoder ("before" / "after"), node = the
                          node of that encoder's self-organising map the image maps to;
  results/claims/f5.json  the runs behind the encoders and their status, n_perm, the maps' shapes;
  results/<run_id>/       metrics.json / scores.csv of those runs, for the header's left-out rules.
The maps themselves are taken as recorded: they are NOT retrained (not here, not per replicate).

Definitions (readings chosen where the protocol's text leaves a choice):
  purity(map, attribute) = sum over nodes j of max_k n_jk, divided by the number of images N, where
      n_jk = number of images of node j with attribute value k. This is the image-weighted mean
      over nodes of the node's majority share (each image one observation; the patient is only the
      unit of resampling). Empty nodes contribute nothing.
  attributes: label (COVID+ / COVID-), source (the six sources of f5.csv), age group. Age group
      is read only on the images whose age is known: "unknown" is not an age group, so those
      images are left out of the age purity (and of its permutations); reported beside only.
  null purity = the expectation of purity when the attribute is permuted at random across the
      map's images (node occupancy fixed: "a permutation of each map"), estimated by Monte Carlo
      with n_perm permutations (n_perm from f5.json, 200), permutation generator
      numpy default_rng(PERM_SEED = 0), a generator separate from the bootstrap's. The same
      permutations of the images are applied to both encoders' maps (paired, so the Monte Carlo
      noise largely cancels in the after-minus-before change). The exact expectation (a
      multivariate-hypergeometric computation, no Monte Carlo) is printed beside for the point
      estimate; it differs from the 200-permutation value only by Monte Carlo error.
  excess purity = purity - null purity.
  ESTIMAND  D = [excess(after, label) - excess(after, source)]
               - [excess(before, label) - excess(before, source)].
  "before" = the encoder pre-trained on ChestXRay (kermany_full) before fine-tuning (its
  pre-training record); "after" = the same encoder fine-tuned on CORDA&ChestXRay, seed 0. Both map
  the same 437 test images (checked: same image ids, sources, labels, patients, age groups).

Test (paired patient-cluster bootstrap): 2000 replicates, ONE set of multinomial draws (N out of
N) over the sorted unique group_ids of f5.csv (shared.patient_draws, default_rng(0)), used by both
encoders. In a replicate every image carries its patient's draw count c as its weight, purity is
the weighted one, sum_j max_k W_jk / W (W_jk = total weight of node j's images with value k), and
the permutation null is RECOMPUTED in every replicate (the statistic is re-applied to the
resampled data, null included): n_perm fresh permutations of the attribute across the map's 437
images, each image keeping its weight at its place in the map (so the copies of a patient drawn
twice stay together, as they do in the observed purity), same permutation generator, consumed in
order: the point estimate first, then replicates 0..1999, attributes label, source, age.
Interval: 2.5 / 97.5 percentiles of the replicate values of D; SE = their SD (ddof=1);
MDE = (z(0.975) + z(0.8)) x SE.
Note: a majority share in nodes of ~4 images is not a smooth statistic; the replicate values of
each encoder's excess purity are shifted from the point (their percentile intervals need not
contain it, printed with the replicate mean); in the paired after-minus-before difference D the
shift cancels (replicate mean printed beside).

Left out (protocol header; one planned comparison, after against before): the comparison is left
out when either encoder has no record (f5.json status other than "done", no rows in f5.csv, or no
run folder / metrics.json), did not learn (metrics.json best_value, the best validation AUC,
< 0.6), or collapsed. Collapse (a reading): for the fine-tuned COVID model, shared.collapse_reason
on its scores on its own composition's test set (scores.csv test_set == spec composition); for the
3-class pre-training record, whose scores are class probabilities, "every score on one side of
0.5" is read as the same predicted class (argmax) for every test image, and "no spread" as every
class probability having a 5-95% range < 0.001. Precedence for counting: missing > did not learn
> collapsed.

Decision: the directional rule (shared.decide) with min_used = 1 (a finding: "inconclusive with no
usable comparison or more than 50% of them left out").

Reported beside, never deciding: purity, null and excess purity by label, source and age group
per encoder, with bootstrap intervals, and their changes; age with "unknown" as a fourth group
(point only); the exact permutation expectation (point only); the encoder from scratch (f5.json:
no checkpoint, no map, so not available); sensitivity readings of the null and of the weights (each with
the decision the rule would give it):
  fixed-null        : the permutation expectation computed once on the observed data and held
                      fixed in every replicate (only the observed purity is resampled);
  copies-null       : the replicate as a data set of image copies, the attribute permuted across
                      the copies (the copies of one image can then fall on different values);
  patient-wt        : each image weighted 1 / (its patient's number of images) times the draw
                      count, so every patient counts once in node purity;
  normalised-excess : excess read as (purity - null) / (1 - null), the share of the possible gain
                      over chance (a kappa-like scale; label and source have different chance
                      levels, 0.74 and 0.45, and so different ceilings), primary bootstrap;
  exact-null        : the point estimate with the exact permutation expectation.

Comparison with the library (book/verdicts.json, F5; read only after this script was written):
the library's excess purities are on the normalised scale ((purity - null) / (1 - null): its
"before, label" 0.3698 = (0.8375 - 0.742) / (1 - 0.742)), and its age group counts "unknown" as a
fourth group (its 0.3725 / 0.4107 = this script's "age+unknown" normalised 0.372 / 0.409). Its
estimate +0.0402 is this script's normalised-excess reading (+0.0399; the nulls differ by Monte
Carlo error only). The raw excess (this script's primary reading: what "excess purity ... measured
against a permutation" says literally) gives +0.0057. The normalised, chance-corrected scale
(as in kappa) is a legitimate reading too, not the literal one; it is reported beside.
Intervals on the normalised scale depend on how the bootstrap weights enter the null: this
script's gives [-0.094, +0.148], MDE 0.172 (no detectable effect); fixed or copies nulls give about
[-0.073, +0.117], MDE 0.135 (no detectable effect); the library's is [-0.060, +0.138], MDE 0.137,
"inconclusive" because its upper end passes its MDE by 0.001. No reading gives "reproduced".

Usage: python rechecks/recheck_f5.py [--claims DIR] [--results DIR] [--json OUT.json]
                                     [--n-boot 2000] [--no-sensitivity]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shared import Z, collapse_reason, decide, patient_draws, write_json

N_BOOT = 2000
BOOT_SEED = 0
PERM_SEED = 0
MIN_VAL_AUC = 0.6
ENCODERS = ("before", "after")
ATTRS = ("label", "source", "age")
UNKNOWN_AGE = "unknown"


# ---------------------------------------------------------------- records and left-out rules
def encoder_status(role: str, meta: dict, df: pd.DataFrame, results: Path) -> tuple[str | None, dict]:
    """(reason it is left out or None, facts) for the encoder ``role``."""
    run = meta.get("runs", {}).get(role)
    st = meta.get("status", {}).get(role)
    facts = dict(run=run, status=st)
    if not run or st != "done" or (df.encoder == role).sum() == 0:
        return f"{role}: missing (status {st!r}, {(df.encoder == role).sum()} rows)", facts
    d = results / run
    if not (d / "metrics.json").exists() or not (d / "spec.json").exists():
        return f"{role}: missing (no record {d})", facts
    met = json.loads((d / "metrics.json").read_text())
    spec = json.loads((d / "spec.json").read_text())["spec"]
    bv = met.get("best_value")
    facts["best_val_auc"] = bv
    if bv is None or bv < MIN_VAL_AUC:
        return f"{role}: did not learn (best validation AUC {bv})", facts
    if not (d / "scores.csv").exists():
        return f"{role}: missing (no scores.csv)", facts
    sc = pd.read_csv(d / "scores.csv")
    if "score" in sc.columns:
        own = sc.loc[sc.test_set == spec["composition"], "score"].to_numpy(float)
        facts["own_test"] = f"{spec['composition']} ({len(own)} images)"
        why = collapse_reason(own) if len(own) else "no own-test scores"
    else:  # multi-class pre-training record
        P = sc[[c for c in sc.columns if c.startswith("prob_")]].to_numpy(float)
        facts["own_test"] = f"{spec['composition']} ({len(P)} images, {P.shape[1]} classes)"
        arg = P.argmax(1)
        if len(P) == 0:
            why = "no own-test scores"
        elif (arg == arg[0]).all():
            why = "collapsed (own-test predictions all one class)"
        elif (np.percentile(P, 95, axis=0) - np.percentile(P, 5, axis=0) < 0.001).all():
            why = "collapsed (own-test 5-95% range < 0.001 for every class)"
        else:
            why = None
    if why:
        return f"{role}: {why}", facts
    return None, facts


# ---------------------------------------------------------------- purity
def purity_counts(nodes: np.ndarray, attr: np.ndarray, J: int, K: int, w: np.ndarray | None = None) -> float:
    """sum_j max_k W_jk / W for one map (``w`` None: every image weight 1)."""
    W = np.bincount(nodes * K + attr, weights=w, minlength=J * K).reshape(J, K)
    tot = W.sum()
    return float(W.max(1).sum() / tot) if tot > 0 else float("nan")


def perm_purities(nodes: np.ndarray, perm_attr: np.ndarray, J: int, K: int) -> np.ndarray:
    """(n_perm,) purities of one map under the permuted attributes ``perm_attr`` (n_perm, M)."""
    P, M = perm_attr.shape
    code = (np.arange(P)[:, None] * (J * K) + nodes[None, :] * K + perm_attr).ravel()
    W = np.bincount(code, minlength=P * J * K).reshape(P, J, K)
    return W.max(2).sum(1) / M


def exact_null(nodes: np.ndarray, attr: np.ndarray, K: int) -> float:
    """Exact E[purity] when ``attr`` is permuted uniformly across the images: each node's counts
    are multivariate hypergeometric, E[max_k X_k] = sum_{t>=1} (1 - P(all X_k <= t-1)), and
    P(all X_k <= s) = [x^m] prod_k sum_{x <= s} C(T_k, x) x^x / C(M, m) (exact integers)."""
    M = len(attr)
    T = np.bincount(attr, minlength=K)
    total = 0.0
    for m in np.bincount(nodes):
        m = int(m)
        if m == 0:
            continue
        e = 0.0
        for t in range(1, m + 1):
            s = t - 1
            poly = [1]
            for Tk in T:
                f = [math.comb(int(Tk), x) for x in range(0, min(s, int(Tk)) + 1)]
                new = [0] * min(len(poly) + len(f) - 1, m + 1)
                for i, a in enumerate(poly):
                    if a == 0:
                        continue
                    for j, b in enumerate(f):
                        if i + j > m:
                            break
                        new[i + j] += a * b
                poly = new
            p_le = (poly[m] if len(poly) > m else 0) / math.comb(M, m)
            e += 1.0 - p_le
        total += e
    return total / M


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    t0 = time.time()
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--claims", type=Path, default=root / "results" / "claims")
    ap.add_argument("--results", type=Path, default=root / "results")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--n-boot", type=int, default=N_BOOT)
    ap.add_argument("--no-sensitivity", action="store_true", help="skip the sensitivity readings")
    args = ap.parse_args(argv)

    meta = json.loads((args.claims / "f5.json").read_text())
    df = pd.read_csv(args.claims / "f5.csv")
    n_perm = int(meta["n_perm"])
    notes: list[str] = []

    # ---- left-out rules (one planned comparison: after against before)
    reasons, facts = [], {}
    for role in ENCODERS:
        why, facts[role] = encoder_status(role, meta, df, args.results)
        if why:
            reasons.append(why)
    n_plan = 1
    used = not reasons
    n_used, n_out = int(used), 1 - int(used)
    left_out_reasons = {}
    if reasons:
        k = next(n for n in ("missing", "did not learn", "collapsed") if any(n in r for r in reasons))
        left_out_reasons[k] = 1
    scratch = dict(run=meta.get("runs", {}).get("scratch"), status=meta.get("status", {}).get("scratch"),
                   rows=int((df.encoder == "scratch").sum()))

    # ---- the images, checked identical across encoders
    enc = {}
    for role in ENCODERS:
        e = df[df.encoder == role].sort_values("image_id").reset_index(drop=True)
        enc[role] = e
    ref = enc["before"]
    for role in ENCODERS[1:]:
        e = enc[role]
        for col in ("image_id", "source", "group_id", "label", "age_group"):
            if len(e) != len(ref) or (e[col].astype(str).to_numpy() != ref[col].astype(str).to_numpy()).any():
                raise SystemExit(f"encoder {role}: column {col} differs from the 'before' images")
    N = len(ref)
    if ref.image_id.duplicated().any():
        raise SystemExit("duplicate image ids")

    # integer codes
    node_code, J = {}, 0
    for role in ENCODERS:
        u, inv = np.unique(enc[role].node.to_numpy(), return_inverse=True)
        node_code[role] = inv.astype(np.int64)
        J = max(J, len(u))
    attr_code, attr_K, attr_levels = {}, {}, {}
    for name, col in (("label", "label"), ("source", "source"), ("age", "age_group")):
        vals = ref[col].astype(str).to_numpy()
        levels = sorted(set(vals) - ({UNKNOWN_AGE} if name == "age" else set()))
        lk = {v: i for i, v in enumerate(levels)}
        attr_code[name] = np.array([lk.get(v, -1) for v in vals], dtype=np.int64)
        attr_K[name], attr_levels[name] = len(levels), levels
    age4 = {v: i for i, v in enumerate(sorted(set(ref.age_group.astype(str))))}
    age4_code = np.array([age4[v] for v in ref.age_group.astype(str)], dtype=np.int64)

    groups = sorted(ref.group_id.astype(str).unique())
    gidx = {g: i for i, g in enumerate(groups)}
    img_g = ref.group_id.astype(str).map(gidx).to_numpy(int)
    draws = patient_draws(groups, args.n_boot, BOOT_SEED)          # (B, n_patients)
    cnt = draws[:, img_g].astype(np.int64)                           # (B, N) image multiplicities
    prng = np.random.default_rng(PERM_SEED)

    def stat(w: np.ndarray):
        """{(encoder, attr): (purity, null)} with image weights ``w`` (N,): the attribute is permuted
        across the map's N images (n_perm fresh permutations, the same ones for both encoders) and
        each image keeps its weight at its place in the map."""
        out = {}
        for a in ATTRS:
            keep = attr_code[a] >= 0
            av, wv, K = attr_code[a][keep], w[keep], attr_K[a]
            pa = prng.permuted(np.broadcast_to(av, (n_perm, len(av))), axis=1)
            wt = np.tile(wv, n_perm)
            for role in ENCODERS:
                nv = node_code[role][keep]
                code = (np.arange(n_perm)[:, None] * (J * K) + nv[None, :] * K + pa).ravel()
                Wp = np.bincount(code, weights=wt, minlength=n_perm * J * K).reshape(n_perm, J, K)
                out[(role, a)] = (purity_counts(nv, av, J, K, wv), float((Wp.max(2).sum(1) / wv.sum()).mean()))
        return out

    crng = None

    def stat_copies(mult: np.ndarray):
        """Sensitivity: the replicate as a data set of image copies, the attribute permuted across
        the copies (a patient drawn twice may then have its two copies split)."""
        idx = np.repeat(np.arange(N), mult)
        out = {}
        for a in ATTRS:
            ac = attr_code[a][idx]
            keep = ac >= 0
            sel, av = idx[keep], ac[keep]
            pa = crng.permuted(np.broadcast_to(av, (n_perm, len(av))), axis=1)
            for role in ENCODERS:
                nv = node_code[role][sel]
                out[(role, a)] = (purity_counts(nv, av, J, attr_K[a]), float(perm_purities(nv, pa, J, attr_K[a]).mean()))
        return out

    def estimand(st):
        ex = {k: v[0] - v[1] for k, v in st.items()}
        return (ex[("after", "label")] - ex[("after", "source")]) - (ex[("before", "label")] - ex[("before", "source")])

    point = stat(np.ones(N))
    est = estimand(point)
    B = args.n_boot
    rep = {k: np.empty((B, 2)) for k in point}
    for b in range(B):
        s = stat(cnt[b].astype(float))
        for k, v in s.items():
            rep[k][b] = v
    t_primary = time.time() - t0
    ex_rep = {k: v[:, 0] - v[:, 1] for k, v in rep.items()}
    D = (ex_rep[("after", "label")] - ex_rep[("after", "source")]) - (ex_rep[("before", "label")] - ex_rep[("before", "source")])

    def summ(point_value, reps):
        lo, hi = np.percentile(reps, [2.5, 97.5])
        se = float(np.std(reps, ddof=1))
        return dict(estimate=float(point_value), low=float(lo), high=float(hi), se=se, mde=float(Z * se),
                    boot_mean=float(np.mean(reps)))

    res = summ(est, D) if used else dict(estimate=float("nan"), low=float("nan"), high=float("nan"),
                                         se=float("nan"), mde=float("nan"))
    outcome, why = decide(res["low"], res["high"], res["mde"], n_used, n_plan, min_used=1)
    if not used:
        why = why + "; " + "; ".join(reasons)

    # ---- beside: per encoder and attribute, and changes
    beside = {}
    for role in ENCODERS:
        for a in ATTRS:
            p, nl = point[(role, a)]
            beside[f"{role} {a}"] = dict(purity=p, null=nl, exact_null=None,
                                         excess=summ(p - nl, ex_rep[(role, a)]))
    for a in ATTRS:
        beside[f"change {a}"] = dict(excess=summ(point[("after", a)][0] - point[("after", a)][1]
                                                 - point[("before", a)][0] + point[("before", a)][1],
                                                 ex_rep[("after", a)] - ex_rep[("before", a)]))
    for role in ENCODERS:
        lab = point[(role, "label")][0] - point[(role, "label")][1]
        src = point[(role, "source")][0] - point[(role, "source")][1]
        beside[f"{role} label-minus-source"] = summ(lab - src, ex_rep[(role, "label")] - ex_rep[(role, "source")])

    # exact permutation expectation (point)
    exact = {}
    for role in ENCODERS:
        for a in ATTRS:
            keep = attr_code[a] >= 0
            nv, av = node_code[role][keep], attr_code[a][keep]
            en = exact_null(nv, av, attr_K[a])
            exact[(role, a)] = en
            beside[f"{role} {a}"]["exact_null"] = en
        a4 = exact_null(node_code[role], age4_code, len(age4))
        p4 = purity_counts(node_code[role], age4_code, J, len(age4))
        beside[f"{role} age incl. unknown"] = dict(purity=p4, exact_null=a4, excess=p4 - a4)
    est_exact = ((point[("after", "label")][0] - exact[("after", "label")]) - (point[("after", "source")][0] - exact[("after", "source")])
                 - (point[("before", "label")][0] - exact[("before", "label")]) + (point[("before", "source")][0] - exact[("before", "source")]))

    # ---- sensitivity readings
    sens = {}
    if not args.no_sensitivity:
        t1 = time.time()
        # fixed-null: the point's nulls held fixed, observed purity resampled (weights = multiplicities)
        obs_w = {}
        for role in ENCODERS:
            for a in ("label", "source"):
                obs_w[(role, a)] = rep[(role, a)][:, 0]
        Df = ((obs_w[("after", "label")] - point[("after", "label")][1]) - (obs_w[("after", "source")] - point[("after", "source")][1])
              - (obs_w[("before", "label")] - point[("before", "label")][1]) + (obs_w[("before", "source")] - point[("before", "source")][1]))
        sens["fixed-null"] = summ(est, Df)

        # normalised excess (kappa-like): (purity - null) / (1 - null), from the primary's numbers
        def nex(st_pair):
            return (st_pair[..., 0] - st_pair[..., 1]) / (1.0 - st_pair[..., 1])
        nx_pt = {k: float(nex(np.array(v))) for k, v in point.items()}
        nx_rep = {k: nex(v) for k, v in rep.items()}
        sens["normalised-excess"] = summ(
            (nx_pt[("after", "label")] - nx_pt[("after", "source")]) - (nx_pt[("before", "label")] - nx_pt[("before", "source")]),
            (nx_rep[("after", "label")] - nx_rep[("after", "source")]) - (nx_rep[("before", "label")] - nx_rep[("before", "source")]))

        # copies-null: the replicate as a data set of image copies, permuted across the copies
        crng = np.random.default_rng(PERM_SEED)
        pt = estimand(stat_copies(np.ones(N, dtype=np.int64)))
        sens["copies-null"] = summ(pt, np.array([estimand(stat_copies(cnt[b])) for b in range(B)]))

        # patient-wt: every patient counts once (image weight 1 / its patient's number of images)
        n_img_pat = np.bincount(img_g)[img_g].astype(float)
        prng = np.random.default_rng(PERM_SEED)
        pt = estimand(stat(1.0 / n_img_pat))
        sens["patient-wt"] = summ(pt, np.array([estimand(stat(cnt[b] / n_img_pat)) for b in range(B)]))
        sens["exact-null (point only)"] = dict(estimate=float(est_exact))
        for v in sens.values():
            if "low" in v:
                v["outcome"] = decide(v["low"], v["high"], v["mde"], n_used, n_plan, min_used=1)[0]
        # the normalised reading per encoder (point), the library's scale; age also with "unknown"
        for role in ENCODERS:
            for a in ATTRS:
                pp, nl = point[(role, a)]
                beside[f"{role} {a}"]["normalised_excess"] = (pp - nl) / (1 - nl)
            x = beside[f"{role} age incl. unknown"]
            x["normalised_excess"] = (x["purity"] - x["exact_null"]) / (1 - x["exact_null"])
        notes.append(f"sensitivity readings took {time.time() - t1:.1f} s")

    # ---- report
    print("F5 recheck: SOM purity of the encoder's test-image features, fine-tuned ('after') against "
          "pre-trained only ('before')")
    for role in ENCODERS:
        sh = meta.get("maps", {}).get(role, {}).get("shape")
        print(f"  {role:<7} run {facts[role].get('run')}  status {facts[role].get('status')}  best val AUC "
              f"{facts[role].get('best_val_auc')}  own test {facts[role].get('own_test')}  map {sh}  "
              f"nodes used {len(np.unique(node_code[role]))}")
    print(f"  scratch run {scratch['run']}: status {scratch['status']!r}, {scratch['rows']} rows in f5.csv -> not available")
    print(f"images {N} per encoder, patients {len(groups)}; sources {attr_levels['source']}; "
          f"age groups (unknown left out) {attr_levels['age']} on {(attr_code['age'] >= 0).sum()} images")
    print(f"null = mean purity over n_perm={n_perm} permutations (default_rng({PERM_SEED})), recomputed in each "
          f"replicate; bootstrap {B} replicates (seed {BOOT_SEED}) over {len(groups)} patients")
    for r in reasons:
        print("LEFT OUT", r)
    for n in notes:
        print("NOTE", n)
    print("\nper encoder (point; excess with its 95% interval):")
    print(f"  {'':<18}{'purity':>8}{'null MC':>9}{'null ex':>9}{'excess':>9}   interval           rep.mean  normalised")
    for role in ENCODERS:
        for a in ATTRS:
            x = beside[f"{role} {a}"]
            print(f"  {role + ' ' + a:<18}{x['purity']:8.4f}{x['null']:9.4f}{x['exact_null']:9.4f}"
                  f"{x['excess']['estimate']:+9.4f}   [{x['excess']['low']:+.4f}, {x['excess']['high']:+.4f}]"
                  f"  {x['excess']['boot_mean']:+.4f}  {x.get('normalised_excess', float('nan')):+.4f}")
        x = beside[f"{role} age incl. unknown"]
        print(f"  {role + ' age+unknown':<18}{x['purity']:8.4f}{'':>9}{x['exact_null']:9.4f}{x['excess']:+9.4f}   (point)"
              f"{'':>29}{x.get('normalised_excess', float('nan')):+.4f}")
        x = beside[f"{role} label-minus-source"]
        print(f"  {role + ' lab-src':<18}{'':>26}{x['estimate']:+9.4f}   [{x['low']:+.4f}, {x['high']:+.4f}]")
    for a in ATTRS:
        x = beside[f"change {a}"]["excess"]
        print(f"  change excess {a:<7} {x['estimate']:+.4f} [{x['low']:+.4f}, {x['high']:+.4f}]")
    print(f"\nDECIDING  change of (excess label - excess source), after minus before: {res['estimate']:+.6f}   "
          f"95% interval [{res['low']:+.4f}, {res['high']:+.4f}]   SE {res['se']:.4f}   MDE {res['mde']:.4f}")
    print(f"replicate mean of D {res.get('boot_mean', float('nan')):+.4f}")
    print(f"used {n_used} / {n_plan}; left out {n_out}: {left_out_reasons}")
    print(f"outcome: {outcome} ({why})")
    if sens:
        print("\nsensitivity readings (never deciding):")
        for k, v in sens.items():
            if "low" in v:
                print(f"  {k:<24} {v['estimate']:+.6f} [{v['low']:+.4f}, {v['high']:+.4f}] MDE {v['mde']:.4f}"
                      f"  -> {v['outcome']}")
            else:
                print(f"  {k:<24} {v['estimate']:+.6f}")
    print(f"runtime {time.time() - t0:.1f} s (primary {t_primary:.1f} s)")

    if args.json:
        out = {"claim": "F5", "estimate": res["estimate"], "low": res["low"], "high": res["high"], "mde": res["mde"],
               "se": res["se"], "n_used": n_used, "n_left_out": n_out, "n_planned": n_plan,
               "left_out_reasons": left_out_reasons, "outcome": outcome, "reason": why,
               "n_images": N, "n_patients": len(groups), "n_perm": n_perm, "perm_seed": PERM_SEED,
               "n_boot": B, "boot_seed": BOOT_SEED, "encoders": facts, "scratch": scratch,
               "estimate_exact_null": float(est_exact),
               "beside": beside, "sensitivity": sens, "notes": notes}
        write_json(args.json, out, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
