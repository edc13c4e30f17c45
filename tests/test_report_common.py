"""The reader's helpers of covid_lib.report.common: the answer box, the table styler and the glued numbers."""

import numpy as np
import pandas as pd

from covid_lib.report import common


def test_answer_box_is_a_myst_admonition_with_the_three_parts():
    box = common.answer_box("Does it work?", "Yes, AUC 0.81 [0.70, 0.93].", "The interval excludes 0.5.")
    text = box.data
    assert text.startswith("````{admonition} The answer, up front\n:class: important\n") and text.rstrip().endswith("````")
    assert "**Question.** Does it work?" in text and "**Answer.** Yes, AUC 0.81 [0.70, 0.93]." in text
    assert "**How sure.** The interval excludes 0.5." in text
    # a verdict picks the admonition's colour
    assert common.answer_box("q", "a", "s", kind="not reproduced").data.splitlines()[1] == ":class: warning"
    assert common.answer_box("q", "a", "s", kind="inconclusive").data.splitlines()[1] == ":class: note"


def test_show_answer_glues_the_box_and_displays_the_takeaway(monkeypatch):
    glued, shown = {}, []
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: glued.update({key: (value, display)}))
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    assert common.show_answer("q?", "a.", "sure.") is None
    value, displayed = glued[common.ANSWER_KEY]
    assert "**Answer.** a." in value.data and displayed is False
    assert shown and shown[0].data.startswith("> **Takeaway.** a.") and "**How sure.** sure." in shown[0].data
    # a list in the answer stays inside the quote
    assert common.takeaway("a:\n- x\n- y", "s").data.splitlines()[:3] == ["> **Takeaway.** a:", "> - x", "> - y"]


def test_styled_hides_the_index_formats_floats_and_joins_intervals():
    df = pd.DataFrame({"model": ["a", "b"], "auc": [0.8123, np.nan], "auc_low": [0.7, np.nan],
                       "auc_high": [0.93, np.nan], "n": [10, 12], "share": [0.5, 0.25], "ba": [0.5, 0.66666]})
    html = common.styled(df, intervals={"AUC": ("auc", "auc_low", "auc_high")}, percent=["share"]).to_html()
    assert "0.81 [0.70, 0.93]" in html and "auc_low" not in html and "auc_high" not in html
    assert "0.67" in html and "0.66666" not in html and "50%" in html and ">12<" in html
    assert "–" in html  # NaN
    assert 'class="row_heading' not in html  # no index column
    assert "white-space: normal" in html  # headers wrap
    # AUC takes the place of auc, between model and n
    columns = list(common.styled(df, intervals={"AUC": ("auc", "auc_low", "auc_high")}).data.columns)
    assert columns == ["model", "AUC", "n", "share", "ba"]


def test_styled_keeps_a_meaningful_index_as_a_column():
    df = pd.DataFrame({"auc": [0.5, 0.6]}, index=pd.Index(["x", "y"], name="source"))
    table = common.styled(df).data
    assert list(table.columns) == ["source", "auc"] and list(table["source"]) == ["x", "y"]
    unnamed = common.styled(pd.DataFrame({"v": [1.0]}, index=["profile"])).data
    assert list(unnamed.iloc[0]) == ["profile", 1.0]


def test_show_verdict_answer_takes_the_verdicts_words(monkeypatch):
    from covid_lib.analysis.verdicts import Verdict

    calls = []
    monkeypatch.setattr(common, "show_answer", lambda q, a, s, kind: calls.append((q, a, s, kind)))
    v = Verdict("C1", "the claim", "inconclusive", "gap +0.10 [-0.02, +0.20]", "smaller images", "05_cross_dataset")
    common.show_verdict_answer("Does it?", v)
    question, answer, sure, kind = calls[0]
    assert question == "Does it?" and "C1 is **inconclusive**: the claim" in answer
    assert "What decides it: gap +0.10 [-0.02, +0.20]" in sure and "smaller images" in sure and kind == "inconclusive"


def test_start_chapter_sets_the_display_and_returns_the_time():
    import time

    with pd.option_context("display.max_rows", 10):
        started = common.start_chapter(max_rows=123)
        assert pd.get_option("display.max_rows") == 123 and abs(started - time.time()) < 5


def test_chapter_records_reads_each_grid_once_and_counts_its_statuses(tmp_path, capsys):
    from covid_lib.report.records import chapter_records

    records = chapter_records(("table2",), "smoke", results=tmp_path)
    assert set(records) == {"table2"} and len(records["table2"]) and (records["table2"]["status"] == "missing").all()
    assert "table2 records (smoke profile" in capsys.readouterr().out


def test_label_panels_titles_the_first_row_and_labels_the_first_column():
    from matplotlib.figure import Figure

    axes = Figure().subplots(2, 3, squeeze=False)
    common.label_panels(axes, ["a", "b", "c"], ["row 1", "row 2"], fontsize=7)
    assert [ax.get_title() for ax in axes[0]] == ["a", "b", "c"] and [ax.get_title() for ax in axes[1]] == [""] * 3
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["row 1", "row 2"] and axes[0, 1].get_ylabel() == ""
    assert all(len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0 for ax in axes.ravel())
    assert axes[0, 0].title.get_fontsize() == 7


def test_glue_value_glues_the_formatted_text_without_showing_it(monkeypatch):
    glued = {}
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: glued.update({key: (value, display)}))
    assert common.glue_value("n-train", np.int64(3990)) is None  # nothing for a cell to show
    common.glue_value("gate", 0.93, "{:.2f}")
    common.glue_value("missing", None)
    assert glued == {"n-train": ("3,990", False), "gate": ("0.93", False), "missing": ("–", False)}
    # a string glued as text/plain reads without its quotes in the book ({glue:text} evaluates the repr)
    from myst_nb.core.variables import format_plain_text

    assert format_plain_text(repr(glued["n-train"][0]), "") == "3,990"


def test_glue_value_without_myst_nb_glues_nothing_and_raises_nothing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import myst_nb now raises ImportError
    assert common.glue_value("n", 15) is None


def test_glue_text_and_rounded_range():
    assert common.glue_text(15) == "15" and common.glue_text(5840) == "5,840" and common.glue_text(True) == "True"
    assert common.glue_text(float("nan")) == "–" and common.glue_text(0.05, "{:.0%}") == "5%"
    assert common.rounded_range([563, 564]) == "560" and common.rounded_range([563, 583]) == "560 to 580"
    assert common.rounded_range(pd.Series([25, 25, np.nan]), step=1) == "25" and common.rounded_range([]) == "–"
    assert common.rounded_range([3990], step=1) == "3,990"
