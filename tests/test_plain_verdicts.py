"""The clinicians' summary table (:mod:`covid_lib.report.plain`), on synthetic verdicts."""

from __future__ import annotations

import math

from covid_lib.report.plain import ANSWERS, QUESTIONS, evidence, plain_verdicts_markdown, why


def _verdict(outcome: str, estimate: float = 0.1, low: float = 0.05, high: float = 0.15, *, used: int = 8,
             left: dict | None = None, mde: float = 0.08, **extra) -> dict:
    left = left or {}
    return {"outcome": outcome, "estimate": estimate, "low": low, "high": high, "mde": mde, "n_used": used,
            "n_left_out": sum(left.values()), "left_out_reasons": left, "details": {}, **extra}


def _data(full: dict, early: dict | None = None) -> dict:
    early = early or {c: _verdict("inconclusive") for c in QUESTIONS}
    return {"protocol_hash": "abc123", "scales": {"563": {"claims": early}, "full": {"claims": full}}}


def _row(page: str, claim: str) -> list[str]:
    line = next(x for x in page.splitlines() if x.startswith(f"| **{claim}.**"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_each_outcome_reads_as_its_answer_with_the_deciding_interval():
    outcomes = ["reproduced", "not reproduced", "no detectable effect", "inconclusive", "reproduced", "reproduced"]
    full = {c: _verdict(o, -0.04 if o == "not reproduced" else 0.1) for c, o in zip(QUESTIONS, outcomes)}
    page = plain_verdicts_markdown(_data(full))
    c1, c2, c3, c4 = (_row(page, c) for c in ("C1", "C2", "C3", "C4"))
    assert c1[1] == ANSWERS["reproduced"] and c1[2] == "+0.10 [+0.05, +0.15]"
    assert c2[1] == ANSWERS["not reproduced"] and c2[2].startswith("-0.04")
    assert c3[1].startswith(ANSWERS["no detectable effect"]) and "0.08 or more" in c3[1]
    assert c4[1].startswith(ANSWERS["inconclusive"]) and "interval is too wide" in c4[1]
    assert "Every planned comparison has its runs" in page and "Provisional" not in page


def test_missing_runs_make_the_page_provisional_and_are_counted_per_claim():
    full = {c: _verdict("reproduced") for c in QUESTIONS}
    full["C3"] = _verdict("inconclusive", used=4, left={"missing": 6, "collapsed": 2})
    page = plain_verdicts_markdown(_data(full))
    assert "too few usable models" in _row(page, "C3")[1]
    assert _row(page, "C3")[3] == "4 of 12 usable (2 collapsed, 6 still to be run)"
    assert "**Provisional:** 6 comparisons still wait" in page


def test_a_claim_without_a_usable_estimate_at_the_whole_set_falls_back_to_563_and_says_so():
    full = {c: _verdict("reproduced") for c in QUESTIONS}
    full["C4"] = {"outcome": "inconclusive", "not_evaluated": True, "estimate": math.nan, "low": math.nan,
                  "high": math.nan, "n_used": 0, "n_left_out": 0, "left_out_reasons": {}}
    early = {c: _verdict("inconclusive") for c in QUESTIONS}
    early["C4"] = _verdict("no detectable effect", 0.01, -0.05, 0.06, mde=0.12)
    row = _row(plain_verdicts_markdown(_data(full, early)), "C4")
    assert row[1].startswith(ANSWERS["no detectable effect"]) and "563 ChestXRay images" in row[1]
    assert row[2] == "+0.01 [-0.05, +0.06]"


def test_a_claim_of_several_contrasts_names_each_part():
    parts = {"ResNet-50": _verdict("inconclusive"), "Conv8": _verdict("reproduced")}
    d = _verdict("inconclusive", used=3, left={"collapsed": 5}, details={"parts": parts})
    assert why(d) == "too few usable models; ResNet-50: cannot tell yet, Conv8: yes"
    assert evidence(d) == "3 of 8 usable (5 collapsed)"


def test_no_verdicts_yet_says_how_to_judge():
    assert "book judge" in plain_verdicts_markdown({})
