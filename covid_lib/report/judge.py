"""Every claim judged under the protocol from the run records, at both pre-training scales.

``python -m covid_lib book judge`` writes ``book/verdicts.json`` (one entry per claim and scale:
the outcome, the deciding estimate with its patient-level interval, the MDE, the models left out,
the protocol hash, and when the judged records were made against when the protocol was
committed); the verdicts page renders it (:func:`verdicts_markdown`), and ``book check`` fails when
the file was judged under another protocol. Scales (issue 17):

- ``563``: the records of issue 9, pre-trained on the 563 ChestXRay training images of the working
  copy (``kermany``), one to three seeds;
- ``full``: the grids at the paper's scale, pre-trained on the whole ChestXRay set
  (``kermany_full``), five seeds for Table II and three for the rest.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from covid_lib.analysis import claims as C
from covid_lib.analysis import protocol as P
from covid_lib.analysis.verdicts import Verdict
from covid_lib.grid import grid_specs
from covid_lib.paths import REPO_ROOT
from covid_lib.provenance import commit_times
from covid_lib.report.records import created_times, spec_records
from covid_lib.runs import DIFFERS

VERDICTS_JSON = REPO_ROOT / "book" / "verdicts.json"
#: When set (the book runner sets it while a chapter executes), the file to which every claim a
#: chapter reads from ``book/verdicts.json`` is appended, one id a line (:func:`note_read`).
READ_LOG_ENV = "COVID_LIB_VERDICTS_READ_LOG"
#: C4's k-NN predictions per scale (an analysis record: the encoders' features are computed from
#: checkpoints, which are not committed): ``results/claims/c4-<scale>.csv`` and ``.json``.
C4_DIR = "claims"

#: The records of each scale: grids per role, the ChestXRay pre-training's name, and seeds.
SCALES: dict[str, dict] = {
    "563": {"label": "563 ChestXRay pre-training images (kermany), 1-3 seeds", "kermany": "kermany",
            "table2": ("table2", "seeds"), "table3": ("table3",), "conv8": ("conv8",), "ablation": ("ablation",),
            "t2_seeds": (0, 1, 2), "seeds": (0,)},
    "full": {"label": "whole ChestXRay set (kermany_full), 5 seeds (Table II) / 3", "kermany": "kermany_full",
             "table2": ("table2_full",), "table3": ("table3_full",), "conv8": ("conv8_full",),
             "ablation": ("ablation_full",), "t2_seeds": (0, 1, 2, 3, 4), "seeds": (0, 1, 2)},
}


def _records(grids: tuple[str, ...], profile: str, data_root, relabel=None) -> pd.DataFrame:
    frames = [spec_records(grid_specs(g, profile, data_root=data_root)) for g in grids]
    records = pd.concat(frames, ignore_index=True).drop_duplicates("run_id")
    return records if relabel is None else relabel(records)


def c4_path(scale: str) -> Path:
    from covid_lib.runs import results_dir

    return results_dir() / C4_DIR / f"c4-{scale}.csv"


def c4_estimate(scale: str) -> tuple[C.ClaimEstimate, dict[str, str]] | None:
    """C4 at ``scale`` from its analysis record (:func:`c4_path`, written by :func:`write_c4`): the
    estimate over the scale's Table II seeds and the fine-tuned run id of each seed; None when
    there is no record."""
    c4 = c4_path(scale)
    if not c4.is_file():
        return None
    pred = pd.read_csv(c4, dtype={"group_id": str, "target": str, "predicted": str})
    written = json.loads(c4.with_suffix(".json").read_text())
    unusable = {int(sd): f"{DIFFERS}: max |Δ score| {d['max_abs_diff']:.2g}"
                for sd, d in written.get("differs_from_record", {}).items()}
    return C.estimate_c4(pred, seeds=SCALES[scale]["t2_seeds"], unusable=unusable), written["runs"]


def c4_specs(scale: str, profile: str = "cpu", data_root=None) -> dict:
    """C4's fine-tuned runs at ``scale``: ResNet-18 pre-trained on ChestXRay, trained on
    CORDA&ChestXRay, per seed, that have a record whose model learned and did not collapse."""
    from covid_lib.runs import Record

    s = SCALES[scale]
    out = {}
    for spec in (x for g in s["table2"] for x in grid_specs(g, profile, data_root=data_root)):
        if (spec.task, spec.arch, spec.pretrain, spec.composition, spec.pipeline) == \
                ("covid", "resnet18", s["kermany"], "CORDA&ChestXRay", "paper") and spec.seed in s["t2_seeds"]:
            if Record.of(spec).outcome == "done":
                out[spec.seed] = spec
    return dict(sorted(out.items()))


def write_c4(scale: str, *, profile: str = "cpu", data_root=None, device: str = "cpu", k: int = 10) -> Path:
    """Compute and write C4's k-NN predictions at ``scale`` (restores checkpoints by retraining
    where they are not cached: minutes per run). A fine-tuned encoder whose checkpoint here is a
    retraining that differs from its record is left out, and the ``.json`` beside the predictions
    says so (``differs_from_record``: run id and max score difference per seed)."""
    from covid_lib.analysis.embed import feature_rows
    from covid_lib.runs import Record, restore_checkpoints

    specs = c4_specs(scale, profile, data_root)
    restore_checkpoints(list(specs.values()), data_root=data_root, device=device)
    differ = {seed: Record.of(sp).checkpoint_note for seed, sp in specs.items() if Record.of(sp).checkpoint_differs}
    specs = {seed: sp for seed, sp in specs.items() if seed not in differ}
    if not specs:
        seeds = ", ".join(map(str, differ))
        raise ValueError(f"C4 at scale {scale}: no fine-tuned encoder with a checkpoint here that reproduces its "
                         f"record (seeds {seeds} were retrained here and differ): nothing to write")
    rows = feature_rows(data_root)
    feats, kept = C.c4_encoder_features(specs, rows, data_root=data_root, device=device)
    pred = C.c4_predictions(feats, kept, k=k)
    path = c4_path(scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    pred.to_csv(path, index=False)
    created = created_times(pd.DataFrame({"path": [str(Path(path).parent.parent / sp.run_id) for sp in specs.values()]}))
    left = {str(sd): {"run_id": n["run_id"], "max_abs_diff": n.get("max_abs_diff")} for sd, n in differ.items()}
    path.with_suffix(".json").write_text(json.dumps({"runs": {str(sd): sp.run_id for sd, sp in specs.items()}, "k": k,
                                                     "records_created": created,
                                                     **({"differs_from_record": left} if left else {})},
                                                    indent=1) + "\n")
    return path


def protocol_commit_time(protocol_hash: str | None = None) -> str | None:
    """ISO time of the first commit whose ``book/protocol.md`` carries ``protocol_hash`` (the current
    protocol's by default): when these rules were committed, whatever later moves or edits the file
    that holds them without changing a rule (None outside git or before the page is committed).
    Asked of git once per hash and process (:func:`_commit_time`)."""
    return _commit_time(protocol_hash or P.protocol_hash())


@functools.lru_cache(maxsize=None)
def _commit_time(protocol_hash: str) -> str | None:
    times = commit_times(f"-S{protocol_hash}", "--", "book/protocol.md")
    return times[-1] if times else None


def rule_commit_time(claim: str) -> str | None:
    """When ``claim``'s rule was committed: the commit of the protocol version that fixed it
    (:func:`covid_lib.analysis.protocol.rule_version_hash`), so a later version that adds rules
    does not re-date the rules it keeps."""
    return protocol_commit_time(P.rule_version_hash(P.rule(claim)))


def _entry(decision: P.Decision, estimate: C.ClaimEstimate | None, records: pd.DataFrame, committed: str | None,
           ) -> dict:
    created = created_times(records)
    after = sum(t[:19] >= committed[:19] for t in created) if committed else None  # both UTC, ISO
    left = estimate.left_out if estimate is not None else pd.DataFrame()
    reasons: dict[str, int] = {}  # one reason per comparison left out: missing > did not learn > collapsed
    order = ("missing", "failed", DIFFERS, "did not learn", "collapsed")
    for r in left.to_dict("records"):
        states = {str(r.get(c, "")).split(":")[0] for c in ("status_a", "status_b")} - {"usable"}
        key = next((o for o in order if o in states), min(states) if states else "other")
        reasons[key] = reasons.get(key, 0) + 1
    return {**asdict(decision), "n_patients": estimate.n_patients if estimate is not None else 0,
            "left_out_reasons": reasons, "records_first": created[0] if created else None,
            "records_last": created[-1] if created else None, "records_after_protocol": after,
            "n_records": len(created)}


def _not_evaluated(claim: str, reason: str) -> dict:
    """The entry of a claim or finding the library could not estimate here, with the reason."""
    return {**asdict(P.Decision(claim, "inconclusive", float("nan"), float("nan"), float("nan"), float("nan"), 0, 0,
                                reason)),
            "n_patients": 0, "left_out_reasons": {}, "records_first": None, "records_last": None,
            "records_after_protocol": None, "n_records": 0, "not_evaluated": True}


def judge_c3(scale: str, *, profile: str = "cpu", data_root: str | os.PathLike | None = None, relabel=None,
             committed: str | None = None) -> dict:
    """C3's entry at ``scale`` (as :func:`judge` gives it): ResNet-50 and Conv8 against ResNet-18,
    combined (:func:`covid_lib.analysis.protocol.combine`); ``relabel`` as in :func:`judge`."""
    s = SCALES[scale]
    k, seeds = s["kermany"], s["seeds"]
    deep = _records(s["table2"] + s["table3"] + s["conv8"], profile, data_root, relabel)
    e50 = C.estimate_c3(deep, other="resnet50", pretrains=(k, "nih"), seeds=seeds)
    e8 = C.estimate_c3(deep, other="conv8", pretrains=("none", k), seeds=seeds)
    d3 = P.combine("C3", {"ResNet-50": e50.decision(), "Conv8": e8.decision()})
    both = pd.concat([e50.left_out, e8.left_out], ignore_index=True)
    e3 = C.ClaimEstimate("C3", d3.estimate, d3.low, d3.high, float("nan"), d3.n_used, d3.n_left_out,
                         pd.concat([e50.cells, e8.cells]), both, max(e50.n_patients, e8.n_patients))
    return _entry(d3, e3, deep, committed if committed is not None else rule_commit_time("C3"))


def judge(scale: str, *, profile: str = "cpu", data_root: str | os.PathLike | None = None,
          relabel=None) -> dict[str, dict]:
    """The decision of every claim at ``scale`` (a key of :data:`SCALES`). ``relabel``: a function
    of a records frame returning it with other statuses, for a sensitivity reading only
    (:mod:`covid_lib.report.sensitivity`); the verdicts use the records' own statuses."""
    s = SCALES[scale]
    committed = {c: rule_commit_time(c) for c in P.PROTOCOL}  # each claim dated by its own rule's version
    k, t2s, seeds = s["kermany"], s["t2_seeds"], s["seeds"]
    t2 = _records(s["table2"], profile, data_root, relabel)
    out: dict[str, dict] = {}
    e1 = C.estimate_c1(t2, pretrains=("none", k, "nih"), seeds=t2s)
    out["C1"] = _entry(e1.decision(), e1, t2, committed["C1"])
    e2 = C.estimate_c2(t2, pretrains=(k, "nih"), seeds=t2s)
    out["C2"] = _entry(e2.decision(), e2, t2, committed["C2"])
    out["C3"] = judge_c3(scale, profile=profile, data_root=data_root, relabel=relabel, committed=committed["C3"])
    read = c4_estimate(scale)
    if read is not None:
        e4, runs = read
        used = t2[t2["run_id"].isin(runs.values())]
        out["C4"] = _entry(e4.decision(), e4, used, committed["C4"])
    else:
        out["C4"] = _not_evaluated("C4", "not yet evaluated: no k-NN predictions recorded at this scale "
                                   f"(`python -m covid_lib book judge --c4 {scale}`); " + P.PROTOCOL["C4"].estimand)
    e5 = C.estimate_c5(t2, pretrain=k, seeds=t2s)
    out["C5"] = _entry(e5.decision(), e5, t2, committed["C5"])
    ab = _records(s["ablation"], profile, data_root, relabel)
    e6 = C.estimate_c6(t2, ab, pretrains=("none", k), seeds=seeds)
    out["C6"] = _entry(e6.decision(), e6, pd.concat([t2, ab]), committed["C6"])
    return out


def judge_findings(*, profile: str = "cpu", data_root: str | os.PathLike | None = None) -> dict[str, dict]:
    """The decision of every finding beyond the paper (F1-F5), each with the judged records made
    after its rule (:func:`rule_commit_time`): F1 and F3 from the grids' records, F2 from the
    metadata baseline, F4 and F5 from their analysis records (:mod:`covid_lib.report.findings`)."""
    from covid_lib.report import findings as RF

    out: dict[str, dict] = {}
    e1, r1 = RF.f1_estimate(profile, data_root)
    out["F1"] = _entry(e1.decision(), e1, r1, rule_commit_time("F1"))
    e2 = RF.f2_estimate(data_root)
    out["F2"] = _entry(e2.decision(), e2, pd.DataFrame({"path": []}), rule_commit_time("F2"))
    e3, r3 = RF.f3_estimate(profile, data_root)
    out["F3"] = _entry(e3.decision(), e3, r3, rule_commit_time("F3"))
    for name, compute in (("F4", RF.f4_estimate), ("F5", RF.f5_estimate)):
        est, runs, why = compute()
        out[name] = (_not_evaluated(name, f"not evaluated: {why}") if est is None else
                     _entry(est.decision(), est, RF.run_paths(runs), rule_commit_time(name)))
    for name, d in out.items():
        d["rule_committed"] = rule_commit_time(name)
        d["exploratory"] = not (d["n_records"] and d["records_after_protocol"] == d["n_records"])
    return out


def write_findings_inputs(*, profile: str = "cpu", data_root: str | os.PathLike | None = None,
                          device: str = "cpu") -> list[Path]:
    """Compute the analysis records of F4 and F5 from the checkpoints cached here (never retraining):
    :func:`covid_lib.report.findings.write_f4`, :func:`covid_lib.report.findings.write_f5`."""
    from covid_lib.report import findings as RF

    return [RF.write_f4(profile, data_root, device=device), RF.write_f5(profile, data_root, device=device)]


#: What the power table assumes for a future paired comparison (:mod:`covid_lib.power`): the
#: reference model's AUC / specificity, the intra-patient correlation and the models' correlation.
POWER_ASSUMPTIONS = {"base_auc": 0.80, "base_specificity": 0.80, "icc": 0.3, "rho_models": 0.5, "n_sim": 400}


def power_table(records: pd.DataFrame) -> list[dict]:
    """Per test set of Table II (and Table IV's 15 images): its patients and images, the smallest
    paired difference one comparison on it detects with 80% power (AUC and specificity), and the
    test patients that a difference of 0.05 / 0.10 in AUC would need (same label mix and images
    per patient). Simulated with patients as the unit (:func:`covid_lib.power.minimum_detectable_effect`,
    :func:`covid_lib.power.patients_needed`) under :data:`POWER_ASSUMPTIONS`."""
    from covid_lib.power import minimum_detectable_effect, patients_needed

    a = POWER_ASSUMPTIONS
    path = next((p for p in records["path"] if isinstance(p, (str, os.PathLike))), None)
    if path is None:
        return []
    scores = C.read_scores(path)
    out = []
    for t in C.ALL_TEST_SETS:
        f = scores[scores["test_set"] == t]
        if f["label"].nunique() < 2:
            continue
        y, g = f["label"].to_numpy(), f["group_id"].astype(str).to_numpy()
        kw = {"icc": a["icc"], "rho_models": a["rho_models"], "n_sim": a["n_sim"]}
        auc = minimum_detectable_effect(y, g, metric="auc", base=a["base_auc"], **kw)
        spec = minimum_detectable_effect(y, g, metric="specificity", base=a["base_specificity"], **kw)
        need = {d: patients_needed(y, g, delta=d, metric="auc", base=a["base_auc"], **kw).n_patients for d in (0.05, 0.10)}
        out.append({"test_set": t, "patients": int(len(set(g))), "images": int(len(y)), "positives": int(y.sum()),
                    "negatives": int((1 - y).sum()), "mde_auc": auc.delta, "mde_specificity": spec.delta,
                    "patients_for_auc_0.05": need[0.05], "patients_for_auc_0.10": need[0.10]})
    return out


def power_markdown(data: dict | None = None) -> str:
    """The power table of ``book/verdicts.json`` as Markdown."""
    data = read_verdicts() if data is None else data
    rows = (data or {}).get("power") or []
    if not rows:
        return "*No power table yet: run `python -m covid_lib book judge`.*"
    a = data.get("power_assumptions", POWER_ASSUMPTIONS)
    lines = [f"One paired comparison of two models on each test set, 80% power, two-sided 5% level; simulated "
             f"with patients as the unit ({a['n_sim']} simulations), reference AUC {a['base_auc']}, reference "
             f"specificity {a['base_specificity']}, intra-patient correlation {a['icc']}, correlation between the "
             f"two models {a['rho_models']}. A pooled verdict over several cells and seeds detects less (its "
             "MDE is beside it above), but cells on the same test patients are not independent evidence.", "",
             "| test set | patients | images (COVID+ / COVID-) | smallest detectable ΔAUC | smallest detectable "
             "Δspecificity | test patients for ΔAUC 0.05 | for ΔAUC 0.10 |", "|---|---|---|---|---|---|---|"]
    def mde(v: float) -> str:
        return "none, even the largest" if v != v else f"{v:.3f}"

    for r in rows:
        lines.append(f"| {r['test_set']} | {r['patients']} | {r['images']} ({r['positives']} / {r['negatives']}) | "
                     f"{mde(r['mde_auc'])} | {mde(r['mde_specificity'])} | {r['patients_for_auc_0.05'] or '> 20,000'} | "
                     f"{r['patients_for_auc_0.10'] or '> 20,000'} |")
    return "\n".join(lines)


def collapse_sensitivity(*, profile: str = "cpu", data_root: str | os.PathLike | None = None) -> dict:
    """The sensitivity reading of :mod:`covid_lib.report.sensitivity`, per scale of :data:`SCALES`:
    the collapsed models of the judged grids (how many collapsed at the threshold only) and every
    claim judged with those kept; of the findings, F3 (the only one whose models the rule leaves
    out: F1 leaves none out, F2, F4 and F5 read no collapse status). Beside the verdicts, never in
    their place."""
    from covid_lib.report import findings as RF
    from covid_lib.report.sensitivity import RULE, collapsed_models, keep_threshold_collapsed

    out: dict = {"rule": RULE, "scales": {}}
    for name, s in SCALES.items():
        grids = tuple(dict.fromkeys(s["table2"] + s["table3"] + s["conv8"] + s["ablation"]))
        out["scales"][name] = {"models": collapsed_models(_records(grids, profile, data_root)),  # only COVID runs collapse
                               "claims": judge(name, profile=profile, data_root=data_root,
                                               relabel=keep_threshold_collapsed)}
    e3, r3 = RF.f3_estimate(profile, data_root, keep_threshold_collapsed=True)
    out["findings"] = {"F3": _entry(e3.decision(), e3, r3, rule_commit_time("F3"))}
    return out


def write_verdicts(path: str | os.PathLike | None = None, *, profile: str = "cpu",
                   data_root: str | os.PathLike | None = None) -> dict:
    """Judge both scales and write them, with the protocol's hash and commit time, to ``path``."""
    data = {"protocol_hash": P.protocol_hash(), "protocol_version": P.PROTOCOL_VERSION,
            "protocol_committed": protocol_commit_time(), "profile": profile,
            "scales": {name: {"label": SCALES[name]["label"], "claims": judge(name, profile=profile, data_root=data_root)}
                       for name in SCALES},
            "findings": judge_findings(profile=profile, data_root=data_root),
            "power_assumptions": POWER_ASSUMPTIONS,
            "power": power_table(_records(SCALES["563"]["table2"], profile, data_root))}
    data["collapse_sensitivity"] = collapse_sensitivity(profile=profile, data_root=data_root)  # no digest reads it
    Path(path if path is not None else VERDICTS_JSON).write_text(json.dumps(data, indent=1, sort_keys=True, default=float) + "\n")
    return data


def note_read(claim: str) -> None:
    """Note that ``claim``'s verdict was read from ``book/verdicts.json``: appended to the file
    :data:`READ_LOG_ENV` names, if set, so that the executed chapter's provenance record lists the
    verdicts it shows and ``book check`` can tell when one of them was re-judged."""
    log = os.environ.get(READ_LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(claim + "\n")


def claim_digest(claim: str, data: dict | None) -> str | None:
    """A short SHA-256 of what ``book/verdicts.json`` (``data``) says of ``claim``: the protocol
    hash and its entry at every scale (a claim C1-C6) or its one entry (a finding F1-F5); None when
    ``data`` is None. Equal digests: a chapter showing ``claim`` shows what the file says now."""
    import hashlib

    if data is None:
        return None
    entry = {"protocol_hash": data.get("protocol_hash"),
             "scales": {name: s.get("claims", {}).get(claim) for name, s in sorted(data.get("scales", {}).items())},
             "finding": data.get("findings", {}).get(claim)}
    return hashlib.sha256(json.dumps(entry, sort_keys=True, default=float).encode()).hexdigest()[:16]


def read_verdicts(path: str | os.PathLike | None = None) -> dict | None:
    """``book/verdicts.json`` (or ``path``), None when it does not exist."""
    p = Path(path) if path is not None else VERDICTS_JSON
    return json.loads(p.read_text()) if p.is_file() else None


def _fmt(d: dict) -> str:
    if d.get("not_evaluated"):
        return _why_not(d) or "not yet evaluated"
    parts = d.get("details", {}).get("parts")
    if parts:  # a claim of several contrasts (C3): each part's numbers
        text = "; ".join(f"{name} **{p['outcome']}**: {_fmt({**p, 'left_out_reasons': {}})}" for name, p in parts.items())
        left = ", ".join(f"{n} {why}" for why, n in sorted(d.get("left_out_reasons", {}).items()))
        return text + (f" (left out in all: {left})" if left else "")
    est, lo, hi = d["estimate"], d["low"], d["high"]
    if est != est:
        left = ", ".join(f"{n} {why}" for why, n in sorted(d.get("left_out_reasons", {}).items()))
        return f"no usable comparison ({d['n_left_out']} left out" + (f": {left})" if left else ")")
    text = f"{est:+.3f} [{lo:+.3f}, {hi:+.3f}], MDE {d['mde']:.3f}" if d["mde"] == d["mde"] else \
        f"{est:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    left = ", ".join(f"{n} {why}" for why, n in sorted(d["left_out_reasons"].items()))
    text += f"; {d['n_used']} used, {d['n_left_out']} left out" + (f" ({left})" if left else "")
    return text + (f"; {d['reason']}" if d["outcome"] in ("inconclusive", "no detectable effect") else "")


#: The chapter that shows each claim's evidence, and the badge colour of each outcome (sphinx-design).
CLAIM_CHAPTERS = {"C1": "05_cross_dataset", "C2": "04_pretraining", "C3": "06_depth", "C4": "08_features",
                  "C5": "07_small_test", "C6": "09_ablation"}
BADGES = {"reproduced": "success", "not reproduced": "danger", "no detectable effect": "info",
          "inconclusive": "warning"}
#: What every verdict's models differ in from the paper's, and what each scale and claim adds.
COMMON_DEPARTURES = ("`cpu` recipe (128 px, AdamW one-cycle, at most 30 epochs); encoders from random weights "
                     "(no ImageNet can be downloaded); CORDA is a public stand-in (Cohen images of many "
                     "hospitals); splits by patient, so CORDA's test patients sit inside each CORDA&X test; "
                     "RSNA pre-training on 1,000 NIH images (the paper: 26,684)")
SCALE_DEPARTURES = {"563": "ChestXRay pre-training on 563 images (the paper: 5,857)",
                    "full": "ChestXRay pre-training on the whole set as a squashed 224-px JPEG copy, whose "
                            "three-class gate (macro AUC >= 0.93) was not met"}
CLAIM_DEPARTURES = {
    "C1": "decided against the CORDA-only model's own gap (the paper has no control)",
    "C2": "decided threshold-free (AUC); the paper reads specificity at the threshold 0.5",
    "C3": "Conv8 is ours, after ALL-CNN-C (the paper gives no layer widths)",
    "C4": "a k-NN balanced-accuracy margin (source minus label) measured before and after fine-tuning, where "
          "the paper reads a t-SNE plot",
    "C5": "COVID-ChestXRay is a stand-in rebuilt from git dates; its 15-image test is one seeded draw",
    "C6": "pipeline `none` resizes the stored 8-bit images only; decided on AUC, the paper reports BA and DOR",
}


#: The chapter that shows each finding's evidence.
FINDING_CHAPTERS = {"F1": "11_unseen", "F2": "03_confounders", "F3": "10_shortcuts", "F4": "12_saliency",
                    "F5": "13_landscape"}
#: What each finding's models or data differ in from the work the finding follows.
FINDING_DEPARTURES = {
    "F1": "ResNet-18 from scratch or pre-trained on 563 ChestXRay images (no ImageNet), not a frozen ImageNet "
          "ResNet-50; our sources (Hannover, Cohen, Kermany, NIH), not BIMCV, PadChest or CheXpert; the paper's chain, "
          "not their lung crop; the `cpu` recipe; seed 0 only",
    "F2": "a logistic regression reads the metadata, where a network has to infer them from the pixels",
    "F3": "DeGrave et al. plant nothing: the mark, where it is planted and the composition (CORDA) are ours",
    "F4": "Grad-CAM or gradient x input on our `cpu`-profile ResNet-18s at 128 px (from scratch or pre-trained on "
          "the whole ChestXRay set), not expected gradients (DeGrave et al.) or CAM on DenseNet-121 (the KTH report); "
          "a U-Net lung mask",
    "F5": "ResNet-18 pre-trained from random weights on ChestXRay, not DenseNet-121 / ResNet-50 on ChestX-ray14 "
          "with ImageNet weights; our six sources, not ChestX-ray14's pathologies; MiniSom's schedule, not the "
          "report's",
}


def _rule_markdown(claim: str) -> str:
    """The protocol's estimand, control and decision rule for ``claim``, as one Markdown sentence."""
    rule = P.rule(claim)
    return f"*Estimand:* {rule.estimand}. *Control:* {rule.control}. *Decides:* {P.rule_text(rule)}"


def _departures(claim: str) -> str:
    """What every verdict's models differ in from the paper, and what ``claim`` adds (a finding:
    what differs from the work it follows)."""
    if claim in FINDING_DEPARTURES:
        return FINDING_DEPARTURES[claim]
    return "; ".join(x for x in (COMMON_DEPARTURES, CLAIM_DEPARTURES.get(claim, "")) if x)


def exploratory_text(d: dict) -> str:
    """How a finding's rule stands to the records it judges: ``exploratory: rule fixed after N of
    the M records it judges`` (N made before the rule), ``confirmatory`` when every record came
    after it, or ``not evaluated``."""
    if d.get("not_evaluated"):
        return "not evaluated"
    n, after = d.get("n_records") or 0, d.get("records_after_protocol") or 0
    if not n:
        return "exploratory: rule fixed after the data it judges had been read (no run record)"
    if after == n:
        return f"confirmatory: all {n} records it judges were made after the rule"
    return f"exploratory: rule fixed after {n - after} of the {n} records it judges"


def _why_not(d: dict) -> str:
    """Why a finding is not evaluated (its reason without the leading ``not evaluated: ``), or ''."""
    reason = str(d.get("reason", ""))
    return reason.removeprefix("not evaluated: ") if reason.startswith("not evaluated: ") else ""


def _signed(e: dict) -> str:
    return f"{e['estimate']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}]"


def finding_details(claim: str, d: dict) -> list[str]:
    """What a finding reports beside its decision, never deciding (its rule's ``secondary``), as
    Markdown list items."""
    x = d.get("details") or {}
    out = []
    if claim == "F1" and x.get("within_model_drop"):
        drops = [r for r in x["within_model_drop"] if r.get("drop") == r.get("drop")]
        above = sum(r["drop_low"] > 0 for r in drops)
        out.append(f"the within-model drop, seen minus unseen AUC (unpaired): its interval lies above 0 for {above} of "
                   f"{len(drops)} models")
    if claim == "F2":
        for r in x.get("secondary", []):
            out.append(f"{r['composition']} minus {r['against']}: {_signed(r)}")
        if x.get("with_year"):
            out.append(f"with the year and the missing-value flags (by-construction proxies): {_signed(x['with_year'])}")
    if claim == "F3":
        for key, text in (("control_pipeline_none", "the same contrast without the chain (pipeline none)"),
                          ("marked_minus_unmarked", "marked minus unmarked, through the chain")):
            if x.get(key):
                out.append(f"{text}: {_signed(x[key])}")
    if claim == "F4" and x.get("map"):
        here = x.get("planted_differs_from_record") or {}
        out.append(f"maps: {x['map']}, the first candidate that found the planted mark"
                   + (f" (checked on {len(here)} planted models trained here, not the recorded ones: the check "
                      "validates the map, none of its numbers is F4's)" if here else ""))
    if claim == "F5":
        for t, e in (x.get("change") or {}).items():
            out.append(f"change with fine-tuning of the excess purity by {t}: {_signed(e)}")
    return out


def _scale_departures(scales) -> str:
    """What each pre-training scale of ``scales`` differs in from the paper."""
    return "; ".join(SCALE_DEPARTURES[s] for s in scales if s in SCALE_DEPARTURES)


def _badge(outcome: str) -> str:
    return f"{{bdg-{BADGES.get(outcome, 'secondary')}}}`{outcome}`"


def _short_estimate(d: dict) -> str:
    if d.get("not_evaluated"):
        return "not yet evaluated"
    est, lo, hi = d["estimate"], d["low"], d["high"]
    if est != est:
        return "no usable comparison"
    return f"{est:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def verdicts_markdown(data: dict | None = None) -> str:
    """The verdicts at a glance (one row per claim: a badge per scale and the deciding estimate),
    then one collapsed section per claim: the rule, the numbers at each scale, when the judged
    records were made, what differs from the paper and the chapter with the evidence."""
    data = read_verdicts() if data is None else data
    if not data:
        return "*No verdicts judged yet: run `python -m covid_lib book judge`.*"
    from covid_lib.analysis.verdicts import CLAIMS, SHORT_CLAIMS

    scales = list(data["scales"])
    labels = {s: data["scales"][s]["label"] for s in scales}
    lines = [f"Judged under protocol `{data['protocol_hash']}` (version {data['protocol_version']}, committed "
             f"{data.get('protocol_committed') or 'unknown'}). Estimates: the pooled difference each claim's "
             "{doc}`protocol` names, with its 95% interval over patients.", "",
             "| claim | " + " | ".join(f"verdict, {labels[s].split(' (')[0].split(',')[0]}" for s in scales)
             + " | deciding estimate [95% CI] | evidence |",
             "|---|" + "---|" * len(scales) + "---|---|"]
    from covid_lib.report.sensitivity import rests_on_collapse_rule

    fragile = False
    for claim in CLAIMS:
        ds = [data["scales"][s]["claims"][claim] for s in scales]
        deciding = next((d for d in reversed(ds) if d["estimate"] == d["estimate"] and not d.get("not_evaluated")),
                        ds[-1])
        chapter = CLAIM_CHAPTERS.get(claim)
        link = f"[{chapter[:2]}](chapters/{chapter}.ipynb)" if chapter else ""
        marks = [" †" if rests_on_collapse_rule(data, s, claim) else "" for s in scales]
        fragile = fragile or any(marks)
        lines.append(f"| **{claim}** {SHORT_CLAIMS[claim]} | "
                     + " | ".join(_badge(d["outcome"]) + m for d, m in zip(ds, marks))
                     + f" | {_short_estimate(deciding)} | {link} |")
    lines += ["", "The estimate shown is the last scale with a usable estimate (the whole set when it has one). "
              + ("† The outcome changes when the models that collapsed at the threshold only (scores spread, all "
                 "on one side of 0.5) are kept: see *Do the verdicts rest on the collapse rule?* below. "
                 if fragile else "") + "Each claim in detail:", ""]
    for claim in CLAIMS:
        rule = P.PROTOCOL[claim]
        lines += [f":::{{dropdown}} {claim}: {SHORT_CLAIMS[claim]}", f"**The claim** ({rule.section}): {CLAIMS[claim]}",
                  "", f"**The rule.** {_rule_markdown(claim)}", ""]
        for s in scales:
            d = data["scales"][s]["claims"][claim]
            when = (f" Judged on {d['n_records']} records, {d['records_after_protocol']} of them made after the "
                    "protocol was committed." if d.get("n_records") else "")
            lines.append(f"- *{labels[s]}:* **{d['outcome']}**: {_fmt(d)}.{when}")
        lines += ["", f"**What differs from the paper:** {_departures(claim)}; per scale: "
                  f"{_scale_departures(scales)}.", ""]
        if claim in CLAIM_CHAPTERS:
            lines += [f"Evidence: [{CLAIM_CHAPTERS[claim]}](chapters/{CLAIM_CHAPTERS[claim]}.ipynb).", ""]
        lines.append(":::")
    if data.get("findings"):
        lines += ["", *findings_markdown(data["findings"], data)]
    return "\n".join(lines)


def findings_markdown(findings: dict[str, dict], data: dict | None = None) -> list[str]:
    """The findings beyond the paper (F1-F5) on the verdicts page: a glance table (badge, estimate,
    how the rule stands to the records; † where the collapse sensitivity reading of ``data``,
    ``book/verdicts.json``, changes the outcome), then one collapsed section per finding."""
    from covid_lib.analysis.verdicts import FINDING_CLAIMS, SHORT_FINDINGS
    from covid_lib.report.sensitivity import finding_rests_on_collapse_rule

    lines = ["## Findings beyond the paper", "",
             "The book's own conclusions beyond the paper, each decided under a rule of protocol version 2 "
             "(see the {doc}`protocol`). The rules were written after the seed-0 records they judge had been read, "
             "so each verdict says how many of its records came before the rule: such a verdict is *exploratory*, "
             "to be confirmed on records made after it.", "",
             "| finding | verdict | estimate [95% CI] | rule and records | evidence |", "|---|---|---|---|---|"]
    for f, d in findings.items():
        chapter = FINDING_CHAPTERS.get(f, "")
        link = f"[{chapter[:2]}](chapters/{chapter}.ipynb)" if chapter else ""
        if d.get("not_evaluated"):
            badge, estimate, records = "{bdg-secondary}`not evaluated`", _why_not(d).split(":")[0] or "–", "–"
        else:
            badge, estimate, records = _badge(d["outcome"]), _short_estimate(d), exploratory_text(d)
            if finding_rests_on_collapse_rule(data, f):
                badge += " †"
        lines.append(f"| **{f}** {SHORT_FINDINGS.get(f, '')} | {badge} | {estimate} | {records} | {link} |")
    if any(finding_rests_on_collapse_rule(data, f) for f in findings):
        lines += ["", "† The outcome changes when the model collapsed at the threshold only is kept (see *Do the "
                  "verdicts rest on the collapse rule?* below)."]
    lines += ["", "Each finding in detail:", ""]
    for f, d in findings.items():
        rule = P.rule(f)
        lines += [f":::{{dropdown}} {f}: {SHORT_FINDINGS.get(f, '')}",
                  f"**The finding** ({rule.paper}; {rule.section}): {FINDING_CLAIMS.get(f, '')}", "",
                  f"**The rule** (protocol version {rule.since}, committed {d.get('rule_committed') or 'unknown'}). "
                  f"{_rule_markdown(f)}", ""]
        verdict = "not evaluated" if d.get("not_evaluated") else d["outcome"]
        lines.append(f"- **{verdict}**: {_fmt(d)}." + ("" if d.get("not_evaluated") else f" *{exploratory_text(d)}*."))
        extra = finding_details(f, d)
        if extra:
            lines += ["", "Beside it, never deciding:", "", *(f"- {e}" for e in extra)]
        differs = "Limits (a finding of ours)" if rule.paper.startswith("ours") else f"What differs from {rule.paper}"
        lines += ["", f"**{differs}:** {_departures(f)}.", ""]
        if f in FINDING_CHAPTERS:
            lines += [f"Evidence: [{FINDING_CHAPTERS[f]}](chapters/{FINDING_CHAPTERS[f]}.ipynb).", ""]
        lines.append(":::")
    return lines


def claim_markdown(claim: str, data: dict | None = None) -> str:
    """What a chapter shows for ``claim``: the protocol's rule first (estimand, control, rule, as
    :mod:`covid_lib.analysis.protocol` fixes them), then the outcome judged from the records at each
    pre-training scale (``book/verdicts.json``, written by ``book judge``), with the deciding
    estimate, its patient-level interval, the MDE and the models left out. A finding beyond the
    paper (``F1``-``F5``) shows its one judgement, with when its rule was fixed against the
    records it judges (:func:`exploratory_text`)."""
    rule = P.rule(claim)
    if data is None:
        data = read_verdicts()
        note_read(claim)
    if claim in P.FINDINGS:
        return _finding_markdown(claim, data)
    lines = [f"**The rule** (protocol `{P.protocol_hash()}`, fixed before the runs at scale were read; "
             f"paper {rule.section}). {_rule_markdown(claim)}", ""]
    if not data or data.get("protocol_hash") != P.protocol_hash():
        return "\n".join(lines + ["*Not judged under this protocol yet: run `python -m covid_lib book judge`.*"])
    lines += ["| pre-training scale | outcome | deciding estimate [95% CI over patients], MDE; comparisons used / left out |",
              "|---|---|---|"]
    for scale in data["scales"].values():
        d = scale["claims"][claim]
        lines.append(f"| {scale['label']} | **{d['outcome']}** | {_fmt(d)} |")
    from covid_lib.report.sensitivity import rests_on_collapse_rule

    kept = {s: part["claims"][claim] for s, part in (data.get("collapse_sensitivity") or {}).get("scales", {}).items()
            if claim in part.get("claims", {})}
    if kept:
        lines += ["", "Beside it, never deciding (post hoc, the verdicts page's sensitivity reading): with the models "
                  "that collapsed at the threshold only kept (scores spread, all on one side of 0.5), "
                  + "; ".join(f"{data['scales'][s]['label'].split(' (')[0]}: **{d['outcome']}**, {_short_estimate(d)}, "
                              f"{d['n_used']} used" + (" (the outcome changes)" if rests_on_collapse_rule(data, s, claim)
                                                       else "")
                              for s, d in kept.items()) + "."]
    return "\n".join(lines)


def _judged(data: dict | None) -> bool:
    return bool(data) and data.get("protocol_hash") == P.protocol_hash()


def _finding_markdown(finding: str, data: dict | None) -> str:
    """:func:`claim_markdown` of a finding: its rule, when it was fixed against the records it
    judges (from the dates), then its outcome and estimate."""
    rule = P.rule(finding)
    d = (data or {}).get("findings", {}).get(finding) if _judged(data) else None
    committed = (d or {}).get("rule_committed") or rule_commit_time(finding) or "not yet committed"
    lines = [f"**The rule** (protocol `{P.protocol_hash()}`, version {rule.since}, committed {committed}; "
             f"{rule.paper}, {rule.section}). {_rule_markdown(finding)}", ""]
    if d is None:
        return "\n".join(lines + ["*Not judged under this protocol yet: run `python -m covid_lib book judge`.*"])
    verdict = "not evaluated" if d.get("not_evaluated") else d["outcome"]
    lines += ["| outcome | estimate [95% CI over patients], MDE; comparisons used / left out | rule and records |",
              "|---|---|---|", f"| **{verdict}** | {_fmt(d)} | {exploratory_text(d)} |"]
    extra = finding_details(finding, d)
    if extra:
        lines += ["", "Beside it, never deciding: " + "; ".join(extra) + "."]
    kept = ((data.get("collapse_sensitivity") or {}).get("findings") or {}).get(finding)
    if kept:
        from covid_lib.report.sensitivity import finding_rests_on_collapse_rule

        lines += ["", "Beside it, never deciding (post hoc, the verdicts page's sensitivity reading): with the model "
                  f"that collapsed at the threshold only kept, **{kept['outcome']}**, {_short_estimate(kept)}, "
                  f"{kept['n_used']} used" + (" (the outcome changes)" if finding_rests_on_collapse_rule(data, finding)
                                              else "") + "."]
    return "\n".join(lines)


def protocol_verdict(claim: str, data: dict | None = None, *, scale: str = "full") -> Verdict:
    """``claim``'s verdict as the protocol decided it (``book/verdicts.json``), as a
    :class:`~covid_lib.analysis.verdicts.Verdict` for a chapter's answer box: the outcome at
    ``scale`` (the grids at the paper's pre-training scale decide), the numbers at every scale,
    and what differs from the paper. A finding (``F1``-``F5``) has one judgement, labelled
    exploratory or confirmatory (:func:`exploratory_text`); one not evaluated reads inconclusive
    with the reason."""
    from covid_lib.analysis.verdicts import CLAIMS, FINDING_CLAIMS

    if data is None:
        data = read_verdicts()
        note_read(claim)
    chapter = CLAIM_CHAPTERS.get(claim, FINDING_CHAPTERS.get(claim, ""))
    differs = _departures(claim)
    statement = CLAIMS.get(claim) or FINDING_CLAIMS[claim]
    d = (data or {}).get("findings", {}).get(claim) if claim in P.FINDINGS else None
    if not _judged(data) or (claim in P.FINDINGS and d is None):
        return Verdict(claim, statement, "inconclusive", "not judged under this protocol yet "
                       "(`python -m covid_lib book judge`)", differs, chapter)
    if d is not None:  # a finding beyond the paper: one judgement, not one per scale
        if d.get("not_evaluated"):
            return Verdict(claim, f"not evaluated here, so the rule decides nothing. The finding: {statement}",
                           "inconclusive", f"not evaluated: {_fmt(d)}", differs, chapter)
        return Verdict(claim, statement, d["outcome"], f"the protocol's estimate ({_fmt(d)}; {exploratory_text(d)})",
                       differs, chapter)
    scales = data["scales"]
    scale = scale if scale in scales else list(scales)[-1]
    deciding = "; ".join(f"{s['label']}: {s['claims'][claim]['outcome']}, {_fmt(s['claims'][claim])}"
                         for s in scales.values())
    differs += "; " + _scale_departures(scales)
    return Verdict(claim, CLAIMS[claim], scales[scale]["claims"][claim]["outcome"],
                   f"the protocol's pooled estimate ({deciding})", differs, chapter)


def show_claim(claim: str, data: dict | None = None) -> None:
    """Display :func:`claim_markdown` in a notebook (the chapters' verdict cell)."""
    from IPython.display import Markdown, display

    display(Markdown(claim_markdown(claim, data)))
