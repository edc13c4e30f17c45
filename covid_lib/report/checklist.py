"""The numbers behind the checklist (:mod:`covid_lib.analysis.checklist`), its tables and its figure.

Each item's :attr:`~covid_lib.analysis.checklist.Evidence.measure` names a function here. Each takes what
its chapter computes (a manifest, composed sets, run records, a probe or saliency table) and
returns a :class:`Measurement`: the number with its interval, computed by the report functions
the chapters themselves call, or "not yet measured" with the reason when the records or tables
it needs are missing. Nothing here trains a model, and no number is typed in.

The hooks :func:`saliency_inside_lungs` and :func:`unseen_source_gap` take the tables of the
chapters ``12_saliency`` and ``11_unseen`` as arguments, so that the checklist reads their
numbers once those chapters exist.

Example:
    >>> perfect_score_interval(10, 5).text.split(":")[0]
    'a perfect score on 15 images (10 COVID+, 5 COVID-)'
    >>> saliency_inside_lungs(None).measured
    False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from covid_lib.analysis import checklist as cl
from covid_lib.analysis.seeds import seed_summary
from covid_lib.metrics import format_estimate
from covid_lib.report.judge import protocol_verdict

NOT_YET = "not yet measured"
#: One colour per rating level, from good to absent (the same order as :data:`checklist.LEVELS`).
LEVEL_COLORS: dict[str, str] = {"yes": "#1a9850", "partly": "#fee08b", "no": "#d73027", "not reported": "#d9d9d9"}


@dataclass(frozen=True)
class Measurement:
    """The number behind one item: ``text`` says it in words with its interval; ``value`` is the
    headline number (None when not measured)."""

    item: str
    text: str
    value: float | None = None

    @property
    def measured(self) -> bool:
        return self.value is not None

    @property
    def status(self) -> str:
        return "measured" if self.measured else NOT_YET


def not_yet(item: str, why: str) -> Measurement:
    """A :class:`Measurement` that says it is not yet measured, and why."""
    return Measurement(item, f"{NOT_YET}: {why}")


# ----------------------------------------------------------------------------------- data-only
def patient_overlap(splits: pd.DataFrame) -> float:
    """The share of test images whose patient (``source``, ``patient_id``) also has an image in the
    train or validation split (``splits``: :func:`covid_lib.data.global_splits`; 0 for a patient split)."""
    key = splits["source"].astype(str) + ":" + splits["patient_id"].astype(str)
    test = splits["split"] == "test"
    return float(key[test].isin(set(key[~test])).mean()) if test.any() else float("nan")


def patient_split_leakage(manifest: pd.DataFrame | None, splits: pd.DataFrame | None = None, *,
                          seeds: Sequence[int] = range(10), test_size: float = 0.3) -> Measurement:
    """What a 70/30 split by image (the paper's code) does on the frontal Cohen images: the share of
    test images with another image of their patient in training (:func:`covid_lib.report.sources.image_level_split_leakage`,
    chapter 01's audit), beside the same share under the book's patient split (``splits``, when given).
    ``manifest``: loaded rows with ``source``, ``frontal``, ``covid``, ``patient_id``."""
    from covid_lib.report import sources as rs

    if manifest is None:
        return not_yet("patient_split", "no manifest given")
    rows = manifest[(manifest["source"] == "cohen") & manifest["frontal"].astype(bool)]
    if rows.empty:
        return not_yet("patient_split", "no frontal Cohen image in the manifest")
    leak = rs.image_level_split_leakage(rows, label="covid", test_size=test_size, seeds=seeds)
    share = leak["share_leaked"]
    text = (f"split by image, {share.mean():.0%} of the test images (range {share.min():.0%} to {share.max():.0%} "
            f"over {len(leak)} seeds) have another image of their patient in training ({len(rows)} frontal Cohen "
            "images)")
    if splits is not None:
        text += f"; under the book's patient split, {patient_overlap(splits):.0%} of all sources' test images do"
    return Measurement("patient_split", text, float(share.mean()))


def source_label_share(rows: pd.DataFrame) -> float:
    """The share of images whose source holds one label only within ``rows`` (``source``, ``label``):
    for those images the source alone gives the label away."""
    labels_per_source = rows.groupby("source")["label"].nunique()
    single = labels_per_source[labels_per_source == 1].index
    return float(rows["source"].isin(single).mean()) if len(rows) else float("nan")


def source_label_confounding(composed: Mapping[str, pd.DataFrame] | None) -> Measurement:
    """Per composition (:func:`covid_lib.data.compose`), the share of its images whose source holds a
    single label (:func:`source_label_share`); the headline is the largest share."""
    if not composed:
        return not_yet("one_source_per_class", "no composed set given")
    shares = {name: source_label_share(rows) for name, rows in composed.items()}
    worst = max(shares, key=shares.get)
    parts = ", ".join(f"{name} {s:.0%}" for name, s in shares.items())
    return Measurement("one_source_per_class",
                       f"images whose source holds a single label (the source gives the label away): {parts}",
                       shares[worst])


def metadata_baseline_auc(table: pd.DataFrame | None) -> Measurement:
    """The metadata-only AUC on each composition's own test set, with its interval
    (:func:`covid_lib.analysis.metadata_baseline.table_from_scores` / ``baseline_table``: the patient
    bootstrap, DeLong's where each test patient has one image); headline: the median."""
    if table is None or table.empty:
        return not_yet("metadata_baseline", "no baseline table given")
    own = table[(table["composition"] == table["test_set"]) & table["auc"].notna()]
    if own.empty:
        return not_yet("metadata_baseline", "no composition scored on its own test set")
    parts = "; ".join(f"{r.composition} {format_estimate(r.auc, r.auc_low, r.auc_high)}" for r in own.itertuples())
    return Measurement("metadata_baseline", f"metadata-only AUC on the composition's own test set [95% CI, "
                       f"patients]: {parts}", float(own["auc"].median()))


def perfect_score_bounds(n: int, alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Wilson and Clopper-Pearson (exact) intervals of ``n`` successes out of ``n``."""
    from covid_lib.analysis.small_test_set import exact_interval
    from covid_lib.stats import wilson_interval

    return {"wilson": wilson_interval(n, n, alpha), "clopper_pearson": exact_interval(n, n, alpha)}


def perfect_score_interval(n_pos: int = 10, n_neg: int = 5, alpha: float = 0.05) -> Measurement:
    """The intervals of a perfect score on ``n_pos`` COVID+ and ``n_neg`` COVID- images (the paper's
    15-image test, Table IV): accuracy, and the specificity of the ``n_neg`` negatives; headline: the
    Wilson lower bound of the accuracy."""
    n = n_pos + n_neg
    acc, spec = perfect_score_bounds(n, alpha), perfect_score_bounds(n_neg, alpha)
    level = f"{100 * (1 - alpha):g}%"

    def both(b: dict) -> str:
        return (f"Wilson {level} [{b['wilson'][0]:.2f}, {b['wilson'][1]:.2f}], Clopper-Pearson "
                f"[{b['clopper_pearson'][0]:.2f}, {b['clopper_pearson'][1]:.2f}]")

    return Measurement("test_size", f"a perfect score on {n} images ({n_pos} COVID+, {n_neg} COVID-): accuracy "
                       f"{n}/{n} has {both(acc)}; specificity {n_neg}/{n_neg} has {both(spec)}", acc["wilson"][0])


# ------------------------------------------------------------------------------ tables as hooks
def _learned_flag(row: pd.Series) -> str:
    if bool(row.get("did_not_learn", False)) is True or row.get("status") == "did not learn":
        return " (did not learn)"
    return ""


def _from_table(item: str, table: pd.DataFrame | None, value: str, label: str | Sequence[str] | None, what: str,
                chapter: str, reference: str | None = None) -> Measurement:
    """Every row of ``table``: its ``label`` column(s) and ``value`` (with ``<value>_low`` /
    ``<value>_high`` when present, and ``reference`` beside it when that column is there); a row
    whose model did not learn (``did_not_learn`` or ``status``) is named as such."""
    if table is None or table.empty:
        return not_yet(item, f"no table from {chapter} given")
    if value not in table:
        raise KeyError(f"{chapter} table has no column {value!r}; columns: {', '.join(map(str, table.columns))}")
    rows = table[table[value].notna()]
    if rows.empty:
        return not_yet(item, f"the {chapter} table has no {value!r} value yet")
    labels = [label] if isinstance(label, str) else list(label or [])
    labels = [c for c in labels if c in rows]
    lo, hi = f"{value}_low", f"{value}_high"
    parts = []
    for _, r in rows.iterrows():
        est = format_estimate(float(r[value]), float(r[lo]) if lo in r else np.nan, float(r[hi]) if hi in r else np.nan)
        if reference and reference in r and pd.notna(r[reference]):
            est += f" ({reference} {float(r[reference]):.2f})"
        name = " · ".join(str(r[c]) for c in labels)
        parts.append(f"{name} {est}{_learned_flag(r)}" if name else f"{est}{_learned_flag(r)}")
    return Measurement(item, f"{what}: " + "; ".join(parts), float(rows[value].median()))


def source_probe_accuracy(table: pd.DataFrame | None, *, step: str = "lung-masked (paper)") -> Measurement:
    """The source probe's balanced accuracy after the paper's chain, with its interval and chance
    (the ``table`` of :func:`covid_lib.analysis.shortcuts.source_probe`, chapter 10)."""
    if table is None or table.empty:
        return not_yet("source_probe", "no probe table given")
    hit = table[table["step"] == step]
    if hit.empty:
        return not_yet("source_probe", f"the probe table has no step {step!r}")
    r = hit.iloc[0]
    return Measurement("source_probe",
                       f"after the paper's chain a linear probe names the source of a test image with balanced "
                       f"accuracy {format_estimate(r['balanced_accuracy'], r['balanced_accuracy_low'], r['balanced_accuracy_high'])}"
                       f" (chance {r['chance balanced accuracy']:.2f}; {int(r['n test'])} test images)",
                       float(r["balanced_accuracy"]))


def saliency_inside_lungs(table: pd.DataFrame | None, *, value: str = "share",
                          label: str | Sequence[str] | None = ("pretrain", "pipeline", "composition", "group"),
                          reference: str | None = "baseline") -> Measurement:
    """Hook for chapter ``12_saliency``: the mean share of each saliency map inside the lung mask,
    one row per model and test group (``covid_lib.report.saliency.summary_table``: ``share``,
    ``share_low``, ``share_high``, the uniform-map ``baseline``); headline: the median share."""
    return _from_table("saliency", table, value, label, "mean share of saliency inside the lung mask [95% CI]",
                       "12_saliency", reference)


def unseen_source_gap(table: pd.DataFrame | None, *, value: str = "drop",
                      label: str | Sequence[str] | None = ("split", "variant")) -> Measurement:
    """Hook for chapter ``11_unseen``: AUC on held-out images of the seen sources minus AUC on unseen
    sources, one row per split (``covid_lib.report.unseen.seen_unseen_table``: ``drop``,
    ``drop_low``, ``drop_high``); headline: the median drop."""
    return _from_table("unseen_source", table, value, label, "AUC on seen minus unseen sources [95% CI]",
                       "11_unseen")


# ---------------------------------------------------------------------------------- from records
def cross_dataset_gap(records: pd.DataFrame | None, *, n_boot: int = 2000) -> Measurement:
    """Claim C1 from the ``table2`` records (:func:`covid_lib.report.records.spec_records`): each
    augmented-composition model's own-test AUC minus its mean AUC elsewhere, patient-cluster
    interval (:func:`covid_lib.report.reproduction.c1_table`) and C1's verdict under the protocol
    (:func:`covid_lib.report.judge.protocol_verdict`); headline: the median gap."""
    from covid_lib.report import reproduction as rp

    if records is None or records.empty or not records["status"].isin(["done", "did not learn"]).any():
        return not_yet("cross_dataset", "no table2 record yet")
    gaps = rp.c1_table(records, n_boot=n_boot)
    aug = gaps[gaps["composition"].isin(rp.AUGMENTED) & (gaps["status"] == "done") & gaps["gap"].notna()]
    if aug.empty:
        return not_yet("cross_dataset", "no augmented-composition model that learned is recorded yet")
    v = protocol_verdict("C1")
    return Measurement("cross_dataset", f"C1 {v.verdict} under the protocol: {v.deciding}", float(aug["gap"].median()))


def seed_spread(long: pd.DataFrame | None, *, metric: str = "auc", seeds: Sequence[int] = (0, 1, 2)) -> Measurement:
    """On each headline model's own test set: the SD of ``metric`` over the seeds that learned
    (:func:`covid_lib.analysis.seeds.seed_summary` of :func:`covid_lib.report.records.matrix_long`
    rows; seeds that did not learn or collapsed named, never in the SD) beside the width of seed
    0's interval; headline: the median SD."""
    if long is None or long.empty:
        return not_yet("seeds", "no seed records given")
    cell = ["arch", "pretrain", "composition", "test_set"]
    stats = seed_summary(long, cell, (metric,), seeds=seeds)
    own = stats[(stats["composition"] == stats["test_set"]) & stats[f"{metric}_sd"].notna()]
    if own.empty:
        return not_yet("seeds", "no model has two or more seeds that learned yet")
    seed0 = own[cell].merge(long[long["seed"] == 0].drop_duplicates(cell), on=cell, how="left")
    parts = []
    for r, s0 in zip(own.to_dict("records"), seed0.to_dict("records")):
        width = s0[f"{metric}_high"] - s0[f"{metric}_low"]
        left = [f"seed{'s' if len(r[k]) > 1 else ''} {', '.join(map(str, r[k]))} {what}" for k, what in
                (("seeds_did_not_learn", "did not learn"), ("seeds_collapsed", "collapsed")) if r[k]]
        out = f" (left out: {'; '.join(left)})" if left else ""
        parts.append(f"{r['pretrain']} on {r['composition']}: SD {r[f'{metric}_sd']:.3f} over seeds "
                     f"{', '.join(map(str, r['seeds_learned']))}{out}, seed 0's 95% interval "
                     + ("n/a" if pd.isna(width) else f"{width:.2f}") + " wide")
    return Measurement("seeds", f"{metric.upper()} on the own test set, spread over the seeds that learned beside "
                       "the interval: " + "; ".join(parts), float(own[f"{metric}_sd"].median()))


def ablation_verdict(cells: pd.DataFrame | None) -> Measurement:
    """Claim C6 from the paired cells of :func:`covid_lib.report.depth.ablation_cells` (no chain
    against the chain, on the same images), C6's verdict under the protocol; headline: the median
    off-diagonal ΔAUC."""
    if cells is None or cells.empty or "diff" not in cells or cells["diff"].isna().all():
        return not_yet("preprocessing_ablation", "no pair of records with and without the chain yet")
    v = protocol_verdict("C6")
    off = cells[~cells["diagonal"].astype(bool) & cells["diff"].notna()]
    return Measurement("preprocessing_ablation", f"C6 {v.verdict} under the protocol: {v.deciding}",
                       float(off["diff"].median()) if len(off) else float(cells["diff"].median()))


# ------------------------------------------------------------------------------- tables, figure
def checklist_table(measurements: Mapping[str, Measurement] | None = None) -> pd.DataFrame:
    """One row per item: question, why, the chapter that shows it, and its number (or "not yet measured")."""
    measurements = measurements or {}
    rows = []
    for n, i in enumerate(cl.ITEMS, 1):
        m = measurements.get(i.key)
        rows.append({"#": n, "item": i.short, "question": i.question, "why it matters": i.why,
                     "evidence": i.evidence.doc + (f" (also {', '.join(i.evidence.also)})" if i.evidence.also else ""),
                     "what to look at": i.evidence.shows,
                     "in this book": m.text if m is not None else f"{NOT_YET}: not computed here"})
    return pd.DataFrame(rows)


def checklist_summary(measurements: Mapping[str, Measurement] | None = None) -> pd.DataFrame:
    """:func:`checklist_table` in four columns that fit the page: the number, the item, its question
    and what this book measured; :func:`checklist_reasons` holds the rest."""
    return checklist_table(measurements)[["#", "item", "question", "in this book"]]


def checklist_reasons() -> pd.DataFrame:
    """Per item, why it matters and where the book shows it: the columns of :func:`checklist_table`
    that :func:`checklist_summary` leaves out."""
    return checklist_table()[["#", "item", "why it matters", "evidence", "what to look at"]]


def ratings_matrix(checklist: cl.Checklist | None = None) -> pd.DataFrame:
    """Rating levels, items (rows, in checklist order) x papers (columns)."""
    c = checklist or cl.Checklist()
    return pd.DataFrame({p.label: [c.rating(p.key, i.key).level for i in c.items] for p in c.papers},
                        index=pd.Index([i.short for i in c.items], name="item"))


def justification_table(item_key: str, checklist: cl.Checklist | None = None) -> pd.DataFrame:
    """One item's ratings across the papers, each with where it rests, the note and the quote."""
    c = checklist or cl.Checklist()
    return pd.DataFrame([{"paper": p.label, "rating": (r := c.rating(p.key, item_key)).level, "where": r.where,
                          "why": r.note, "quote": f"\u201c{r.quote}\u201d" if r.quote else ""} for p in c.papers])


def level_counts(checklist: cl.Checklist | None = None) -> pd.DataFrame:
    """How many items each paper answers at each level."""
    m = ratings_matrix(checklist)
    return pd.DataFrame({col: m[col].value_counts().reindex(cl.LEVELS, fill_value=0) for col in m}).T


def plot_ratings(matrix: pd.DataFrame) -> Figure:
    """The ratings as a coloured grid (a seaborn heatmap): items (rows) x papers (columns), the level
    written in each cell."""
    import seaborn as sns

    codes = matrix.apply(lambda col: col.map({lv: k for k, lv in enumerate(cl.LEVELS)})).astype(float)
    fig = Figure(figsize=(1.5 * matrix.shape[1] + 3.2, 0.42 * matrix.shape[0] + 1.2), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(codes, ax=ax, cmap=ListedColormap([LEVEL_COLORS[lv] for lv in cl.LEVELS]), vmin=-0.5,
                vmax=len(cl.LEVELS) - 0.5, annot=matrix.to_numpy(), fmt="", cbar=False, linewidths=2,
                linecolor="white", annot_kws={"fontsize": 8})
    for text, level in zip(ax.texts, matrix.to_numpy().ravel()):
        text.set_color("white" if level in ("yes", "no") else "black")
    ax.set_xlabel(""), ax.set_ylabel("")
    ax.xaxis.tick_top()
    ax.tick_params(length=0, labelsize=9)
    ax.set_yticklabels(matrix.index, rotation=0)
    return fig


def styled_ratings(matrix: pd.DataFrame):
    """The ratings matrix as a pandas Styler, each cell coloured by its level."""
    def color(level: str) -> str:
        fg = "white" if level in ("yes", "no") else "black"
        return f"background-color: {LEVEL_COLORS.get(level, 'white')}; color: {fg}"

    return matrix.style.map(color)
