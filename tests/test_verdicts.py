"""Verdict records, their display in a chapter and the generated summary page."""

from __future__ import annotations

import nbformat
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
    table = verdicts.verdict_table([_verdict("C3"), _verdict("C1")])
    assert table["claim"].tolist() == ["C1", "C3"]
    assert "*Decided by:* Δ 0.1" in verdicts.as_markdown(_verdict())


def test_summary_page_collects_the_verdicts_shown_in_published_chapters(tmp_path):
    v = _verdict("C2", "not reproduced")
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("verdicts.show(v)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": verdicts.as_markdown(v)},
                                           metadata={verdicts.METADATA_KEY: v.__dict__})]
    nb.cells.append(cell)
    nbformat.write(nb, tmp_path / "04_pretraining.ipynb")
    table = pages.verdicts_table(tmp_path)
    rows = {line.split("**")[1]: line for line in table.splitlines()[2:]}
    assert set(rows) == set(verdicts.CLAIMS)
    assert "**not reproduced**" in rows["C2"] and "[04_pretraining](chapters/04_pretraining.ipynb)" in rows["C2"]
    assert "\\| paired" in rows["C2"], "a pipe inside a cell is escaped"
    assert "not decided yet" in rows["C1"]


def test_verdicts_page_is_in_sync():
    text = pages.VERDICTS_PAGE.read_text()
    assert pages.render_page(text, pages.PAGE_BLOCKS[pages.VERDICTS_PAGE]) == text, "run: python -m covid_lib book sync"
