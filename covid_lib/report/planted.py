"""Tables and figures of the planted confounder (chapter 10, "A planted confounder").

The chain's side (:mod:`covid_lib.analysis.planted`: residue and linear probe per step) and the CNN side
(records of the ``planted`` grid, :mod:`covid_lib.runs.planted`: test AUC unmarked / marked /
flipped, epochs to learn the mark). Records are found by run id (:func:`covid_lib.report.records.spec_records`);
a missing record stays a row, a model that did not learn is labelled so.

Example:
    >>> run_long(pd.DataFrame(columns=["pipeline", "status", "path", "run_id"])).empty
    True
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from covid_lib.metrics import format_estimate
from covid_lib.report.common import label_panels
from covid_lib.report.records import has_record, spec_records
from covid_lib.runs import DONE
from covid_lib.runs.planted import VARIANTS, variant_set
from covid_lib.stats import paired_cluster_bootstrap

EFFECT_COLUMNS = ["mark", "pipeline", "status", "n", "diff", "low", "high", "unmarked_diff", "unmarked_low",
                  "unmarked_high"]
RUN_COLUMNS = ["mark", "pipeline", "status", "variant", "n", "auc", "auc_low", "auc_high", "run_id"]


def _fmt(row, key: str) -> str:
    return format_estimate(row[key], row[f"{key}_low"], row[f"{key}_high"])


# ------------------------------------------------------------------------------------- the chain
def residue_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`covid_lib.analysis.planted.planted_summary` for reading: one row per mark and step."""
    if table.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "mark": table["mark"], "step": table["step"], "pipeline": table["pipeline"], "images": table["n"],
        "residue, whole image [95% CI]": [_fmt(r, "residue") for _, r in table.iterrows()],
        "residue in the mark's pixels": [_fmt(r, "residue_in_mark") if r["images_with_mark_left"] else "mark cut away"
                                         for _, r in table.iterrows()],
        "residue outside them": [_fmt(r, "residue_outside") for _, r in table.iterrows()],
        "images keeping the mark's pixels": table["images_with_mark_left"],
        "probe accuracy, marked vs not [95% CI]": [_fmt(r, "accuracy") for _, r in table.iterrows()]})


def plot_marks(arrays: dict, index: int = 0, *, diff_gain: float = 4.0):
    """One image through each step (columns): unmarked, then per mark the marked output and
    ``diff_gain`` x |marked - unmarked| (rows). ``arrays``: mark -> :class:`~covid_lib.analysis.planted.PlantedArrays`."""
    import matplotlib.pyplot as plt

    first = next(iter(arrays.values()))
    steps = list(first.unmarked)
    rows = [("unmarked", first.unmarked, None)]
    for mark, arr in arrays.items():
        rows += [(f"{mark}", arr.marked, None), (f"|{mark} − unmarked| ×{diff_gain:g}", arr.marked, first.unmarked)]
    fig, axes = plt.subplots(len(rows), len(steps), figsize=(1.9 * len(steps), 1.9 * len(rows)), squeeze=False)
    for row_axes, (_, data, base) in zip(axes, rows):
        for ax, step in zip(row_axes, steps):
            img = data[step].images[index].astype(np.float32) / 255
            if base is not None:
                img = np.clip(diff_gain * np.abs(img - base[step].images[index].astype(np.float32) / 255), 0, 1)
            ax.imshow(img, cmap="magma" if base is not None else "gray", vmin=0, vmax=1)
    label_panels(axes, steps, [label for label, _, _ in rows])
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- the runs
def planted_records(specs, results=None) -> pd.DataFrame:
    """:func:`~covid_lib.report.records.spec_records` of ``specs`` (e.g. ``grid_specs("planted", profile)``)
    with each run's ``mark`` (its ``RunSpec.plant``), also for missing records."""
    specs = list(specs)
    records = spec_records(specs, results)
    marks = {s.run_id: s.plant for s in specs}
    return records.assign(mark=records["run_id"].map(marks))


def _metrics(path) -> dict:
    return json.loads((Path(path) / "metrics.json").read_text())


def planted_status(record: dict) -> str:
    """A planted record's status as F3's exclusion rule reads it: the record's, except that a
    finished run whose marked test scores collapse is ``collapsed``
    (:func:`covid_lib.analysis.findings.planted_model_status`; the record's own check looks for a
    test set named after the composition, which planted runs score only per variant)."""
    from covid_lib.analysis.findings import planted_model_status

    if record["status"] != DONE:
        return record["status"]
    st = planted_model_status(DONE, variant_scores(record["path"]))
    return DONE if st == "usable" else st.split(":")[0]


def run_long(records: pd.DataFrame) -> pd.DataFrame:
    """One row per planted record (:func:`~covid_lib.report.records.spec_records` plus a ``mark``
    column, or records whose spec has one) and test variant: AUC with its patient-cluster interval
    (threshold-free; the paper's 0.5 rule's row). Missing records keep their rows with NaN."""
    rows = []
    for r in records.to_dict("records"):
        m = _metrics(r["path"]) if has_record(r["path"]) else {}
        mark = r.get("mark") or m.get("plant", {}).get("mark")
        table = pd.DataFrame(m.get("table", []))
        status = planted_status(r)
        for variant in VARIANTS:
            row = {"mark": mark, "pipeline": r["pipeline"], "status": status, "variant": variant,
                   "run_id": r["run_id"], "n": np.nan, "auc": np.nan, "auc_low": np.nan, "auc_high": np.nan}
            if len(table):
                name = variant_set(table["test_set"].iloc[0].split(" · ")[0], variant)
                hit = table[(table["test_set"] == name) & table["threshold_rule"].str.startswith("paper")]
                if len(hit):
                    row.update({k: hit.iloc[0][k] for k in ("n", "auc", "auc_low", "auc_high")})
            rows.append(row)
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def run_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per planted run: mark, pipeline, status, test AUC unmarked / marked / flipped with
    intervals (flagged when the model did not learn), the epoch its flipped validation AUC first
    fell under 0.5 and the epoch from which it stayed there, epochs run, and the on-the-fly
    chain's cost."""
    long = run_long(records)
    out = []
    for r in records.to_dict("records"):
        m = _metrics(r["path"]) if has_record(r["path"]) else {}
        p = m.get("plant", {})
        sub = long[long["run_id"] == r["run_id"]].set_index("variant")
        status = sub["status"].iloc[0]
        flag = f" ({status})" if status in ("did not learn", "collapsed") else ""
        row = {"mark": r.get("mark") or p.get("mark"), "pipeline": r["pipeline"], "status": status}
        for v in VARIANTS:
            x = sub.loc[v]
            row[f"AUC {v}"] = "–" if pd.isna(x["auc"]) else _fmt(x, "auc") + flag
        e, s = p.get("epochs_to_learn"), p.get("epochs_to_learn_sustained")
        row["flipped val AUC < 0.5 first at epoch"] = "–" if not m else (str(e) if e else "never")
        row["... and from then on"] = "–" if not m else (str(s) if s else "never")
        row["epochs run (best)"] = f"{p['epochs_run']} ({m['best_epoch']})" if m else "–"
        row["on-the-fly chain: s (s / image)"] = (f"{p['preprocess_s']:.0f} ({p['preprocess_s_per_image']:.2f})"
                                                   if m else "–")
        row["test images"] = "–" if pd.isna(sub["n"].iloc[0]) else int(sub["n"].iloc[0])
        out.append(row)
    return pd.DataFrame(out)


def epoch_curves(records: pd.DataFrame) -> pd.DataFrame:
    """The validation AUCs per epoch of every planted record: ``mark, pipeline, epoch``, ``marked``
    (what selection used), ``unmarked`` and ``flipped``."""
    parts = []
    for r in records.to_dict("records"):
        if not has_record(r["path"]):
            continue
        h = pd.read_csv(Path(r["path"]) / "history.csv")
        mark = r.get("mark") or _metrics(r["path"]).get("plant", {}).get("mark")
        parts.append(pd.DataFrame({"mark": mark, "pipeline": r["pipeline"], "epoch": h["epoch"],
                                   "marked": h["val_auc"], "unmarked": h.get("val_unmarked_auc"),
                                   "flipped": h.get("val_flipped_auc")}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["mark", "pipeline", "epoch", "marked", "unmarked", "flipped"])


def plot_epoch_curves(curves: pd.DataFrame):
    """Validation AUC per epoch, one panel per run: marked (selection), unmarked, flipped."""
    import matplotlib.pyplot as plt

    runs = list(curves.groupby(["mark", "pipeline"], sort=False))
    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 2.8), squeeze=False, sharey=True)
    for ax, ((mark, pipe), g) in zip(axes[0], runs):
        for col, style in (("marked", "-"), ("unmarked", "--"), ("flipped", ":")):
            ax.plot(g["epoch"], g[col], style, label=col)
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.set_title(f"{mark} · {pipe}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("validation AUC")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _signed(value: float, low: float, high: float) -> str:
    return f"{value:+.2f} [{low:+.2f}, {high:+.2f}]"


def variant_scores(path) -> pd.DataFrame | None:
    """A planted record's test scores, one row per image scored in all three variants: the
    ``marked`` row's columns (``label``, ``group_id``, ``score``...) with ``score_flipped`` and
    ``score_unmarked`` of the same image; None without a record."""
    if not has_record(path) or not (Path(path) / "scores.csv").is_file():
        return None
    scores = pd.read_csv(Path(path) / "scores.csv", dtype={"image_id": str, "patient_id": str, "group_id": str})
    base = scores["test_set"].iloc[0].split(" · ")[0]
    by_variant = {v: scores[scores["test_set"] == variant_set(base, v)] for v in VARIANTS}
    return by_variant["marked"].merge(
        by_variant["flipped"][["image_id", "score"]], on="image_id", suffixes=("", "_flipped")).merge(
        by_variant["unmarked"][["image_id", "score"]], on="image_id", suffixes=("", "_unmarked"))


def mark_effect(records: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """How far the mark moves each planted model's ranking: test AUC *marked* minus *flipped* on the
    same images (the mark on the COVID+ images against the mark on the COVID- ones), with a paired
    patient-cluster bootstrap interval. 0: the model ignores the mark; 1 at most: it ranks by it.
    Beside it, *marked* minus *unmarked* (``unmarked_diff``, ``unmarked_low``, ``unmarked_high``):
    what the mark adds to the AUC the image alone gives. One row per record (:data:`EFFECT_COLUMNS`)."""
    rows = []
    for r in records.to_dict("records"):
        row = {"mark": r.get("mark"), "pipeline": r["pipeline"], "status": r["status"], "n": 0,
               **{k: np.nan for k in EFFECT_COLUMNS[3:]}}
        path = r["path"]
        both = variant_scores(path)
        if both is not None:
            row["mark"] = row["mark"] or _metrics(path).get("plant", {}).get("mark")
            if len(both) and both["label"].nunique() == 2:
                groups = (both["group_id"] if "group_id" in both else both["patient_id"]).to_numpy()
                y = both["label"].to_numpy()
                for prefix, other in (("", "score_flipped"), ("unmarked_", "score_unmarked")):
                    d = paired_cluster_bootstrap(y, both["score"].to_numpy(), both[other].to_numpy(), groups,
                                                 n_boot=n_boot, seed=seed)
                    row.update({f"{prefix}diff": float(d.estimate), f"{prefix}low": float(d.low),
                                f"{prefix}high": float(d.high)})
                row["n"] = len(both)
        rows.append(row)
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def verdict(long: pd.DataFrame, mark: str = "corner", pipeline: str = "paper",
            effect: pd.DataFrame | None = None) -> str:
    """The deciding number in words: the flipped test AUC of ``mark`` x ``pipeline`` against the
    unmarked one, and (with ``effect`` from :func:`mark_effect`) the paired difference marked minus
    flipped on the same images, which decides whether the model used the mark: an interval above 0
    says it did, however little; overlapping unpaired intervals alone say nothing either way."""
    sub = long[(long["mark"] == mark) & (long["pipeline"] == pipeline)].set_index("variant")
    if sub.empty or sub["auc"].isna().all():
        return f"no record yet for the {mark} mark with pipeline {pipeline!r}: run `python -m covid_lib grid run planted`"
    f, u = sub.loc["flipped"], sub.loc["unmarked"]
    status = sub["status"].iloc[0]
    head = (f"{mark} mark, pipeline {pipeline!r}: test AUC flipped {_fmt(f, 'auc')} against unmarked "
            f"{_fmt(u, 'auc')}")
    if status == "did not learn":
        return head + "; the model did not learn (best validation AUC under 0.6), so it decides nothing."
    e = None
    if effect is not None:
        hit = effect[(effect["mark"] == mark) & (effect["pipeline"] == pipeline) & effect["diff"].notna()]
        e = hit.iloc[0] if len(hit) else None
    paired = ("" if e is None else
              f"; paired on the same images, marked minus flipped {_signed(e['diff'], e['low'], e['high'])}, "
              f"marked minus unmarked {_signed(e['unmarked_diff'], e['unmarked_low'], e['unmarked_high'])}")
    if status == "collapsed":
        return head + paired + (": but the model collapsed (its marked test scores all lie on one side of 0.5, "
                                "or barely spread), so by the protocol it decides nothing.")
    if f["auc_high"] < 0.5:
        return head + paired + ": the flipped interval lies under 0.5, so the model ranks by the mark rather than the disease."
    if e is not None and e["low"] > 0:
        return head + paired + (": the paired interval lies above 0, so the model uses the mark, at least in part"
                                + (" (a residue the chain lets through)" if pipeline != "none" else "") + ".")
    if e is not None:
        return head + paired + ": the paired interval holds 0, so these images show no sign that the model used the mark."
    if f["auc_high"] < u["auc_low"]:
        return head + ": flipping the mark lowers the AUC beyond both intervals; the model uses the mark in part."
    return head + ": the unpaired intervals overlap, which alone does not show whether the model used the mark."