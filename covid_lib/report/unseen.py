"""Seen against unseen sources, from run records: tables, figures and the drop statement of the
chapter ``11_unseen`` (Ben Ahmed et al. 2021, Fig. 4 and Table 4).

Records come from the ``unseen`` grid (:mod:`covid_lib.grid`), found by spec with
:func:`covid_lib.report.records.spec_records`. Every record scores the test patients of every
part (a source, or a source with one label: :data:`covid_lib.data.PARTS`); ``seen`` is the union
of the training parts, ``unseen`` the union of the unseen parts. The AUCs and their intervals are
the record's (patient-cluster bootstrap, :func:`covid_lib.evaluate.metrics_table`). The seen and
unseen test sets share no image, so their difference is bootstrapped **unpaired**: patients of
each set are resampled independently (:func:`auc_drop`).

Example:
    >>> unseen_records([]).columns.tolist()[-3:]
    ['freeze', 'adapt', 'variant']
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from covid_lib.data.source_splits import PARTS, SOURCE_SPLITS
from covid_lib.metrics import Estimate, format_estimate
from covid_lib.report.records import RECORD_COLUMNS, has_record, spec_records
from covid_lib.runs import RunSpec
from covid_lib.stats import bootstrap_replicates, percentile_interval, weighted_auc

#: Ben Ahmed et al. 2021, as printed (Table 3; Fig. 4 and its text; Table 4, accuracy per class).
PAPER = {
    "mixed sources, ResNet-50 Finetune1 (Table 3)": "AUC 0.997",
    "Data Split 1 (V2-COV19-NII vs NIH), seen / unseen (Fig. 4)": "AUC 1.00 / 0.38",
    "Data Split 2 (BIMCV vs PadChest), seen / unseen (Fig. 4)": "AUC 0.96 / 0.63",
    "COVID-19-AR accuracy, trained on BIMCV / on V2-COV19-NII": "88% / 68%",
    "adapted on 80 + 80 unseen images: BIMCV COVID+ (Table 4)": "51% before, 98% after",
    "adapted on 80 + 80 unseen images: CheXpert pneumonia (Table 4)": "12% before, 94% after",
}
VARIANTS: dict[tuple[str, str | None], str] = {
    ("none", None): "from scratch",
    ("kermany", None): "kermany encoder, fine-tuned",
    ("kermany", "encoder"): "kermany encoder, frozen (Finetune1)",
}
_SCORE_DTYPES = {"image_id": str, "patient_id": str, "group_id": str}


# ---------------------------------------------------------------------------------------- records
def variant(spec: RunSpec) -> str:
    """The model of a split run in words (:data:`VARIANTS`)."""
    key = (spec.pretrain or "none", spec.freeze)
    return VARIANTS.get(key, f"{key[0]} encoder, {spec.freeze or 'fine-tuned'}")


def unseen_records(specs: Iterable[RunSpec], results: str | os.PathLike | None = None) -> pd.DataFrame:
    """:func:`spec_records` of ``specs`` with ``freeze``, ``adapt`` and a readable ``variant``."""
    specs = list(specs)
    by_id = {s.run_id: s for s in specs}
    recs = spec_records(specs, results)
    recs["freeze"] = [by_id[r].freeze for r in recs["run_id"]]
    recs["adapt"] = pd.array([by_id[r].adapt for r in recs["run_id"]], dtype="Int64")
    recs["variant"] = [variant(by_id[r]) for r in recs["run_id"]]
    return recs.reindex(columns=[*RECORD_COLUMNS, "freeze", "adapt", "variant"])


def _metrics(path) -> dict:
    return json.loads((Path(path) / "metrics.json").read_text())


def _row(path, test_set: str, threshold: str = "paper") -> dict:
    """The record's metrics row of one test set at one threshold rule ({} when absent)."""
    table = pd.DataFrame(_metrics(path)["table"])
    hit = table[(table["test_set"] == test_set) & table["threshold_rule"].str.startswith(threshold)]
    return hit.iloc[0].to_dict() if len(hit) else {}


def _scores(path, split: str, which: str) -> pd.DataFrame:
    """Per-image scores of the seen or unseen parts of ``split``."""
    s = SOURCE_SPLITS[split]
    scores = pd.read_csv(Path(path) / "scores.csv", dtype=_SCORE_DTYPES)
    return scores[scores["test_set"].isin(s.train if which == "seen" else s.unseen)]


def _estimate(row: dict, metric: str) -> Estimate:
    if not row:
        return Estimate(np.nan, np.nan, np.nan, "missing")
    return Estimate(float(row[metric]), float(row[f"{metric}_low"]), float(row[f"{metric}_high"]),
                    str(row.get(f"{metric}_method", "")))


# ------------------------------------------------------------------------------------------- drop
def _auc_replicates(scores: pd.DataFrame, n_boot: int, seed: int) -> np.ndarray:
    y, s = scores["label"].to_numpy(), scores["score"].to_numpy()
    return bootstrap_replicates(lambda w: weighted_auc(y, s, w), len(y), groups=scores["group_id"].astype(str).to_numpy(),
                                n_boot=n_boot, seed=seed)


def auc_drop(seen: pd.DataFrame, unseen: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0,
             alpha: float = 0.05) -> Estimate:
    """AUC(seen) - AUC(unseen) with an unpaired patient-cluster bootstrap interval: the patients
    of each test set are resampled independently (the sets share no image)."""
    if min(seen["label"].nunique() if len(seen) else 0, unseen["label"].nunique() if len(unseen) else 0) < 2:
        return Estimate(np.nan, np.nan, np.nan, "none", "a test set lacks a class")
    ones = lambda d: np.ones((1, len(d)))  # noqa: E731
    value = float(weighted_auc(seen["label"], seen["score"], ones(seen))[0]
                  - weighted_auc(unseen["label"], unseen["score"], ones(unseen))[0])
    diff = _auc_replicates(seen, n_boot, seed) - _auc_replicates(unseen, n_boot, seed + 1)
    low, high, n_ok = percentile_interval(diff, alpha)
    return Estimate(value, low, high, f"unpaired cluster bootstrap (n_boot={n_boot}, {n_ok} valid)")


def seen_unseen_table(records: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per split run (adaptations aside): seen and unseen AUC with the record's
    intervals, their drop with the unpaired interval, test sizes and the run's status."""
    rows = []
    for r in records[records["adapt"].isna()].to_dict("records"):
        out = {"split": r["composition"], "variant": r["variant"], "pretrain": r["pretrain"], "freeze": r["freeze"],
               "status": r["status"], "run_id": r["run_id"]}
        if has_record(r["path"]):
            for which in ("seen", "unseen"):
                row = _row(r["path"], which)
                e = _estimate(row, "auc")
                out.update({f"{which}_auc": e.value, f"{which}_low": e.low, f"{which}_high": e.high,
                            f"n_{which}": row.get("n"), f"n_{which}_pos": row.get("n_pos")})
            d = auc_drop(_scores(r["path"], r["composition"], "seen"), _scores(r["path"], r["composition"], "unseen"),
                         n_boot=n_boot, seed=seed)
            out.update({"drop": d.value, "drop_low": d.low, "drop_high": d.high})
        rows.append(out)
    cols = ["split", "variant", "pretrain", "freeze", "status", "run_id", *[f"{w}_{k}" for w in ("seen", "unseen")
            for k in ("auc", "low", "high")], "n_seen", "n_seen_pos", "n_unseen", "n_unseen_pos",
            "drop", "drop_low", "drop_high"]
    return pd.DataFrame(rows).reindex(columns=cols)


def formatted(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """:func:`seen_unseen_table` for reading: ``"0.91 [0.80, 0.96]"`` cells."""
    def cell(v, lo, hi) -> str:
        return "–" if pd.isna(v) else format_estimate(v, lo, hi, digits)

    return pd.DataFrame({
        "split": table["split"], "model": table["variant"], "status": table["status"],
        "seen AUC [95% CI]": [cell(*x) for x in zip(table["seen_auc"], table["seen_low"], table["seen_high"])],
        "unseen AUC [95% CI]": [cell(*x) for x in zip(table["unseen_auc"], table["unseen_low"], table["unseen_high"])],
        "drop seen − unseen [95% CI]": [cell(*x) for x in zip(table["drop"], table["drop_low"], table["drop_high"])],
        "seen / unseen images": [("–" if pd.isna(a) else f"{int(a)} / {int(b)}")
                                 for a, b in zip(table["n_seen"], table["n_unseen"])]})


@dataclass(frozen=True)
class DropStatement:
    """"The drop from seen to unseen AUC is X [interval]", decided by the interval of the difference."""

    split: str
    variant: str
    seen: Estimate
    unseen: Estimate
    drop: Estimate
    did_not_learn: bool

    @property
    def decided(self) -> str:
        """``drop`` (interval above 0), ``rise`` (below 0), ``undecided`` (includes 0) or ``missing``."""
        if np.isnan(self.drop.value):
            return "missing"
        if self.drop.low > 0:
            return "drop"
        return "rise" if self.drop.high < 0 else "undecided"

    @property
    def text(self) -> str:
        if self.decided == "missing":
            return f"{self.split}, {self.variant}: no record yet"
        verdict = {"drop": "the interval excludes 0: a drop", "rise": "the interval is below 0: a rise",
                   "undecided": "the interval includes 0: undecided"}[self.decided]
        warn = " (this model did not learn: best validation AUC < 0.6)" if self.did_not_learn else ""
        return (f"{self.split}, {self.variant}{warn}: seen AUC {self.seen}, unseen AUC {self.unseen}; the drop from "
                f"seen to unseen AUC is {self.drop} ({verdict})")


def drop_statements(table: pd.DataFrame) -> list[DropStatement]:
    """One :class:`DropStatement` per row of :func:`seen_unseen_table`."""
    out = []
    for r in table.to_dict("records"):
        est = {k: Estimate(r[f"{k}_auc"], r[f"{k}_low"], r[f"{k}_high"], "") for k in ("seen", "unseen")}
        out.append(DropStatement(r["split"], r["variant"], est["seen"], est["unseen"],
                                 Estimate(r["drop"], r["drop_low"], r["drop_high"], "unpaired cluster bootstrap"),
                                 r["status"] == "did not learn"))
    return out


# ---------------------------------------------------------------------------------- part by part
def part_rates(records: pd.DataFrame, *, threshold: str = "paper") -> pd.DataFrame:
    """Per record and part: the one rate that part can measure (sensitivity of a COVID+ part,
    specificity of a COVID- part) with its interval, and whether the part was seen."""
    rows = []
    for r in records.to_dict("records"):
        if not has_record(r["path"]):
            continue
        split = SOURCE_SPLITS[r["composition"]]
        for part, (source, label) in PARTS.items():
            metric = "sensitivity" if label == 1 else "specificity"
            e = _estimate(_row(r["path"], part, threshold), metric)
            role = "seen" if part in split.train else "unseen" if part in split.unseen else "neither"
            rows.append({"split": r["composition"], "variant": r["variant"], "adapt": r["adapt"], "status": r["status"],
                         "part": part, "role": role, "metric": metric, "value": e.value, "low": e.low, "high": e.high})
    return pd.DataFrame(rows, columns=["split", "variant", "adapt", "status", "part", "role", "metric", "value",
                                       "low", "high"])


def pair_aucs(path, split: str, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """AUC of every COVID+ part against every COVID- part in one record's scores, with a
    patient-cluster bootstrap interval, and whether the pair was seen, unseen or mixed."""
    scores = pd.read_csv(Path(path) / "scores.csv", dtype=_SCORE_DTYPES)
    s = SOURCE_SPLITS[split]
    rows = []
    for pos in (p for p, (_, lab) in PARTS.items() if lab == 1):
        for neg in (p for p, (_, lab) in PARTS.items() if lab == 0):
            pair = scores[scores["test_set"].isin([pos, neg])]
            y, sc = pair["label"].to_numpy(), pair["score"].to_numpy()
            if len(np.unique(y)) < 2:
                continue
            value = float(weighted_auc(y, sc, np.ones((1, len(y))))[0])
            low, high, _ = percentile_interval(_auc_replicates(pair, n_boot, seed))
            role = ("seen" if {pos, neg} <= set(s.train) else "unseen" if {pos, neg} <= set(s.unseen) else "mixed")
            rows.append({"COVID+ part": pos, "COVID- part": neg, "pair": role, "auc": value, "low": low, "high": high})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- adaptation
def adaptation_table(records: pd.DataFrame, *, threshold: str = "paper") -> pd.DataFrame:
    """The adaptation curve: per split and model with adaptation runs, the model before (``adapt``
    0: the parent run) and after adapting on ``adapt`` images per class: unseen and seen AUC with
    intervals, and the rate of each unseen part (Ben Ahmed et al.'s Table 4)."""
    adapted = records[records["adapt"].notna()]
    rows = []
    for (split, variant), kids in adapted.groupby(["composition", "variant"], sort=False):
        s = SOURCE_SPLITS[split]
        base = records[(records["composition"] == split) & records["adapt"].isna() & (records["variant"] == variant)]
        chain = [(0, base.iloc[0].to_dict())] if len(base) else []
        chain += [(int(r["adapt"]), r) for r in kids.to_dict("records")]
        for k, r in sorted(chain, key=lambda x: x[0]):
            out = {"split": split, "variant": variant, "adapt": k, "status": r["status"], "run_id": r["run_id"]}
            if has_record(r["path"]):
                for which in ("unseen", "seen"):
                    e = _estimate(_row(r["path"], which, threshold), "auc")
                    out.update({f"{which}_auc": e.value, f"{which}_low": e.low, f"{which}_high": e.high})
                for part in s.unseen:
                    metric = "sensitivity" if PARTS[part][1] == 1 else "specificity"
                    e = _estimate(_row(r["path"], part, threshold), metric)
                    out.update({f"{part} {metric}": e.value, f"{part} {metric}_low": e.low,
                                f"{part} {metric}_high": e.high})
            rows.append(out)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ tables for reading
def _cell(v, lo, hi, digits: int = 2) -> str:
    return "–" if pd.isna(v) else format_estimate(v, lo, hi, digits)


def measures_table() -> pd.DataFrame:
    """What each part (a source, or a source with one label) can measure alone."""
    from covid_lib.data.source_splits import MEASURES

    return pd.DataFrame({"part": list(MEASURES), "what it can measure": list(MEASURES.values())})


def splits_table() -> pd.DataFrame:
    """The source splits: what each trains on, what stays unseen, and the paper's split it follows."""
    return pd.DataFrame([{"split": s.name, "trained on (COVID+ / COVID−)": " / ".join(s.train),
                          "unseen (COVID+ / COVID−)": " / ".join(s.unseen), "in the spirit of": s.spirit}
                         for s in SOURCE_SPLITS.values()])


def paper_table() -> pd.DataFrame:
    """:data:`PAPER`, as printed."""
    return pd.DataFrame({"Ben Ahmed et al. 2021": list(PAPER), "as printed": list(PAPER.values())})


def pair_table(pairs: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """:func:`pair_aucs` as a matrix for reading: a row per COVID+ part, a column per COVID− part,
    cells ``"0.67 [0.51, 0.78] · mixed"`` (the AUC, its interval and the kind of pair)."""
    if pairs.empty:
        return pd.DataFrame()
    cells = pairs.assign(cell=[f"{_cell(v, lo, hi, digits)} · {kind}" for v, lo, hi, kind
                               in zip(pairs["auc"], pairs["low"], pairs["high"], pairs["pair"])])
    wide = cells.pivot(index="COVID+ part", columns="COVID- part", values="cell")
    wide.columns.name = None
    return wide.rename(columns=lambda c: c.replace("COVID-", "COVID−")).reset_index()


def part_rates_table(rates: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """:func:`part_rates` for reading: a row per split and model, four columns (the seen and the
    unseen COVID+ parts' sensitivity, the seen and unseen COVID− parts' specificity), cells
    ``"hannover 0.99 [0.95, 1.00]"``; parts that are neither seen nor unseen are left out."""
    kept = rates[rates["role"] != "neither"]
    columns = {("seen", "sensitivity"): "seen COVID+: sensitivity", ("seen", "specificity"): "seen COVID−: specificity",
               ("unseen", "sensitivity"): "unseen COVID+: sensitivity",
               ("unseen", "specificity"): "unseen COVID−: specificity"}
    rows = []
    for (split, model, status), part in kept.groupby(["split", "variant", "status"], sort=False):
        row = {"split": split, "model": model, "status": status}
        for (role, metric), name in columns.items():
            hits = part[(part["role"] == role) & (part["metric"] == metric)]
            row[name] = "; ".join(f"{p.split()[0]} {_cell(v, lo, hi, digits)}"
                                  for p, v, lo, hi in zip(hits["part"], hits["value"], hits["low"], hits["high"])) or "–"
        rows.append(row)
    return pd.DataFrame(rows)


def adaptation_display(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """:func:`adaptation_table` for reading: per split, model and ``adapt``, the unseen and seen AUC and
    the rate of the unseen COVID+ and COVID− parts, cells with their interval (``"–"`` when missing)."""
    rows = []
    for r in table.to_dict("records"):
        row = {"split": r["split"], "model": r["variant"], "adapt (images per class)": r["adapt"], "status": r["status"]}
        for which in ("unseen", "seen"):
            row[f"{which} AUC"] = _cell(r.get(f"{which}_auc"), r.get(f"{which}_low"), r.get(f"{which}_high"), digits)
        for label, metric in (("COVID+", "sensitivity"), ("COVID−", "specificity")):
            parts = [p for p in SOURCE_SPLITS[r["split"]].unseen if p.endswith(metric_label(metric))]
            row[f"unseen {label}: {metric}"] = "; ".join(
                f"{p.split()[0]} {_cell(r.get(f'{p} {metric}'), r.get(f'{p} {metric}_low'), r.get(f'{p} {metric}_high'), digits)}"
                for p in parts) or "–"
        rows.append(row)
    return pd.DataFrame(rows)


def metric_label(metric: str) -> str:
    """The label suffix of the parts a rate is measured on: ``COVID+`` for sensitivity, ``COVID-``
    for specificity (the part names of :data:`covid_lib.data.PARTS`)."""
    return "COVID+" if metric == "sensitivity" else "COVID-"


# ---------------------------------------------------------------------------------------- figures
def plot_seen_unseen(table: pd.DataFrame):
    """Seen beside unseen AUC per split and model, with 95% interval bars; runs that did not
    learn are drawn hollow and labelled, missing runs named in the title of their panel."""
    import matplotlib.pyplot as plt

    splits = list(dict.fromkeys(table["split"]))
    fig, axes = plt.subplots(1, max(len(splits), 1), figsize=(4.2 * max(len(splits), 1), 3.6), sharey=True,
                             squeeze=False)
    labelled: set[str] = set()
    for ax, split in zip(axes[0], splits):
        part = table[table["split"] == split].reset_index(drop=True)
        for i, r in part.iterrows():
            for dx, which, color in ((-0.12, "seen", "tab:blue"), (0.12, "unseen", "tab:orange")):
                v = r[f"{which}_auc"]
                if pd.isna(v):
                    continue
                hollow = r["status"] == "did not learn"
                ax.errorbar(i + dx, v, yerr=[[v - r[f"{which}_low"]], [r[f"{which}_high"] - v]], fmt="o",
                            color=color, mfc="white" if hollow else color, capsize=3,
                            label=None if which in labelled else which)
                labelled.add(which)
            if r["status"] == "did not learn":
                ax.annotate("did not learn", (i, 0.02), ha="center", fontsize=7, color="crimson")
        ax.axhline(0.5, color="grey", ls="--", lw=0.8)
        ax.set_xticks(range(len(part)))
        ax.set_xticklabels([v.replace(", ", "\n", 1) for v in part["variant"]], fontsize=7)
        missing = int(part["seen_auc"].isna().sum())
        ax.set_title(split + (f" ({missing} without a record)" if missing else ""), fontsize=9)
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("AUC (95% CI; dashed: chance)")
    if labelled:  # the first panel may hold no record: the figure collects every panel's labels
        # above the panels, in a row: in a corner it covered the first tick label ("from scratch")
        fig.legend(fontsize=8, loc="upper center", ncols=len(labelled), bbox_to_anchor=(0.5, 1.0), frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.92))
    else:
        fig.tight_layout()
    return fig


def plot_adaptation(table: pd.DataFrame):
    """Unseen (and seen) AUC against the images per class adapted on (0 = before), with intervals."""
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(zip(table["split"], table["variant"]))) if len(table) else []
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.4), sharey=True,
                             squeeze=False)
    for ax, (split, variant) in zip(axes[0], panels):
        part = table[(table["split"] == split) & (table["variant"] == variant)]
        for which, color, dx in (("unseen", "tab:orange", 0.0), ("seen", "tab:blue", 0.15)):
            if f"{which}_auc" not in part:
                continue
            ok = part[part[f"{which}_auc"].notna()]
            x = np.log2(ok["adapt"].clip(lower=1)) + dx + (ok["adapt"] == 0) * -1.0
            ax.errorbar(x, ok[f"{which}_auc"], yerr=[ok[f"{which}_auc"] - ok[f"{which}_low"],
                                                    ok[f"{which}_high"] - ok[f"{which}_auc"]],
                        fmt="o-", color=color, capsize=3, label=f"{which} test")
            for xi, (_, r) in zip(x, ok.iterrows()):
                if r["status"] == "did not learn":
                    ax.annotate("did not learn", (xi, r[f"{which}_auc"] - 0.08), ha="center", fontsize=7,
                                color="crimson")
        ks = sorted(part["adapt"].unique())
        ax.set_xticks([np.log2(max(k, 1)) - (k == 0) for k in ks])
        ax.set_xticklabels([str(k) for k in ks])
        ax.axhline(0.5, color="grey", ls="--", lw=0.8)
        ax.set_title(f"{split}\n{variant}", fontsize=9)
        ax.set_xlabel("unseen images per class adapted on (0: before)")
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("AUC (95% CI)")
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
