"""A critical-reading checklist for papers that detect COVID-19 on chest X-rays, as data.

Each :class:`Item` asks one question a reader should put to such a paper, says in a sentence or
two why it matters, and names its :class:`Evidence` in this book: the chapter that shows the
hurdle, what in that chapter to look at, and the function of :mod:`covid_lib.report.checklist`
that computes the number behind it from data or run records (never typed in). The hurdles are
those of Tartaglione et al. 2020 (Sec. II "potential issues", Sec. III-C, Sec. IV) and of Ben
Ahmed et al. 2021 (seen against unseen sources, Grad-CAM).

How the three papers, the main paper's code and this book answer each item are judgements from
reading, not metrics: they live in :mod:`covid_lib.analysis.checklist_ratings`, each with a short quote of
the text it rests on (:func:`ratings`).

Example:
    >>> [i.key for i in ITEMS][:3]
    ['patient_split', 'one_source_per_class', 'metadata_baseline']
    >>> item("test_size").evidence.doc
    '07_small_test'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from covid_lib.analysis.checklist_ratings import LEVELS, Rating  # noqa: F401 (re-exported)
from covid_lib.analysis import checklist_ratings

#: The ratings a paper can get on an item. "no": the text shows the practice absent or contrary
#: (e.g. a split by image, a metric on 15 images without an interval); "not reported": the text
#: neither does it nor says whether it was done.


@dataclass(frozen=True)
class Evidence:
    """Where this book shows the hurdle and measures it.

    Attributes:
        doc: the chapter's file stem (``05_cross_dataset``), linked as ``{doc}`` from the chapters.
        shows: what in that chapter to look at (a section, table or figure).
        measure: the name of the function of :mod:`covid_lib.report.checklist` that computes the
            number; it returns a :class:`covid_lib.report.checklist.Measurement`, "not yet
            measured" when its records or tables are missing.
        also: further chapters with related evidence.
    """

    doc: str
    shows: str
    measure: str
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class Item:
    """One question of the checklist."""

    key: str
    short: str
    question: str
    why: str
    evidence: Evidence


@dataclass(frozen=True)
class Paper:
    """A text rated against the checklist (``file`` under ``/work/shared/papers``, or ``None``)."""

    key: str
    label: str
    citation: str | None
    file: str | None
    what: str


ITEMS: tuple[Item, ...] = (
    Item("patient_split", "patient-level splits",
         "Are training and test images split by patient, so that no patient has images on both sides?",
         "Public COVID-19 collections hold several images per patient; split by image, the test set partly "
         "measures whether the model recognises a patient it has seen (the paper's \"patient's lung shape\").",
         Evidence("01_data", "\"What splitting by image would have done\" and the leakage audit",
                  "patient_split_leakage")),
    Item("one_source_per_class", "both classes from the same sources",
         "Do COVID+ and COVID- images come from the same sources, or does each class have a source of its own?",
         "When every COVID- image comes from a source without COVID+ images, the source is the label, and a "
         "classifier can score highly by recognising the dataset.",
         Evidence("03_confounders", "what each composition's labels travel with (source, view, era, age)",
                  "source_label_confounding", also=("01_data",))),
    Item("metadata_baseline", "metadata-only baseline",
         "Is the model compared with a classifier that never sees a pixel (view, year, age, sex, image size, "
         "format)?",
         "If metadata alone reach the model's score, the score needs no lung; without such a baseline a high "
         "AUC cannot be read as disease detection.",
         Evidence("03_confounders", "the metadata-only classifier scored on every test set",
                  "metadata_baseline_auc", also=("05_cross_dataset",))),
    Item("test_size", "test-set size and intervals",
         "Is the test set large enough, and does every metric carry a confidence interval?",
         "A perfect score on 15 images is compatible with a mediocre model; without an interval the reader "
         "cannot tell a result from luck.",
         Evidence("07_small_test", "\"How wide is 'perfect'?\": the intervals of a perfect score on 15 images",
                  "perfect_score_interval")),
    Item("source_probe", "source still readable after pre-processing",
         "After the pre-processing that is meant to remove dataset biases, was it checked that the source "
         "can no longer be read from the images?",
         "Histogram equalisation and lung masking are claimed to remove biases; only a measurement on the "
         "processed images says whether they do.",
         Evidence("10_shortcuts", "the source-identification probe at each step of the chain",
                  "source_probe_accuracy", also=("08_features",))),
    Item("saliency", "saliency inside the lungs, measured",
         "Do saliency maps (CAM, Grad-CAM) fall inside the lung fields, and is that measured rather than "
         "judged from a few pictures?",
         "A classifier that looks outside the lungs (text, devices, borders) uses shortcuts; a handful of "
         "chosen heatmaps can show anything.",
         Evidence("12_saliency", "the share of each saliency map inside the lung mask",
                  "saliency_inside_lungs")),
    Item("unseen_source", "test on an unseen source",
         "Is the model tested on images from a source (hospital, collection) no training image came from?",
         "Held-out images of the training sources share their confounders; only an unseen source tests "
         "whether what was learned transfers.",
         Evidence("11_unseen", "scores on seen against unseen sources", "unseen_source_gap")),
    Item("cross_dataset", "cross-dataset testing",
         "Is every model tested on the test sets of the other compositions, not only its own?",
         "Borrowing COVID- images from another dataset gives high scores on the composition's own test set "
         "that collapse elsewhere (the paper's Table II).",
         Evidence("05_cross_dataset", "the Table II heatmaps and the diagonal gap (claim C1)",
                  "cross_dataset_gap")),
    Item("seeds", "repeated seeds beside intervals",
         "Are training runs repeated over seeds, and is the spread over seeds reported beside the interval "
         "over test images?",
         "One training run is one draw: the interval over test images does not cover what another seed "
         "would have learned, and on small data the two can be of the same size.",
         Evidence("05_cross_dataset", "\"Seeds\": mean ± SD over the seeds that learned beside seed 0's interval",
                  "seed_spread",
                  also=("06_depth", "07_small_test"))),
    Item("preprocessing_ablation", "pre-processing ablation",
         "Is the pre-processing compared with none, on the same test images, with a paired test?",
         "The paper's case for its chain rests on one pair of numbers measured on different test sets; a "
         "paired comparison on the same images says whether the chain helps.",
         Evidence("09_ablation", "no pre-processing against the paper's chain, paired (claim C6)",
                  "ablation_verdict")),
)

PAPERS: tuple[Paper, ...] = (
    Paper("tartaglione2020", "Tartaglione et al. 2020", "tartaglione2020unveiling", "001_6079b25e48969089.txt",
          "the main paper"),
    Paper("code", "their code", None, "004_4b00383bcf339f08.txt",
          "the main paper's code repository: its README, and what the code does as summarised in "
          "papers/README.md"),
    Paper("benahmed2021", "Ben Ahmed et al. 2021", "benahmed2021deep", "003_f84fe140e76907d7.txt",
          "confounders, seen and unseen sources"),
    Paper("kth2020", "KTH report", "panagiotakopoulos2020transfer", "002_d944365f2610fdbf.txt",
          "transfer learning, CAM, t-SNE and SOM"),
    Paper("ours", "this book", None, None, "our reproduction, rated by the same questions"),
)

#: The shortfalls of this study that bear on several items (intro page, "What is reproduced").
OUR_SHORTFALLS: tuple[str, ...] = (
    "CORDA is private: our CORDA is a stand-in, the Cohen collection outside the April-2020 snapshot "
    "(many hospitals and figures in papers, COVID- images mostly dated before 2020)",
    "no ImageNet weights: encoders start from random weights, and the pneumonia pre-training sets are "
    "subsets (about 560 images at the cpu profile)",
    "small test sets: under a hundred and fifty images per composition, 15 for COVID-ChestXRay",
    "the unseen hospital (Hannover) is all COVID+, so it measures sensitivity only",
)


def item(key: str) -> Item:
    """The item called ``key``."""
    for i in ITEMS:
        if i.key == key:
            return i
    raise KeyError(f"unknown checklist item {key!r}; choose from {', '.join(i.key for i in ITEMS)}")


def paper(key: str) -> Paper:
    """The paper called ``key``."""
    for p in PAPERS:
        if p.key == key:
            return p
    raise KeyError(f"unknown paper {key!r}; choose from {', '.join(p.key for p in PAPERS)}")


def ratings(given: tuple[Rating, ...] | None = None) -> tuple[Rating, ...]:
    """``given`` (default: every rating, :data:`covid_lib.analysis.checklist_ratings.RATINGS`), checked to
    cover each paper x item once."""
    given = checklist_ratings.RATINGS if given is None else given
    seen = {(r.paper, r.item) for r in given}
    want = {(p.key, i.key) for p in PAPERS for i in ITEMS}
    if len(seen) != len(given) or seen != want:
        raise ValueError(f"ratings must rate every paper on every item once; missing {sorted(want - seen)}, "
                         f"unknown {sorted(seen - want)}")
    return given


@dataclass(frozen=True)
class Checklist:
    """The items, the papers and their ratings together (what the chapter displays)."""

    items: tuple[Item, ...] = ITEMS
    papers: tuple[Paper, ...] = PAPERS
    ratings: tuple[Rating, ...] = field(default_factory=ratings)

    def rating(self, paper_key: str, item_key: str) -> Rating:
        """The rating of one paper on one item."""
        return next(r for r in self.ratings if r.paper == paper_key and r.item == item_key)
