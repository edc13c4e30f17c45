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


def test_protocol_commit_time_asks_git_once_per_hash(monkeypatch):
    """judge() wants the time once per scale and once more for the file: git answers once."""
    from covid_lib.report import verdicts_file

    calls = []
    # what `git log --format=%ct` prints: 2024-05-02T10:00Z, then the first commit, 2024-05-01T09:00Z
    monkeypatch.setattr(verdicts_file, "commit_times", lambda *a: calls.append(a) or
                        ["2024-05-02T10:00:00+00:00", "2024-05-01T09:00:00+00:00"])
    verdicts_file._commit_time.cache_clear()
    try:
        times = [verdicts_file.protocol_commit_time() for _ in range(3)] + [verdicts_file.protocol_commit_time("other")]
        assert times == ["2024-05-01T09:00:00+00:00"] * 4  # the first commit that carries the hash
        assert len(calls) == 2  # the current protocol's hash once, "other" once
    finally:
        verdicts_file._commit_time.cache_clear()  # no fake answer left for later tests
