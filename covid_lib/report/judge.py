"""Every claim judged under the protocol from the run records, at both pre-training scales.

``python -m covid_lib book judge`` writes ``book/verdicts.json`` (one entry per claim and scale:
the outcome, the deciding estimate with its patient-level interval, the MDE, the models left out,
the protocol hash, and when the judged records were made against when the protocol was
committed); the verdicts page renders it (:mod:`covid_lib.report.verdict_text`, whose names this
module re-exports), and ``book check`` fails when the file was judged under another protocol.
Scales (issue 17):

- ``563``: the records of issue 9, pre-trained on the 563 ChestXRay training images of the working
  copy (``kermany``), one to three seeds;
- ``full``: the grids at the paper's scale, pre-trained on the whole ChestXRay set
  (``kermany_full``), five seeds for Table II and three for the rest.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from covid_lib.analysis import claims as C
from covid_lib.analysis import protocol as P
from covid_lib.grid import grid_specs
from covid_lib.report.records import created_times, spec_records
from covid_lib.runs import DIFFERS
from covid_lib.report.verdicts_file import (READ_LOG_ENV, VERDICTS_JSON, claim_digest, note_read, protocol_commit_time,
                                            read_verdicts, rule_commit_time)
# The verdicts as text live in verdict_text; chapters call them from here (judge.show_claim, ...).
from covid_lib.report.verdict_text import (BADGES, CLAIM_CHAPTERS, CLAIM_DEPARTURES, COMMON_DEPARTURES,
                                           FINDING_CHAPTERS, FINDING_DEPARTURES, SCALE_DEPARTURES, claim_markdown,
                                           exploratory_text, finding_details, findings_markdown, protocol_verdict,
                                           show_claim, verdicts_markdown)

__all__ = ["BADGES", "CLAIM_CHAPTERS", "CLAIM_DEPARTURES", "COMMON_DEPARTURES", "FINDING_CHAPTERS",
           "FINDING_DEPARTURES", "POWER_ASSUMPTIONS", "READ_LOG_ENV", "SCALES", "SCALE_DEPARTURES",
           "VERDICTS_JSON", "c4_estimate", "c4_path", "c4_specs", "claim_digest", "claim_markdown",
           "collapse_sensitivity", "exploratory_text", "finding_details", "findings_markdown", "judge",
           "judge_c3", "judge_findings", "note_read", "power_markdown", "power_table", "protocol_commit_time",
           "protocol_verdict", "read_verdicts", "rule_commit_time", "show_claim", "verdicts_markdown",
           "write_c4", "write_findings_inputs", "write_verdicts"]

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
