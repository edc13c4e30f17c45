"""Independent recomputation of finding F2 (chapter 03, the composition's confounders): "a
metadata-only logistic regression (no pixels) tells COVID+ from COVID- better on the composition
CORDA&ChestXRay than on CORDA alone": the shortcut that borrowing ChestXRay's COVID- images
(children, another view mix and file format) adds to what the metadata give anyway.

Nothing is imported from the project's library (covid_lib) and its code was not read. The
specification is the text of book/protocol.md (header and section "F2"); the prose of chapter 03
(book/chapters/03_confounders.ipynb, text and outputs only) was read for what the baseline's
features are. The one thing taken from the library is WHICH image is in which split of which
composition, through its command line, in a subprocess:
    COVID_LIB_DATA=<data> python -m covid_lib data compose all --csv <tmp>/membership.csv
(columns composition, source, image_id, patient_id, group_id, set, split, label; label 1 =
COVID+), or a file given with --membership. The metadata of each image are read from
<data>/<source>/manifest.csv, joined on (source, image_id). The manifest of `cohen` lists five
image_ids twice (under two patient ids, same file): the feature columns of the two rows are
checked to be identical and one row is kept; the patient/cluster comes from the membership file.

Estimand (protocol): AUC of the baseline trained on CORDA&ChestXRay (train + val images) on
CORDA&ChestXRay's test set, minus AUC of the baseline trained on CORDA (train + val) on CORDA's
test set. AUC = Mann-Whitney statistic (ties 1/2), every test image one observation (a patient with
several images counts several times; the patient is the unit of resampling only). Reported beside,
never deciding: the same contrast for CORDA&RSNA and CORDA&COVID-ChestXRay against CORDA; the
baseline WITH the study year and missing-value flags (a label proxy by construction, see below).

The baseline, as the protocol and chapter 03 word it: a logistic regression on view, age, sex,
file format and image size, no study year and no missing-value flags; "fixed settings (C = 1), no
tuning, deterministic"; seed 0 (passed as random_state; lbfgs is deterministic anyway). The
protocol does not fix the encoding. READINGS CHOSEN for the default encoding ("chapter"), taken
from the chapter's prose where it says something and my own choice where it does not:
  - view: one-hot of the manifest `view` (PA, AP, AP Supine; none of the images used lacks a view,
    an unknown view would be its own level);
  - sex: one-hot of M / F with "unknown" as its own level (chapter: "a missing value ... is its own
    category (view, sex, format)"). NB: every Kermany image has unknown sex, so this level names
    the source on the COVID- side; see the "strict" encoding below;
  - file format: one-hot of original file format AND colour mode together (orig_format +
    orig_mode, e.g. "JPEG L", "PNG RGBA"; chapter: "original format and colour mode");
  - image size: log of the ORIGINAL width and height (orig_width, orig_height; chapter: "original
    width and height (log scale)"), two numbers;
  - age: numeric, missing values imputed with the MEDIAN of the training images' ages (no flag);
    Kermany images carry no age, so they get that median (the chapter says Kermany patients are
    children aged 1-5, but the manifest has no per-image age; see the "child" encoding);
  - numbers (age, log width, log height) standardised with the training images' mean and SD;
  - one-hot levels are those seen in training; a test level not seen in training is all zeros;
  - sklearn LogisticRegression(C=1.0, L2, solver lbfgs, max_iter 10000, random_state 0);
  - the score is the predicted probability of COVID+.
Sensitivity (printed table, JSON "sensitivity"; choose the deciding one with --encoding), each
changing one reading of the default:
  strict       : sex as one number (M = 1, F = 0), unknown imputed with the training share of M,
                 so no level marks "sex unknown" (the strictest reading of "no missing-value
                 flags": a sex-unknown level is a missing flag that names Kermany by construction);
  stored       : log of the STORED width and height (after the resize to a 256-px shorter side,
                 i.e. essentially the aspect ratio) in place of the original size;
  format_only  : file format alone (JPEG / PNG), without the colour mode;
  child        : Kermany images' missing age set to 3 years (the documented 1-5 range) instead of
                 the training median; other missing ages still get the median.
Beside, never deciding: "year_proxies" = the default plus the study year (the first 4-digit
year in cohen's `date`, or yy of a m/d/yy date; other sources have no date), standardised,
missing imputed with the training median, plus missing-value flags for year, age and sex.

Usable (protocol header, read for a model that has no validation run): a comparison is left out
when a model "did not learn" (read: its AUC on its own training images, train + val, < 0.6: the
baseline is fitted on train + val, so there is no held-out validation AUC) or collapsed (own-test
scores all >= 0.5 or all < 0.5, or 5-95% range < 0.001; shared.collapse_reason), or has no data.
The deciding contrast is the one planned comparison (n_plan = 1); F2's rule needs at least one
usable comparison (shared.decide with min_used = 1).

Bootstrap (protocol): patient clusters (membership `group_id`, which merges patients that share
images), 2000 replicates, numpy default_rng(0): shared.patient_draws over the SORTED unique
group_ids of the UNION of the two test sets compared (CORDA's test patients are nested in
CORDA&ChestXRay's, so the union is CORDA&ChestXRay's test patients); an image's weight is its
cluster's draw count; both AUCs of a replicate use the same draws (paired). Interval: 2.5 and 97.5
percentiles of the replicate differences; SE = their SD (ddof 1); MDE = Z x SE, Z = z(0.975) +
z(0.8) (shared.pool_defined; replicates in which an AUC is undefined are dropped and counted).
Each beside contrast (CORDA&RSNA, CORDA&COVID-ChestXRay against CORDA) draws over ITS OWN union of
the two test sets with the same seed (a reading: the protocol names only the deciding one's
universe).

Decision (directional, shared.decide): reproduced when low > 0; not reproduced when high < 0; no
detectable effect when the interval includes 0 and high < MDE; inconclusive otherwise, or with no
usable comparison.

Compared with the library afterwards (book/verdicts.json, F2), with the default encoding: the
same own-test AUCs (0.8247, 0.9179, 0.9483, 0.6644), estimates (+0.0932; beside +0.1236,
-0.1603), cluster counts (91, 90, 68) and outcome (inconclusive). The intervals differ in the
third decimal (-0.0224/+0.2591, MDE 0.2019 here; -0.0228/+0.2589, MDE 0.2026 there) only because
of how the draws are made: resampling indices with default_rng(0).integers(0, n, (B, n)) over the
same sorted group_ids reproduces the library's interval exactly; this script keeps
shared.patient_draws (multinomial), as specified. The year-proxy baseline (beside) differs
(+0.058 here, +0.042 there): its year coding is this script's own.

Usage: python rechecks/recheck_f2.py [--json OUT.json] [--membership PATH] [--data DIR]
                                     [--encoding chapter|strict|stored|format_only|child]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from shared import collapse_reason, decide, pair_matrix, patient_draws, pool_defined, weighted_auc, write_json

N_BOOT = 2000
BOOT_SEED = 0
SEED = 0
MIN_TRAIN_AUC = 0.6
KERMANY_AGE = 3.0
BASE = "CORDA"
MAIN = "CORDA&ChestXRay"
BESIDE = ["CORDA&RSNA", "CORDA&COVID-ChestXRay"]
ENCODINGS = ["chapter", "strict", "stored", "format_only", "child"]
FEATURE_COLS = ["view", "sex", "age", "date", "orig_format", "orig_mode", "orig_width", "orig_height",
                "width", "height"]
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- inputs
def membership(path: Path | None, data: Path) -> tuple[pd.DataFrame, str]:
    if path is not None:
        return pd.read_csv(path), str(path)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "membership.csv"
        env = dict(os.environ, COVID_LIB_DATA=str(data))
        cmd = [sys.executable, "-m", "covid_lib", "data", "compose", "all", "--csv", str(out)]
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode != 0 or not out.exists():
            raise SystemExit(f"membership command failed ({r.returncode}):\n{r.stderr[-2000:]}")
        return pd.read_csv(out), "covid_lib data compose all (subprocess)"


def manifests(data: Path, sources: list[str]) -> pd.DataFrame:
    parts = []
    for s in sources:
        m = pd.read_csv(data / s / "manifest.csv")
        for c in FEATURE_COLS:
            if c not in m:
                m[c] = np.nan
        m = m[["source", "image_id"] + FEATURE_COLS]
        dup = m[m.duplicated(["source", "image_id"], keep=False)]
        if len(dup):
            n_distinct = dup.astype(str).drop_duplicates().groupby(["source", "image_id"]).size()
            if (n_distinct > 1).any():
                raise SystemExit(f"{s}: duplicated image_ids with different metadata: {list(n_distinct[n_distinct > 1].index)}")
        parts.append(m.drop_duplicates(["source", "image_id"]))
    return pd.concat(parts, ignore_index=True)


def year_of(date) -> float:
    if not isinstance(date, str):
        return np.nan
    m = re.search(r"\b(19\d\d|20\d\d)\b", date)
    if m:
        return float(m.group(1))
    m = re.fullmatch(r"\s*\d{1,2}/\d{1,2}/(\d\d)\s*", date)
    return float(2000 + int(m.group(1))) if m else np.nan


# ---------------------------------------------------------------- the baseline
class Encoder:
    """Fitted on the training images' metadata; turns any images' metadata into a matrix."""

    def __init__(self, encoding: str, proxies: bool = False) -> None:
        self.enc, self.proxies = encoding, proxies

    def _raw(self, df: pd.DataFrame) -> tuple[dict, dict]:
        cat = {"view": df.view.fillna("unknown").astype(str)}
        num = {}
        age = df.age.astype(float)
        if self.enc == "child":
            age = age.where(~((df.source == "kermany") & age.isna()), KERMANY_AGE)
        num["age"] = age
        if self.enc == "strict":
            num["sex_m"] = df.sex.map({"M": 1.0, "F": 0.0})  # unknown -> NaN -> imputed
        else:
            cat["sex"] = df.sex.fillna("unknown").astype(str)
        if self.enc == "format_only":
            cat["format"] = df.orig_format.fillna("unknown").astype(str)
        else:
            cat["format"] = (df.orig_format.fillna("unknown").astype(str) + " "
                             + df.orig_mode.fillna("unknown").astype(str))
        wcol, hcol = ("width", "height") if self.enc == "stored" else ("orig_width", "orig_height")
        num["log_width"] = np.log(df[wcol].astype(float))
        num["log_height"] = np.log(df[hcol].astype(float))
        if self.proxies:
            num["year"] = df.date.map(year_of).astype(float)
            num["year_missing"] = num["year"].isna().astype(float)
            num["age_missing"] = df.age.isna().astype(float)
            num["sex_missing"] = df.sex.isna().astype(float)
        return cat, num

    def fit(self, df: pd.DataFrame) -> "Encoder":
        cat, num = self._raw(df)
        self.levels = {k: sorted(v.unique()) for k, v in cat.items()}
        self.fill = {k: float(np.nanmedian(v)) if k != "sex_m" else float(np.nanmean(v)) for k, v in num.items()}
        filled = {k: v.fillna(self.fill[k]) for k, v in num.items()}
        self.mu = {k: float(v.mean()) for k, v in filled.items()}
        self.sd = {k: float(v.std(ddof=0)) or 1.0 for k, v in filled.items()}
        self.names = [f"{k}={lv}" for k, lvs in self.levels.items() for lv in lvs] + list(num)
        return self

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        cat, num = self._raw(df)
        cols = [(cat[k].to_numpy() == lv).astype(float) for k, lvs in self.levels.items() for lv in lvs]
        for k, v in num.items():
            cols.append(((v.fillna(self.fill[k]) - self.mu[k]) / self.sd[k]).to_numpy(float))
        X = np.column_stack(cols)
        assert np.isfinite(X).all()
        return X


def fit_baseline(train: pd.DataFrame, encoding: str, proxies: bool = False):
    enc = Encoder(encoding, proxies).fit(train)
    clf = LogisticRegression(C=1.0, solver="lbfgs", max_iter=10000, random_state=SEED)
    clf.fit(enc.transform(train), train.label.to_numpy(int))
    return enc, clf


def score(model, df: pd.DataFrame) -> np.ndarray:
    enc, clf = model
    return clf.predict_proba(enc.transform(df))[:, 1]


# ---------------------------------------------------------------- one encoding, every contrast
def run_encoding(data: pd.DataFrame, encoding: str, proxies: bool = False) -> dict:
    comps = [BASE, MAIN] + BESIDE
    models, own = {}, {}
    for comp in comps:
        d = data[data.composition == comp]
        train = d[d.split.isin(["train", "val"])].sort_values(["source", "image_id"]).reset_index(drop=True)
        test = d[d.split == "test"].sort_values(["source", "image_id"]).reset_index(drop=True)
        reasons = []
        if train.empty or test.empty or train.label.nunique() < 2 or test.label.nunique() < 2:
            reasons.append("no data (a split or a label is empty)")
            models[comp] = dict(reasons=reasons, n_train=len(train), n_test=len(test))
            continue
        m = fit_baseline(train, encoding, proxies)
        s_tr, s_te = score(m, train), score(m, test)
        train_auc = float(pair_matrix(s_tr, train.label.to_numpy(int)).mean())
        if train_auc < MIN_TRAIN_AUC:
            reasons.append(f"did not learn (training AUC {train_auc:.3f} < {MIN_TRAIN_AUC})")
        c = collapse_reason(s_te)
        if c:
            reasons.append(c)
        test = test.assign(score=s_te)
        own[comp] = test
        coef = dict(zip(m[0].names, m[1].coef_[0].round(3).tolist()))
        models[comp] = dict(reasons=reasons, n_train=len(train), n_test=len(test),
                            n_test_patients=int(test.group_id.nunique()), train_auc=train_auc,
                            own_auc=float(pair_matrix(s_te, test.label.to_numpy(int)).mean()), coef=coef)

    contrasts = {}
    for comp in [MAIN] + BESIDE:
        reasons = models[BASE]["reasons"] + models[comp]["reasons"]
        c = dict(contrast=f"{comp} minus {BASE}", reasons=reasons, used=not reasons)
        if BASE in own and comp in own:
            ta, tb = own[comp], own[BASE]
            groups = sorted(set(ta.group_id) | set(tb.group_id))
            gidx = {g: i for i, g in enumerate(groups)}
            counts = patient_draws(groups, N_BOOT, BOOT_SEED)
            aucs = {}
            for name, t in ((comp, ta), (BASE, tb)):
                lab = t.label.to_numpy(int)
                C = pair_matrix(t.score.to_numpy(float), lab)
                w = counts[:, t.group_id.map(gidx).to_numpy(int)]
                aucs[name] = (float(C.mean()), weighted_auc(C, w[:, lab == 1], w[:, lab == 0]))
            diff_b = aucs[comp][1] - aucs[BASE][1]
            r = pool_defined([diff_b], [aucs[comp][0] - aucs[BASE][0]])
            c.update(r, auc_comp=aucs[comp][0], auc_base=aucs[BASE][0], n_patients=len(groups),
                     auc_comp_ci=[float(x) for x in np.nanpercentile(aucs[comp][1], [2.5, 97.5])],
                     auc_base_ci=[float(x) for x in np.nanpercentile(aucs[BASE][1], [2.5, 97.5])])
            n_used = int(c["used"])
            c["outcome"], c["why"] = decide(r["low"], r["high"], r["mde"], n_used, 1, min_used=1)
        else:
            nan = float("nan")
            c.update(estimate=nan, low=nan, high=nan, se=nan, mde=nan, n_nan=0,
                     outcome="inconclusive", why="no usable comparison")
        contrasts[comp] = c
    return dict(encoding=encoding, proxies=proxies, models=models, contrasts=contrasts)


# ---------------------------------------------------------------- main
def fmt(c: dict) -> str:
    return (f"{c['estimate']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}] MDE {c['mde']:.4f}  "
            f"-> {c['outcome']}")


def main(argv=None) -> int:
    t0 = time.time()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--membership", type=Path, default=None,
                    help="reuse a `covid_lib data compose all --csv` file instead of running it")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("COVID_LIB_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--encoding", choices=ENCODINGS, default="chapter", help="the deciding encoding")
    args = ap.parse_args(argv)

    mem, mem_from = membership(args.membership, args.data)
    comps = [BASE, MAIN] + BESIDE
    mem = mem[mem.composition.isin(comps)].copy()
    mem["group_id"] = mem.group_id.astype(str)
    if mem.duplicated(["composition", "source", "image_id"]).any():
        raise SystemExit("membership lists an image twice in one composition")
    man = manifests(args.data, sorted(mem.source.unique()))
    data = mem.merge(man, on=["source", "image_id"], how="left", validate="many_to_one")
    if data.view.isna().all() or data.orig_format.isna().any():
        raise SystemExit("membership images missing from the manifests")
    n_noage = data.groupby("source").age.apply(lambda a: int(a.isna().sum())).to_dict()

    runs = {e: run_encoding(data, e) for e in ENCODINGS}
    proxy = run_encoding(data, args.encoding, proxies=True)
    main_run = runs[args.encoding]
    res = main_run["contrasts"][MAIN]
    n_used = int(res["used"])

    # ---- report
    print("F2 recheck: own-test AUC of the metadata-only logistic baseline, CORDA&ChestXRay minus CORDA")
    print(f"membership: {mem_from}; data: {args.data}; deciding encoding: {args.encoding}")
    print("images per composition (train+val / test) and test patients:")
    for comp in comps:
        d = data[data.composition == comp]
        tv, te = d[d.split != "test"], d[d.split == "test"]
        print(f"   {comp:<22} train+val {len(tv):4d} ({int(tv.label.sum())}+ / {int((1 - tv.label).sum())}-)   "
              f"test {len(te):4d} ({int(te.label.sum())}+ / {int((1 - te.label).sum())}-), "
              f"{te.group_id.nunique()} clusters; sources {sorted(d.source.unique())}")
    print(f"images without age, by source (all compositions' rows): {n_noage}")
    print(f"\nmodels, encoding {args.encoding}:")
    for comp, m in main_run["models"].items():
        if "own_auc" in m:
            top = sorted(m["coef"].items(), key=lambda kv: -abs(kv[1]))[:4]
            print(f"   {comp:<22} training AUC {m['train_auc']:.3f}  own-test AUC {m['own_auc']:.4f}  "
                  f"{'ok' if not m['reasons'] else '; '.join(m['reasons'])}  largest weights {top}")
        else:
            print(f"   {comp:<22} {'; '.join(m['reasons'])}")
    print(f"\nbootstrap: {N_BOOT} replicates, seed {BOOT_SEED}, over the {res.get('n_patients')} clusters of the "
          f"union of both test sets")
    print(f"DECIDING  {res['contrast']}: AUC {res.get('auc_comp', float('nan')):.4f} "
          f"{np.round(res.get('auc_comp_ci', []), 4).tolist()} - {res.get('auc_base', float('nan')):.4f} "
          f"{np.round(res.get('auc_base_ci', []), 4).tolist()}")
    print(f"   estimate {res['estimate']:+.6f}  95% CI [{res['low']:+.4f}, {res['high']:+.4f}]  SE {res['se']:.4f}  "
          f"MDE {res['mde']:.4f}; undefined replicates {res['n_nan']}")
    print(f"   used {n_used} / 1; left out {1 - n_used}" + (f" ({'; '.join(res['reasons'])})" if res["reasons"] else ""))
    print(f"   decision: {res['outcome']} ({res['why']})")
    print("beside, never deciding:")
    for comp in BESIDE:
        c = main_run["contrasts"][comp]
        print(f"   {c['contrast']:<36} AUC {c.get('auc_comp', float('nan')):.4f} - {c.get('auc_base', float('nan')):.4f} "
              f"= {fmt(c)} ({c.get('n_patients')} clusters)")
    pc = proxy["contrasts"][MAIN]
    print(f"   with year + missing-value flags (label proxies by construction), {MAIN} minus {BASE}: "
          f"AUC {pc.get('auc_comp', float('nan')):.4f} - {pc.get('auc_base', float('nan')):.4f} = {fmt(pc)}")
    print("\nsensitivity to the encoding (own-test AUCs; contrast against CORDA, 95% CI, MDE, outcome):")
    print(f"   {'encoding':<12}{'CORDA':>8}{'&CXR':>8}{'&RSNA':>8}{'&COVID':>8}   {'&ChestXRay - CORDA (deciding)':<56}"
          f"{'&RSNA - CORDA':<20}{'&COVID-CXR - CORDA':<20}")
    for e, r in runs.items():
        aucs = "".join(f"{r['models'][c].get('own_auc', float('nan')):8.3f}" for c in comps)
        cm = r["contrasts"]
        print(f"   {e:<12}{aucs}   {fmt(cm[MAIN]):<56}{cm['CORDA&RSNA']['estimate']:+.4f}{'':<13}"
              f"{cm['CORDA&COVID-ChestXRay']['estimate']:+.4f}")
    runtime = time.time() - t0
    print(f"runtime {runtime:.1f} s")

    if args.json:
        def strip(run):
            return dict(models=run["models"], contrasts=run["contrasts"])
        out = dict(claim="F2", encoding=args.encoding, estimate=res["estimate"], low=res["low"], high=res["high"],
                   mde=res["mde"], se=res["se"], n_used=n_used, n_left_out=1 - n_used,
                   left_out={res["contrast"]: "; ".join(res["reasons"])} if res["reasons"] else {},
                   outcome=res["outcome"], reason=res["why"], n_patients=res.get("n_patients"), n_boot=N_BOOT,
                   replicates_with_undefined=res["n_nan"],
                   auc_corda_chestxray=res.get("auc_comp"), auc_corda=res.get("auc_base"),
                   secondary={c: {k: v for k, v in main_run["contrasts"][c].items()} for c in BESIDE},
                   with_year_proxies=proxy["contrasts"][MAIN],
                   models=main_run["models"],
                   sensitivity={e: {c: {k: r["contrasts"][c][k] for k in
                                        ("estimate", "low", "high", "mde", "outcome", "auc_comp", "auc_base")
                                        if k in r["contrasts"][c]} for c in [MAIN] + BESIDE}
                                for e, r in runs.items()},
                   membership=mem_from, runtime_s=runtime)
        write_json(args.json, out, indent=2, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
