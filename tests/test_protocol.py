"""The decision protocol (issue 16): rules as generated text and as code agree, the MDE is the
closed form, the hash follows every field, and a protocol change that is not re-synced is caught."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from covid_lib.analysis import protocol as P
from covid_lib.book import pages


def _rule(kind="directional", margin=0.0):
    return replace(P.PROTOCOL["C1" if kind == "directional" else "C3"], kind=kind, margin=margin)


def test_mde_is_the_normal_closed_form():
    assert P.mde(1.0) == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert P.mde(0.02) == pytest.approx(0.02 * 2.801585, rel=1e-5)


@pytest.mark.parametrize("est,low,high,se,outcome", [
    (0.10, 0.02, 0.18, 0.04, "reproduced"),
    (-0.10, -0.18, -0.02, 0.04, "not reproduced"),
    (0.00, -0.05, 0.05, 0.03, "no detectable effect"),   # MDE 0.084 > high
    (0.05, -0.03, 0.13, 0.04, "inconclusive"),          # MDE 0.112 <= high? no: 0.13 >= 0.112
])
def test_directional_rule_outcomes(est, low, high, se, outcome):
    d = P.decide(_rule(), est, low, high, se, n_used=10, n_left_out=0)
    assert d.outcome == outcome and d.mde == pytest.approx(P.mde(se))


@pytest.mark.parametrize("low,high,outcome", [(-0.03, 0.04, "reproduced"), (0.06, 0.10, "not reproduced"),
                                              (0.01, 0.07, "inconclusive")])
def test_null_rule_is_symmetric_around_its_margin(low, high, outcome):
    d = P.decide(_rule("null", 0.05), (low + high) / 2, low, high, 0.02, n_used=10, n_left_out=0)
    assert d.outcome == outcome


def test_too_few_or_too_many_left_out_decide_nothing():
    r = _rule()
    assert P.decide(r, 0.2, 0.1, 0.3, 0.05, n_used=2, n_left_out=0).outcome == "inconclusive"
    assert P.decide(r, 0.2, 0.1, 0.3, 0.05, n_used=4, n_left_out=5).outcome == "inconclusive"
    assert P.decide(r, 0.2, 0.1, 0.3, 0.05, n_used=5, n_left_out=5).outcome == "reproduced"
    assert P.decide(r, 0.2, np.nan, np.nan, 0.05, n_used=5, n_left_out=0).outcome == "inconclusive"


def test_rule_text_names_the_constants_decide_uses():
    text = P.rule_text(P.PROTOCOL["C3"])
    assert f"{P.PROTOCOL['C3'].margin:+.2f}" in text and f"{P.MIN_PAIRS} usable" in text
    assert "no detectable effect" in P.rule_text(P.PROTOCOL["C1"]).lower()


def test_combined_claim_needs_every_part():
    ok = P.decide(_rule("null", 0.05), 0.0, -0.02, 0.02, 0.01, n_used=5, n_left_out=0)
    bad = P.decide(_rule("null", 0.05), 0.1, 0.07, 0.13, 0.01, n_used=5, n_left_out=0)
    mid = P.decide(_rule("null", 0.05), 0.04, 0.02, 0.07, 0.01, n_used=5, n_left_out=0)
    assert P.combine("C3", {"a": ok, "b": ok}).outcome == "reproduced"
    assert P.combine("C3", {"a": ok, "b": bad}).outcome == "not reproduced"
    assert P.combine("C3", {"a": ok, "b": mid}).outcome == "inconclusive"


def test_hash_follows_every_field(monkeypatch):
    before = P.protocol_hash()
    assert before == P.protocol_hash() and len(before) == 12
    monkeypatch.setitem(P.PROTOCOL, "C3", replace(P.PROTOCOL["C3"], margin=0.04))
    assert P.protocol_hash() != before
    monkeypatch.setattr(P, "N_BOOT", 1000)
    assert P.protocol_hash() != before


def test_protocol_page_is_generated_from_the_code_and_a_change_is_caught(monkeypatch):
    assert pages.pages_out_of_date([pages.PROTOCOL_PAGE]) == []
    text = pages.PROTOCOL_PAGE.read_text()
    assert P.protocol_hash() in text and P.rule_text(P.PROTOCOL["C1"]) in text
    monkeypatch.setitem(P.PROTOCOL, "C1", replace(P.PROTOCOL["C1"], estimand="something else"))
    assert pages.pages_out_of_date([pages.PROTOCOL_PAGE]) == [pages.PROTOCOL_PAGE]


def _judged(hash_: str) -> dict:
    claim = {"claim": "C1", "outcome": "reproduced", "estimate": 0.2, "low": 0.1, "high": 0.3, "mde": 0.08,
             "n_used": 9, "n_left_out": 2, "reason": "the interval lies above 0", "details": {},
             "n_patients": 50, "left_out_reasons": {"collapsed": 2}, "records_first": "2026-12-03T08:00:00+0000",
             "records_last": "2026-12-03T09:00:00+0000", "records_after_protocol": 9, "n_records": 11}
    from covid_lib.analysis.verdicts import CLAIMS

    claims = {c: {**claim, "claim": c} for c in CLAIMS}
    return {"protocol_hash": hash_, "protocol_version": P.PROTOCOL_VERSION, "protocol_committed": "2026-12-03T07:50:00+00:00",
            "profile": "cpu", "scales": {"full": {"label": "whole set", "claims": claims}}}


def test_verdicts_markdown_shows_outcome_estimate_mde_and_left_out():
    from covid_lib.report.judge import verdicts_markdown

    text = verdicts_markdown(_judged(P.protocol_hash()))
    assert "| **C1** " in text and "{bdg-success}`reproduced`" in text and "| +0.20 [+0.10, +0.30] |" in text
    assert "**reproduced**: +0.200 [+0.100, +0.300], MDE 0.080; 9 used, 2 left out (2 collapsed)." in text
    assert P.protocol_hash() in text and "9 of them made after the protocol" in text
    glance = text.split(":::{dropdown}")[0]
    assert glance.index("| **C1** ") < glance.index("| **C6** ") and "MDE" not in glance  # the glance stays short


def test_the_verdicts_page_says_what_a_missing_comparison_is_only_where_there_is_one():
    from covid_lib.report.verdict_text import MISSING_NOTES, MISSING_WHY, verdicts_markdown

    data = _judged(P.protocol_hash())
    assert "*Missing:*" not in verdicts_markdown(data)  # only collapsed models left out
    data["scales"]["full"]["claims"]["C3"]["left_out_reasons"] = {"missing": 15, "collapsed": 2}
    text = verdicts_markdown(data)
    assert text.count("*Missing:*") == 1
    c3 = text[text.index(":::{dropdown} C3"):text.index(":::{dropdown} C4")]
    assert MISSING_WHY["full"] in c3 and MISSING_NOTES["C3"] in c3 and MISSING_WHY["563"] not in c3


def test_a_claim_of_several_contrasts_shows_each_part_and_why_comparisons_were_left_out():
    """C3's parts carry no reasons of their own: the claim's are named once, after the parts."""
    from covid_lib.report.verdict_text import _fmt

    part = {"outcome": "inconclusive", "estimate": 0.02, "low": -0.02, "high": 0.07, "mde": 0.06, "n_used": 10,
            "n_left_out": 20, "reason": "the interval includes the margin +0.05"}
    entry = {"details": {"parts": {"ResNet-50": part, "Conv8": {**part, "n_left_out": 2}}},
             "left_out_reasons": {"missing": 15, "collapsed": 7}}
    text = _fmt(entry)
    assert text.startswith("ResNet-50 **inconclusive**: +0.020 [-0.020, +0.070], MDE 0.060; 10 used, 20 left out;")
    assert text.endswith("(left out in all: 7 collapsed, 15 missing)") and text.count("left out in all") == 1
    assert "left out in all" not in _fmt({**entry, "left_out_reasons": {}})


def test_book_check_fails_on_verdicts_judged_under_another_protocol(tmp_path, monkeypatch, capsys):
    import json

    from covid_lib.report import verdicts_file
    from covid_lib.cli import build_parser

    stale = tmp_path / "verdicts.json"
    stale.write_text(json.dumps(_judged("000000000000")))
    monkeypatch.setattr(verdicts_file, "VERDICTS_JSON", stale)
    args = build_parser().parse_args(["book", "check", "--no-data-check"])
    assert args.func(args) == 1
    assert "judged under protocol 000000000000" in capsys.readouterr().err


def test_power_table_renders_undetectable_effects_in_words():
    from covid_lib.report.judge import POWER_ASSUMPTIONS, power_markdown

    row = {"test_set": "COVID-ChestXRay", "patients": 15, "images": 15, "positives": 10, "negatives": 5,
           "mde_auc": float("nan"), "mde_specificity": 0.31, "patients_for_auc_0.05": 622, "patients_for_auc_0.10": None}
    text = power_markdown({"power": [row], "power_assumptions": POWER_ASSUMPTIONS})
    assert "| COVID-ChestXRay | 15 | 15 (10 / 5) | none, even the largest | 0.310 | 622 | > 20,000 |" in text


def test_judge_scales_are_the_names_the_cli_offers():
    from covid_lib.names import SCALE_NAMES
    from covid_lib.report.judge import SCALES

    assert tuple(SCALES) == SCALE_NAMES


#: The digest of every rule as the version that fixed it left it (:func:`P.rule_digest`). A rule
#: that changes must say a newer ``since`` (and the page be committed again), never keep its date.
FIXED_RULES = {
    1: {"C1": "8e2ffafc5570", "C2": "200004c9f0ec", "C3": "c3168431e465", "C4": "c5589fcc7c8f",
        "C5": "c4630e43bb47", "C6": "9ba98964977a"},
    2: {"F1": "e85495c78388", "F2": "b49168338c12", "F3": "af80d7a6783c", "F4": "674d62f78136",
        "F5": "ede4603982ec"},
}


def test_every_rule_is_the_one_its_version_fixed():
    rules = {**P.PROTOCOL, **P.FINDINGS}
    assert sorted(rules) == sorted(k for v in FIXED_RULES.values() for k in v)
    for name, r in rules.items():
        assert P.rule_digest(r) == FIXED_RULES[r.since][name], f"{name} changed: give it a new version"
    assert P.rule_digest(replace(P.PROTOCOL["C1"], margin=0.01)) != FIXED_RULES[1]["C1"]


def test_version_1_hash_is_rebuilt_from_the_claims_it_fixed():
    """C1-C6 are exactly the rules of version 1: its hash, recomputed from today's rules with the
    fields later versions added removed, is the one committed on the protocol page of version 1."""
    import hashlib
    import json

    d = P.protocol_dict()
    d["constants"]["version"] = 1
    d.pop("findings")
    for v in d["claims"].values():
        for added in ("since", "paper", "min_used"):
            v.pop(added)
    assert hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12] == P.VERSION_HASHES[1]
    assert all(r.since == 1 for r in P.PROTOCOL.values())
    assert P.rule_version_hash(P.PROTOCOL["C2"]) == P.VERSION_HASHES[1]
    assert P.rule_version_hash(P.FINDINGS["F1"]) == P.protocol_hash()


def test_single_comparison_findings_decide_on_one_model():
    one = P.decide(P.FINDINGS["F3"], 0.11, 0.01, 0.23, 0.05, n_used=1, n_left_out=0)
    assert one.outcome == "reproduced"
    assert P.decide(P.FINDINGS["F1"], 0.11, 0.01, 0.23, 0.05, n_used=1, n_left_out=0).outcome == "inconclusive"
    assert P.decide(P.FINDINGS["F3"], float("nan"), float("nan"), float("nan"), 0.0, n_used=0,
                    n_left_out=1).outcome == "inconclusive"
    assert "Findings beyond the paper" in P.protocol_markdown() and "## F5" in P.protocol_markdown()
    with pytest.raises(KeyError, match="no rule"):
        P.rule("C9")


def test_coverage_projection_pairs_the_comparisons_the_judge_counts():
    """``scripts/project_coverage.py`` pairs C1's and C2's comparisons as the judge does: as many
    as ``book/verdicts.json`` counts used plus left out at the whole-set scale."""
    import importlib.util
    import json

    from covid_lib.paths import REPO_ROOT

    spec = importlib.util.spec_from_file_location("project_coverage", REPO_ROOT / "scripts" / "project_coverage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    judged = json.loads((REPO_ROOT / "book" / "verdicts.json").read_text())["scales"]["full"]["claims"]
    for claim, pairs in module.comparisons().items():
        assert len(pairs) == len(set(pairs)) == judged[claim]["n_used"] + judged[claim]["n_left_out"], claim
