"""Verdict records and the generated verdicts page."""

from __future__ import annotations

import pytest

from covid_lib.analysis import verdicts
from covid_lib.book import pages


def _verdict(claim="C2", verdict="inconclusive"):
    return verdicts.Verdict(claim, verdicts.CLAIMS[claim], verdict, "Δ 0.1 [-0.1, 0.3] | paired", "stand-in",
                            "04_pretraining")


def test_verdict_checks_its_fields():
    with pytest.raises(ValueError, match="verdict must be"):
        _verdict(verdict="maybe")
    with pytest.raises(ValueError, match="unknown claim"):
        verdicts.Verdict("C9", "x", "reproduced", "", "", "")
    assert _verdict(verdict="no detectable effect").verdict == "no detectable effect"


def test_verdicts_page_is_in_sync():
    text = pages.VERDICTS_PAGE.read_text()
    assert pages.render_page(text, pages.PAGE_BLOCKS[pages.VERDICTS_PAGE]) == text, "run: python -m covid_lib book sync"
