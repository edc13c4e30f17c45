"""The findings beyond the paper (F1-F5) under their rules, on synthetic frames: each pooled estimate
against a brute-force computation (sklearn AUCs, hand-made means, the landscape chapter's
purity table), the interval from draws shared by every model, models left out and counted, and
the verdicts page's findings with their exploratory label."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from covid_lib.analysis import findings as F
from covid_lib.analysis import landscape as L
from covid_lib.analysis import protocol as P
from covid_lib.analysis.claims import JointDraws
from covid_lib.data.source_splits import PARTS, SOURCE_SPLITS
from covid_lib.stats import percentile_interval

N_BOOT = 200  # the estimators take the protocol's 2000 by default; fewer keep the brute force quick


def _part_scores(rng, strength: dict[str, float], n_patients: int = 12) -> pd.DataFrame:
    """Scores of every part of :data:`PARTS`: each patient 1-2 images, a score that separates the
    part's label by ``strength[part]`` (0: noise)."""
    rows = []
    for part, (source, label) in PARTS.items():
        for i in range(n_patients):
            for k in range(1 + i % 2):
                z = strength.get(part, 0.0) * (2 * label - 1) + rng.normal()
                rows.append({"test_set": part, "source": source, "image_id": f"{part}-{i}-{k}",
                             "patient_id": f"{source}:{i}", "group_id": f"{source}:{i}", "label": label,
                             "score": 1 / (1 + np.exp(-z))})
    return pd.DataFrame(rows)


@pytest.fixture
def split_records(tmp_path):
    """``make({(split, pretrain, freeze): scores | status})``: records of source-split models as
    :func:`covid_lib.report.unseen.unseen_records` gives them, each scores frame in its own folder."""

    def make(models: dict) -> pd.DataFrame:
        rows = []
        for k, ((split, pretrain, freeze), scores) in enumerate(models.items()):
            path = None
            if isinstance(scores, pd.DataFrame):
                path = tmp_path / f"run{k}"
                path.mkdir()
                scores.to_csv(path / "scores.csv", index=False)
            rows.append({"composition": split, "pretrain": pretrain, "freeze": freeze, "adapt": pd.NA,
                         "status": "done" if path else scores, "path": path, "run_id": f"run{k}"})
        return pd.DataFrame(rows)

    return make


def _pairwise_auc(y, s, w: np.ndarray) -> np.ndarray:
    """AUC by counting every (COVID+, COVID-) pair, ties half, each pair weighted by its images'
    bootstrap weights ``w (n_boot, n)``: the brute force of the weighted Mann-Whitney statistic."""
    y, s = np.asarray(y), np.asarray(s, float)
    pos, neg = y == 1, y == 0
    wins = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
    return np.einsum("bi,ij,bj->b", w[:, pos], wins, w[:, neg]) / (w[:, pos].sum(1) * w[:, neg].sum(1))


def _strength(split: str, seen: float = 2.0) -> dict[str, float]:
    return {p: seen for p in SOURCE_SPLITS[split].train}


def test_f1_pairs_are_the_ones_the_rule_names():
    assert F.f1_pairs() == [("U1-hannover-nih", "U2-cohen-kermany", ("hannover COVID+", "nih COVID-")),
                            ("U1-hannover-nih", "U3-cohen-cohen", ("hannover COVID+", "nih COVID-")),
                            ("U2-cohen-kermany", "U1-hannover-nih", ("cohen COVID+", "kermany COVID-"))]


def test_f1_pooled_difference_is_the_mean_of_sklearn_differences_on_shared_draws(split_records):
    rng = np.random.default_rng(0)
    scores = {s: _part_scores(rng, _strength(s)) for s in SOURCE_SPLITS}
    records = split_records({(s, "none", None): f for s, f in scores.items()})
    est = F.estimate_f1(records, n_boot=N_BOOT)
    assert est.n_used == 3 and est.n_left_out == 0
    diffs, reps = [], []
    draws = JointDraws(pd.concat([f["group_id"] for f in scores.values()]), N_BOOT, P.BOOT_SEED)
    for seen, unseen, parts in F.f1_pairs():
        a = scores[seen][scores[seen]["test_set"].isin(parts)]
        b = scores[unseen].set_index("image_id").loc[a["image_id"]]
        diffs.append(roc_auc_score(a["label"], a["score"]) - roc_auc_score(a["label"], b["score"]))
        # every replicate weighs a patient the same in both models and in every pair (shared draws)
        groups = a["group_id"].tolist()
        w = draws.unit_weights[:, [sorted(set(draws.index)).index(g) for g in groups]]
        reps.append(_pairwise_auc(a["label"], a["score"], w) - _pairwise_auc(a["label"], b["score"], w))
    assert est.estimate == pytest.approx(np.mean(diffs), abs=1e-12)
    assert est.estimate > 0  # the models that saw the sources rank them better
    low, high, _ = percentile_interval(np.mean(reps, axis=0), P.ALPHA)
    assert (est.low, est.high) == pytest.approx((low, high), abs=1e-9)
    assert est.se == pytest.approx(np.std(np.mean(reps, axis=0), ddof=1), abs=1e-9)


def test_f1_leaves_out_collapsed_and_missing_models_and_counts_them(split_records):
    rng = np.random.default_rng(1)
    flat = _part_scores(rng, {}).assign(score=0.2)  # every own-test score under the threshold: collapsed
    records = split_records({("U1-hannover-nih", "none", None): flat,
                             ("U2-cohen-kermany", "none", None): _part_scores(rng, _strength("U2-cohen-kermany")),
                             ("U3-cohen-cohen", "none", None): "missing"})
    est = F.estimate_f1(records, n_boot=N_BOOT)
    assert est.n_used == 0 and est.n_left_out == 3
    assert est.left_out["status_a"].str.startswith("collapsed").sum() == 2  # U1 is in two pairs as the seen model
    assert (est.left_out["status_b"] == "missing").sum() == 1
    assert est.decision(P.rule("F1")).outcome == "inconclusive"


def _baseline_scores(rng) -> pd.DataFrame:
    """Own-test scores of two baselines; CORDA's test patients sit inside CORDA&ChestXRay's."""
    corda = [(f"cohen:{i}", i % 2) for i in range(20)]
    borrowed = corda + [(f"kermany:{i}", 0) for i in range(15)]
    rows = []
    for comp, patients, gap in (("CORDA", corda, 0.5), ("CORDA&ChestXRay", borrowed, 2.0)):
        for g, y in patients:
            z = gap * (2 * y - 1) + rng.normal() - (1.0 if g.startswith("kermany") else 0.0)
            rows.append({"composition": comp, "test_set": comp, "model": "logistic", "source": g.split(":")[0],
                         "image_id": g, "patient_id": g, "group_id": g, "label": y, "score": 1 / (1 + np.exp(-z))})
    return pd.DataFrame(rows)


def test_f2_difference_of_own_test_aucs_with_a_joint_bootstrap_over_the_union():
    scores = _baseline_scores(np.random.default_rng(2))
    est = F.estimate_f2(scores, n_boot=N_BOOT)
    a, b = (scores[scores["composition"] == c] for c in F.F2_CONTRAST)
    assert est.estimate == pytest.approx(roc_auc_score(a["label"], a["score"]) - roc_auc_score(b["label"], b["score"]))
    assert est.n_patients == a["group_id"].nunique() == 35  # the union: CORDA's patients are nested
    draws = JointDraws(scores["group_id"], N_BOOT, P.BOOT_SEED)
    pa, ra = draws.auc(a["label"].to_numpy(), a["score"].to_numpy(), a["group_id"].to_numpy())
    pb, rb = draws.auc(b["label"].to_numpy(), b["score"].to_numpy(), b["group_id"].to_numpy())
    assert (est.low, est.high) == pytest.approx(percentile_interval(ra - rb, P.ALPHA)[:2])
    assert est.decision().n_used == 1  # F2 decides on its one comparison (min_used 1)


def _planted_frame(rng, use_mark: float, n: int = 30) -> pd.DataFrame:
    y = np.tile([0, 1], n // 2)
    base = y + rng.normal(0, 1.0, n)
    mark = lambda on: 1 / (1 + np.exp(-(base + use_mark * on)))  # noqa: E731
    return pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "group_id": [f"p{i // 2}" for i in range(n)],
                         "label": y, "score": mark(y == 1), "score_flipped": mark(y == 0),
                         "score_unmarked": mark(np.zeros(n))})


def test_f3_marked_minus_flipped_on_the_same_images_with_its_control():
    rng = np.random.default_rng(3)
    frames = {"paper": _planted_frame(rng, 0.3), "none": _planted_frame(rng, 3.0)}
    est = F.estimate_f3(frames, {"paper": "done", "none": "done"}, n_boot=N_BOOT)
    f = frames["paper"]
    assert est.estimate == pytest.approx(roc_auc_score(f["label"], f["score"]) - roc_auc_score(f["label"], f["score_flipped"]))
    g = frames["none"]
    control = est.extra["control_pipeline_none"]["estimate"]
    assert control == pytest.approx(roc_auc_score(g["label"], g["score"]) - roc_auc_score(g["label"], g["score_flipped"]))
    assert control > est.estimate and "marked_minus_unmarked" in est.extra
    gone = F.estimate_f3({"paper": None, "none": g}, {"paper": "did not learn", "none": "done"}, n_boot=N_BOOT)
    assert gone.n_used == 0 and gone.n_left_out == 1 and gone.decision().outcome == "inconclusive"


def test_f3_leaves_out_a_collapsed_planted_model_and_names_a_collapsed_control():
    """The record's own collapse check reads a test set named after the composition, which planted
    runs only score as "CORDA · marked"/"flipped"/"unmarked": F3 applies the rule to the marked scores."""
    rng = np.random.default_rng(5)
    ok = _planted_frame(rng, 0.3)
    low = ok.assign(**{c: 0.38 + 0.05 * ok[c] for c in ("score", "score_flipped", "score_unmarked")})  # all < 0.5
    assert F.planted_model_status("done", low).startswith("collapsed: all scores below the threshold 0.5")
    assert F.planted_model_status("done", ok) == "usable"
    assert F.planted_model_status("did not learn", ok) == "did not learn"
    assert F.planted_model_status("done", None) == "missing"
    est = F.estimate_f3({"paper": low, "none": ok}, {"paper": "done", "none": "done"}, n_boot=N_BOOT)
    d = est.decision()
    assert est.n_used == 0 and est.n_left_out == 1 and d.outcome == "inconclusive"
    assert est.left_out["status_a"].iloc[0].startswith("collapsed")
    assert "control_pipeline_none" in est.extra  # the control is measured all the same
    swapped = F.estimate_f3({"paper": ok, "none": low}, {"paper": "done", "none": "done"}, n_boot=N_BOOT)
    assert swapped.n_used == 1 and "control_pipeline_none" not in swapped.extra
    assert swapped.extra["control_status"]["none"].startswith("collapsed")


def test_f3_keeps_a_model_collapsed_at_the_threshold_only_in_the_sensitivity_reading():
    """``keep_threshold_collapsed`` (the collapse sensitivity reading, never the verdict): a planted
    model whose marked scores all sit below 0.5 but spread is used, and named in ``extra``; one
    without spread stays out; without the option nothing changes."""
    rng = np.random.default_rng(5)
    ok = _planted_frame(rng, 0.3)
    low = ok.assign(**{c: 0.38 + 0.05 * ok[c] for c in ("score", "score_flipped", "score_unmarked")})  # all < 0.5
    flat = ok.assign(**{c: 0.457 + 1e-5 * ok[c] for c in ("score", "score_flipped", "score_unmarked")})  # no spread
    statuses = {"paper": "done", "none": "done"}
    assert F.planted_model_status("done", low, keep_threshold_collapsed=True) == "usable"
    assert F.planted_model_status("done", flat, keep_threshold_collapsed=True).startswith("collapsed: score spread")
    assert F.planted_model_status("did not learn", low, keep_threshold_collapsed=True) == "did not learn"
    est = F.estimate_f3({"paper": low, "none": ok}, statuses, n_boot=N_BOOT, keep_threshold_collapsed=True)
    assert (est.n_used, est.n_left_out) == (1, 0)
    assert est.estimate == pytest.approx(roc_auc_score(low["label"], low["score"])
                                         - roc_auc_score(low["label"], low["score_flipped"]))
    same = F.estimate_f3({"paper": ok, "none": ok}, statuses, n_boot=N_BOOT)  # a monotone map of its scores
    assert (est.estimate, est.low, est.high) == pytest.approx((same.estimate, same.low, same.high))
    kept = est.extra["kept_threshold_collapsed"]
    assert list(kept) == ["paper"] and kept["paper"]["status"].startswith("collapsed: all scores below")
    assert kept["paper"]["max"] < 0.5 and kept["paper"]["spread"] > 1e-3
    assert "kept_threshold_collapsed" not in same.extra and "kept_threshold_collapsed" not in F.estimate_f3(
        {"paper": low, "none": ok}, statuses, n_boot=N_BOOT).extra
    gone = F.estimate_f3({"paper": flat, "none": ok}, statuses, n_boot=N_BOOT, keep_threshold_collapsed=True)
    assert (gone.n_used, gone.n_left_out) == (0, 1) and gone.extra["kept_threshold_collapsed"] == {}
    assert "spread" in gone.left_out["status_a"].iloc[0]


def test_f4_mean_over_models_of_the_mean_excess_of_measured_maps():
    rng = np.random.default_rng(4)
    rows = []
    for run, shift in (("a", 0.1), ("b", 0.0), ("c", 0.0)):
        for i in range(16):
            share = np.nan if (run == "c" or i == 1) else float(np.clip(0.4 + shift + rng.normal(0, 0.05), 0, 1))
            rows.append({"run_id": run, "pipeline": "none", "group_id": f"p{i // 2}", "label": int(i % 4 != 3),
                         "seen": "trained on" if i % 5 else "unseen", "share": share, "baseline": 0.4,
                         "map_status": "no positive mass" if np.isnan(share) else "measured"})
    t = pd.DataFrame(rows)
    est = F.estimate_f4(t, left_out=[{"run_id": "d", "status_a": "did not learn", "status_b": "usable"}], n_boot=N_BOOT)
    keep = t[(t["label"] == 1) & (t["seen"] == "trained on") & (t["map_status"] == "measured")]
    by_model = (keep["share"] - keep["baseline"]).groupby(keep["run_id"]).mean()
    assert est.estimate == pytest.approx(by_model.mean())
    assert est.n_used == 2 and est.n_left_out == 2  # "c" places nothing, "d" did not learn
    cells = est.cells.set_index("run_id")
    assert cells.loc["a", "n_not_measurable"] == 1 and est.low < est.estimate < est.high


def test_f5_is_the_change_of_label_minus_source_excess_purity_of_the_purity_table():
    rng = np.random.default_rng(5)
    n = 80
    rows = pd.DataFrame({"source": np.repeat(["cohen", "nih", "kermany", "hannover"], n // 4),
                         "image_id": [f"i{i}" for i in range(n)], "group_id": [f"g{i // 2:03d}" for i in range(n)]})
    rows["label"] = ((rows["source"] == "hannover") | ((rows["source"] == "cohen") & (np.arange(n) % 2 == 0))).astype(int)
    rows["age_group"] = np.where(rows["source"] == "kermany", "children (<18)", "adults (18-64)")
    src = rows["source"].map({"cohen": 0, "nih": 1, "kermany": 2, "hannover": 3}).to_numpy()
    nodes = {"before": src * 4 + rng.integers(0, 4, n),  # organised by source
             "after": rows["label"].to_numpy() * 8 + rng.integers(0, 8, n)}  # organised by label
    frame = pd.concat([rows.assign(encoder=e, node=v) for e, v in nodes.items()], ignore_index=True)
    est = F.estimate_f5(frame, n_perm=50)
    fits = {e: L.SomFit(None, (4, 4), v, 0.0, 0.0) for e, v in nodes.items()}
    table = L.purity_table(fits, rows, n_boot=P.N_BOOT, n_perm=50, seed=P.BOOT_SEED).set_index(["encoder", "target"])
    change = {t: table.loc[("after", t)] for t in ("label", "source")}
    assert est.estimate == pytest.approx(change["label"]["change"] - change["source"]["change"], abs=1e-12)
    assert est.estimate > 0
    for t in ("label", "source"):  # the same draws as the chapter's table (patients sorted = first seen)
        got = est.extra["change"][t]
        assert (got["estimate"], got["low"], got["high"]) == pytest.approx(
            (change[t]["change"], change[t]["change_low"], change[t]["change_high"]), abs=1e-12)
    assert F.estimate_f5(frame[frame["encoder"] == "after"]).n_used == 0


# ------------------------------------------------------------------------------- the verdicts page
def _finding(outcome="reproduced", **kw) -> dict:
    return {"claim": "F1", "outcome": outcome, "estimate": 0.4, "low": 0.3, "high": 0.5, "mde": 0.07, "n_used": 9,
            "n_left_out": 0, "reason": "the interval lies above 0", "details": {}, "n_patients": 500,
            "left_out_reasons": {}, "records_first": "2026-12-02T07:00:00+0000", "records_last": "2026-12-02T09:00:00+0000",
            "records_after_protocol": 0, "n_records": 9, "rule_committed": "2026-12-03T13:38:25+00:00",
            "exploratory": True, **kw}


def _judged() -> dict:
    from covid_lib.analysis.verdicts import CLAIMS

    claim = {"outcome": "inconclusive", "estimate": float("nan"), "low": float("nan"), "high": float("nan"),
             "mde": float("nan"), "n_used": 0, "n_left_out": 0, "reason": "", "details": {}, "left_out_reasons": {},
             "n_records": 0, "records_after_protocol": None}
    findings = {f: {**_finding(), "claim": f} for f in P.FINDINGS}
    findings["F4"] = {**_finding("inconclusive", estimate=float("nan"), low=float("nan"), high=float("nan"),
                                 mde=float("nan"), n_used=0, n_records=0, records_after_protocol=None,
                                 reason="not evaluated: checkpoints not cached here"), "claim": "F4",
                      "not_evaluated": True}
    return {"protocol_hash": P.protocol_hash(), "protocol_version": P.PROTOCOL_VERSION, "protocol_committed": None,
            "scales": {"full": {"label": "whole set", "claims": {c: {**claim, "claim": c} for c in CLAIMS}}},
            "findings": findings}


def test_verdicts_page_lists_findings_after_the_claims_with_the_exploratory_label():
    from covid_lib.report.judge import verdicts_markdown

    text = verdicts_markdown(_judged())
    findings = text[text.index("## Findings beyond the paper"):]
    assert text.index(":::{dropdown} C6") < text.index("## Findings beyond the paper")
    assert "| **F1** " in findings and "{bdg-success}`reproduced`" in findings and "+0.40 [+0.30, +0.50]" in findings
    assert "exploratory: rule fixed after 9 of the 9 records it judges" in findings
    assert "{bdg-secondary}`not evaluated`" in findings and "checkpoints not cached here" in findings
    assert P.rule_text(P.rule("F3")) in findings and "2026-12-03T13:38:25+00:00" in findings


def test_chapter_block_and_answer_box_of_a_finding():
    from covid_lib.report import judge

    data = _judged()
    text = judge.claim_markdown("F1", data)
    assert text.index("**The rule**") < text.index("+0.400 [+0.300, +0.500]")
    assert "fixed before the runs" not in text and "committed 2026-12-03T13:38:25+00:00" in text
    assert "exploratory: rule fixed after 9 of the 9 records" in text
    v = judge.protocol_verdict("F1", data)
    assert v.verdict == "reproduced" and "exploratory" in v.deciding and v.evidence == "11_unseen"
    v4 = judge.protocol_verdict("F4", data)
    assert v4.verdict == "inconclusive" and "checkpoints not cached here" in v4.deciding
    stale = judge.protocol_verdict("F1", {**data, "protocol_hash": "other"})
    assert stale.verdict == "inconclusive" and "not judged" in stale.deciding
    assert judge.exploratory_text(_finding(records_after_protocol=9)) == \
        "confirmatory: all 9 records it judges were made after the rule"


def test_answer_box_of_a_finding_names_the_work_it_follows(monkeypatch):
    from covid_lib.report import common, judge

    calls = []
    monkeypatch.setattr(common, "show_answer", lambda q, a, s, kind: calls.append((q, a, s, kind)))
    common.show_verdict_answer("Does it?", judge.protocol_verdict("F1", _judged()), answer="More.", how_sure="Caveat.")
    _, answer, sure, kind = calls[0]
    assert answer.startswith("F1 is **reproduced**: ") and answer.endswith(" More.") and kind == "reproduced"
    assert "What differs from the work it follows:" in sure and sure.endswith(" Caveat.")
