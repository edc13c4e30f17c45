"""The critical-reading checklist: items, evidence, ratings of the papers, and the numbers behind it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from covid_lib.analysis import checklist as cl
from covid_lib.report import sources as rs
from covid_lib.report import checklist as rc
from covid_lib.analysis.checklist_ratings import RATINGS
from covid_lib.paths import REPO_ROOT
from covid_lib.report.records import RECORD_COLUMNS

PAPERS_DIR = Path("/work/shared/papers")
CHAPTER = REPO_ROOT / "notebooks" / "14_checklist.py"


def _chapter_stems() -> set[str]:
    return {p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")}


# ------------------------------------------------------------------------------------ the items
def test_every_item_has_evidence_in_an_existing_or_named_chapter_and_a_measure():
    allowed = _chapter_stems()
    assert len({i.key for i in cl.ITEMS}) == len(cl.ITEMS) >= 10
    for i in cl.ITEMS:
        assert i.question.endswith("?") and len(i.why.split()) >= 10, i.key
        for doc in (i.evidence.doc, *i.evidence.also):
            assert doc in allowed, f"{i.key}: evidence {doc!r} is no chapter"
        assert i.evidence.shows.strip()
        assert callable(getattr(rc, i.evidence.measure, None)), f"{i.key}: no function {i.evidence.measure}"


def test_the_chapter_links_every_evidence_chapter():
    text = CHAPTER.read_text()
    linked = set(re.findall(r"\{doc\}`([^`]+)`", text))
    for i in cl.ITEMS:
        assert {i.evidence.doc, *i.evidence.also} <= linked, i.key
    assert "14_checklist" in (REPO_ROOT / "_toc.yml").read_text()


def test_item_and_paper_lookup():
    assert cl.item("seeds").evidence.doc == "05_cross_dataset"
    assert cl.paper("ours").file is None
    with pytest.raises(KeyError):
        cl.item("nope")


# ---------------------------------------------------------------------------------- the ratings
def test_every_paper_rates_every_item_once_with_a_justification():
    ratings = cl.ratings()
    assert len(ratings) == len(cl.PAPERS) * len(cl.ITEMS)
    for r in ratings:
        assert r.level in cl.LEVELS and r.note.strip() and r.where.strip(), (r.paper, r.item)
    c = cl.Checklist()
    for p in cl.PAPERS:
        for i in cl.ITEMS:
            assert c.rating(p.key, i.key).item == i.key


def test_a_missing_or_doubled_rating_is_refused(monkeypatch):
    import covid_lib.analysis.checklist_ratings as cr

    monkeypatch.setattr(cr, "RATINGS", RATINGS[1:])
    with pytest.raises(ValueError, match="missing"):
        cl.ratings()
    monkeypatch.setattr(cr, "RATINGS", RATINGS + RATINGS[:1])
    with pytest.raises(ValueError):
        cl.ratings()


def test_a_rating_needs_a_known_level_and_a_note():
    with pytest.raises(ValueError):
        cl.Rating("ours", "seeds", "maybe", "x", "a note")
    with pytest.raises(ValueError):
        cl.Rating("ours", "seeds", "yes", "x", "  ")


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.mark.skipif(not PAPERS_DIR.is_dir(), reason="the papers' texts are not here")
def test_every_quote_is_in_the_text_it_is_attributed_to():
    texts = {p.key: _norm((PAPERS_DIR / p.file).read_text()) for p in cl.PAPERS if p.file}
    texts["code"] += " " + _norm((PAPERS_DIR / "README.md").read_text())  # what the code does
    quoted = 0
    for r in cl.ratings():
        if r.paper == "ours":
            assert not r.quote, "this book's ratings rest on its chapters, not on quotes"
            continue
        if r.quote:
            quoted += 1
            assert _norm(r.quote) in texts[r.paper], (r.paper, r.item, r.quote)
        else:  # no quote only where the text says nothing
            assert r.level == "not reported", (r.paper, r.item)
    assert quoted >= 30


def test_the_ratings_say_what_the_papers_say():
    """A few ratings that a careless reading would get wrong."""
    c = cl.Checklist()
    assert c.rating("code", "patient_split").level == "no"  # train_test_split by image
    assert c.rating("benahmed2021", "unseen_source").level == "yes"  # AUC 0.38 on unseen sources
    assert c.rating("tartaglione2020", "cross_dataset").level == "yes"  # Table II
    assert c.rating("kth2020", "unseen_source").level == "not reported"
    assert c.rating("ours", "saliency").level != "yes"  # chapter 12 not executed yet


def test_ratings_matrix_and_figure():
    m = rc.ratings_matrix()
    assert m.shape == (len(cl.ITEMS), len(cl.PAPERS))
    assert set(np.unique(m.to_numpy())) <= set(cl.LEVELS)
    counts = rc.level_counts()
    assert (counts.sum(axis=1) == len(cl.ITEMS)).all()
    fig = rc.plot_ratings(m)
    assert [t.get_text() for t in fig.axes[0].texts] == list(m.to_numpy().ravel())
    assert rc.justification_table("patient_split").shape[0] == len(cl.PAPERS)
    html = rc.styled_ratings(m).to_html()
    assert rc.LEVEL_COLORS["yes"] in html


# ------------------------------------------------------------------------------ the measurements
@pytest.mark.parametrize("n", [5, 10, 15])
def test_perfect_score_intervals_match_statsmodels(n):
    b = rc.perfect_score_bounds(n)
    np.testing.assert_allclose(b["wilson"], proportion_confint(n, n, alpha=0.05, method="wilson"), atol=1e-9)
    np.testing.assert_allclose(b["clopper_pearson"], proportion_confint(n, n, alpha=0.05, method="beta"), atol=1e-9)


def test_perfect_score_on_fifteen_images():
    m = rc.perfect_score_interval(10, 5)
    low = proportion_confint(15, 15, method="wilson")[0]
    assert m.measured and m.value == pytest.approx(low) and m.value < 0.81
    spec_low = proportion_confint(5, 5, method="wilson")[0]
    assert f"[{spec_low:.2f}, 1.00]" in m.text and "15/15" in m.text


def test_not_yet_measured_when_records_or_tables_are_missing():
    missing = pd.DataFrame([{"arch": "resnet18", "pretrain": "none", "composition": c, "seed": 0, "pipeline": "paper",
                             "precision": "bf16", "run_id": f"r{k}", "status": "missing", "path": None}
                            for k, c in enumerate(["CORDA", "CORDA&ChestXRay"])], columns=RECORD_COLUMNS)
    results = [rc.cross_dataset_gap(missing), rc.cross_dataset_gap(None), rc.seed_spread(None),
               rc.ablation_verdict(None), rc.ablation_verdict(pd.DataFrame({"diff": [np.nan], "diagonal": [False]})),
               rc.saliency_inside_lungs(None), rc.unseen_source_gap(pd.DataFrame()),
               rc.source_probe_accuracy(None), rc.metadata_baseline_auc(None), rc.patient_split_leakage(None),
               rc.source_label_confounding({})]
    for m in results:
        assert not m.measured and m.value is None and m.status == rc.NOT_YET
        assert m.text.startswith(rc.NOT_YET + ": ")
    table = rc.checklist_table({"test_size": rc.perfect_score_interval()})
    assert len(table) == len(cl.ITEMS)
    assert (table["in this book"].str.startswith(rc.NOT_YET)).sum() == len(cl.ITEMS) - 1


def test_hooks_read_the_tables_of_the_chapters_being_written():
    sal = pd.DataFrame({"composition": ["CORDA", "CORDA"], "group": ["trained on", "unseen"], "share": [0.4, 0.8],
                        "share_low": [0.3, 0.7], "share_high": [0.5, 0.9], "baseline": [0.35, 0.35],
                        "did_not_learn": [False, True]})
    m = rc.saliency_inside_lungs(sal)
    assert m.measured and m.value == pytest.approx(0.6)
    assert "CORDA · trained on 0.40 [0.30, 0.50] (baseline 0.35)" in m.text
    assert "unseen 0.80 [0.70, 0.90] (baseline 0.35) (did not learn)" in m.text
    unseen = pd.DataFrame({"split": ["1", "2"], "variant": ["a", "b"], "status": ["done", "did not learn"],
                           "drop": [0.4, np.nan], "drop_low": [0.2, np.nan], "drop_high": [0.6, np.nan]})
    m = rc.unseen_source_gap(unseen)
    assert m.value == pytest.approx(0.4) and m.text.endswith("1 · a 0.40 [0.20, 0.60]")
    assert not rc.unseen_source_gap(unseen.assign(drop=np.nan)).measured
    with pytest.raises(KeyError, match="inside"):
        rc.saliency_inside_lungs(sal, value="inside")


def test_source_probe_reads_the_paper_step():
    table = pd.DataFrame({"step": ["raw", "lung-masked (paper)"], "balanced_accuracy": [0.9, 0.7],
                          "balanced_accuracy_low": [0.8, 0.6], "balanced_accuracy_high": [1.0, 0.8],
                          "chance balanced accuracy": [0.25, 0.25], "n test": [40, 40]})
    m = rc.source_probe_accuracy(table)
    assert m.value == 0.7 and "0.70 [0.60, 0.80]" in m.text and "chance 0.25" in m.text


def _manifest() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(40), 3)
    return pd.DataFrame({"source": "cohen", "frontal": True, "patient_id": patients.astype(str),
                         "image_id": np.arange(len(patients)).astype(str),
                         "covid": pd.array(patients % 2, dtype="Int8"), "x": rng.random(len(patients))})


def test_patient_split_leakage_is_the_data_chapters_audit():
    m = _manifest()
    got = rc.patient_split_leakage(m, seeds=range(3))
    want = rs.image_level_split_leakage(m, label="covid", seeds=range(3))["share_leaked"].mean()
    assert got.value == pytest.approx(want) and got.value > 0.5  # three images per patient: most leak
    by_patient = m.assign(split=np.where(m["patient_id"].astype(int) < 10, "test", "train"))
    got = rc.patient_split_leakage(m, by_patient, seeds=range(3))
    assert "under the book's patient split, 0% of" in got.text
    assert rc.patient_overlap(by_patient) == 0.0
    by_image = m.assign(split=np.where(m["image_id"].astype(int) % 3 == 0, "test", "train"))
    assert rc.patient_overlap(by_image) == 1.0  # every test image has its patient's other two in training
    one = m.drop_duplicates("patient_id")
    assert rc.patient_split_leakage(one, seeds=range(3)).value == 0.0
    other = m.assign(source="nih")
    assert not rc.patient_split_leakage(other).measured


def test_source_label_share():
    rows = pd.DataFrame({"source": ["cohen"] * 4 + ["kermany"] * 2, "label": [1, 1, 0, 0, 0, 0]})
    assert rc.source_label_share(rows) == pytest.approx(2 / 6)
    assert rc.source_label_share(rows[rows["source"] == "cohen"]) == 0.0
    m = rc.source_label_confounding({"A": rows, "B": rows[rows["source"] == "cohen"]})
    assert m.value == pytest.approx(2 / 6) and "A 33%" in m.text and "B 0%" in m.text


def test_metadata_baseline_uses_the_own_test_sets():
    table = pd.DataFrame({"composition": ["A", "A", "B", "B"], "test_set": ["A", "B", "A", "B"],
                          "auc": [0.9, 0.1, 0.2, 0.7], "auc_low": [0.8, 0.0, 0.1, 0.6],
                          "auc_high": [1.0, 0.2, 0.3, 0.8]})
    m = rc.metadata_baseline_auc(table)
    assert m.value == pytest.approx(0.8) and "A 0.90 [0.80, 1.00]" in m.text and "0.10" not in m.text


def test_seed_spread_from_long_rows():
    rows = []
    for seed, auc in enumerate([0.70, 0.80, 0.90]):
        rows.append({"arch": "resnet18", "pretrain": "none", "composition": "CORDA", "test_set": "CORDA",
                     "seed": seed, "status": "done", "auc": auc, "auc_low": auc - 0.1, "auc_high": auc + 0.1})
    long = pd.DataFrame(rows)
    m = rc.seed_spread(long)
    assert m.value == pytest.approx(np.std([0.7, 0.8, 0.9], ddof=1))
    assert "seeds 0, 1, 2" in m.text and "0.20 wide" in m.text
    assert not rc.seed_spread(long[long["seed"] == 0]).measured  # one seed: no spread


def test_our_ratings_point_at_chapters():
    allowed = _chapter_stems()
    for r in cl.ratings():
        if r.paper == "ours":
            stems = re.findall(r"\b\d\d_[a-z_]+", r.where)
            assert stems and set(stems) <= allowed, (r.item, r.where)
