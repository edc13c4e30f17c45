"""Run records of a grid found by spec, their metrics cell by cell beside the paper's, and paired
comparisons of two models on the same images (the base of the reproduction chapters).

Records are found by :attr:`covid_lib.runs.RunSpec.run_id` (``results/<run_id>/``), never by
their fields alone, because records of other settings sit in the same folder, and read through
:class:`covid_lib.runs.Record`. Every record has a ``status``: ``done``, ``did not learn`` (best
validation AUC under 0.6), ``collapsed``, ``failed`` or ``missing``; a cell of a record that is not there stays a row with NaN metrics, so that tables
show it as missing instead of leaving it out.

The paper's numbers (Tartaglione et al. 2020, Tables II-IV; ``covid_lib/paper/``) use the names
``none`` / ``ChestXRay`` / ``RSNA`` for the pre-trained encoder; ours are ``none`` / ``kermany`` /
``nih`` (:data:`PAPER_PRETRAIN`).

Example:
    >>> spec_records([]).columns.tolist()[:4]
    ['arch', 'pretrain', 'composition', 'seed']
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from covid_lib.data import data_version
from covid_lib.grid import COMPOSITION_ORDER, grid_specs
from covid_lib.metrics import METRICS, format_estimate
from covid_lib.runs import LEARNED, Record, RunSpec
from covid_lib.stats import delong_test, paired_cluster_bootstrap

#: Test sets, in the paper's column order; COVID-ChestXRay's 15 images are ours (Table IV, not II).
TEST_SETS: tuple[str, ...] = COMPOSITION_ORDER
#: The test sets of the paper's Tables II and III.
PAPER_TEST_SETS: tuple[str, ...] = COMPOSITION_ORDER[:4]
PAPER_PRETRAIN = {"none": "none", "ChestXRay": "kermany", "RSNA": "nih"}
PAPER_ARCH = {"ResNet-18": "resnet18", "ResNet-50": "resnet50"}
PRETRAIN_LABELS = {"none": "none (scratch)", "kermany": "ChestXRay (kermany)", "nih": "RSNA (nih)"}
RECORD_COLUMNS = ["arch", "pretrain", "composition", "seed", "pipeline", "precision", "run_id", "status", "path"]
PAIRED_COLUMNS = ["n_a", "n_b", "n_common", "n_patients", "auc_a", "auc_b", "diff", "se", "p", "delong_low",
                  "delong_high", "boot_low", "boot_high", "boot_p"]
_SCORE_DTYPES = {"image_id": str, "patient_id": str, "group_id": str}


# ---------------------------------------------------------------------------------------- records
def spec_records(specs: Iterable[RunSpec], results: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per COVID run of ``specs`` (pre-trainings skipped): its spec fields, run id, status
    (:attr:`covid_lib.runs.Record.status`: ``done`` / ``did not learn`` / ``collapsed`` / ``failed``
    / ``missing``) and record folder (None unless the record is complete).

    Args:
        results: the records' folder (default :func:`covid_lib.runs.results_dir`).
    """
    rows, seen = [], set()
    for s in specs:
        if s.task != "covid" or s.run_id in seen:
            continue
        seen.add(s.run_id)
        record = Record.of(s, results=results)
        status = record.status
        rows.append({"arch": s.arch, "pretrain": s.pretrain or "none", "composition": s.composition,
                     "seed": s.seed, "pipeline": s.pipeline, "precision": s.precision, "run_id": s.run_id,
                     "status": status, "path": record.path if status in LEARNED else None})
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def created_times(records: pd.DataFrame) -> list[str]:
    """The ``created`` times (ISO, UTC) of the complete records among ``records`` (a frame with a
    ``path`` column, as :func:`spec_records` gives), sorted: when each run was recorded."""
    out = []
    for path in records["path"]:
        if isinstance(path, (str, os.PathLike)) and (Path(path) / "spec.json").is_file():
            out.append(json.loads((Path(path) / "spec.json").read_text()).get("created", ""))
    return sorted(t for t in out if t)


def pretraining_sizes(specs: Iterable[RunSpec], results: str | os.PathLike | None = None) -> pd.DataFrame:
    """The pre-training runs behind ``specs``: source, arch, run id, status (of the record; its
    checkpoint is not asked for) and the images used per split (from their records), beside the
    paper's pre-training set sizes (Sec. III-A)."""
    paper = {"kermany": 5857, "kermany_full": 5857, "nih": 26684}
    rows, seen = [], set()
    for s in specs:
        pre = s if s.task == "pretrain" else s.pretrain_spec()
        if pre is None or pre.run_id in seen:
            continue
        seen.add(pre.run_id)
        record = Record.of(pre, results=results, need_checkpoint=False)
        splits = record.metrics.get("splits", {})
        rows.append({"source": pre.composition, "arch": pre.arch, "run_id": pre.run_id, "status": record.status,
                     **{f"n {k}": splits.get(k, {}).get("n_used") for k in ("train", "val", "test")},
                     "paper's images": paper[pre.composition]})
    return pd.DataFrame(rows, columns=["source", "arch", "run_id", "status", "n train", "n val", "n test",
                                       "paper's images"])



def pretraining_images(grids: Iterable[str], profile: str, *, sources: Iterable[str] | None = None,
                       data_root: str | os.PathLike | None = None,
                       results: str | os.PathLike | None = None) -> list[int]:
    """The training images of each recorded pre-training behind the runs of ``grids`` (only those on
    ``sources``, e.g. ``("kermany",)``, when given; distinct, sorted; from :func:`pretraining_sizes`):
    the size a chapter's prose gives of its encoders' pre-training sets."""
    specs = [s for g in grids for s in grid_specs(g, profile, data_root=data_root)]
    sizes = pretraining_sizes(specs, results)
    if sources is not None:
        sizes = sizes[sizes["source"].isin(list(sources))]
    return sorted({int(n) for n in sizes["n train"].dropna()})

def has_record(path: object) -> bool:
    """Whether a ``path`` cell of :func:`spec_records` points at a finished record (not None or NaN)."""
    return isinstance(path, (str, os.PathLike))


def cell_scores(path: str | os.PathLike, test_set: str) -> pd.DataFrame:
    """One record's per-image scores on one test set, indexed by ``(source, image_id)``."""
    return record_at(path).scores(test_set).set_index(["source", "image_id"]).sort_index()


def record_at(path: str | os.PathLike) -> Record:
    """The :class:`~covid_lib.runs.Record` of a record folder (a ``path`` cell of :func:`spec_records`)."""
    path = Path(path)
    return Record.of(path.name, results=path.parent)


def matrix_long(records: pd.DataFrame, *, threshold: str = "paper",
                test_sets: Iterable[str] = TEST_SETS) -> pd.DataFrame:
    """Every (record, test set) cell with the seven metrics and their intervals.

    Args:
        threshold: ``paper`` (0.5, the paper's rule) or ``validation`` (chosen on validation).

    Returns:
        The record columns (``path`` aside), ``test_set``, ``diagonal``, ``n``, ``n_pos``,
        ``n_neg``, ``n_rejected`` (images the chain refused) and ``<metric>``, ``<metric>_low``,
        ``<metric>_high`` for each of :data:`covid_lib.metrics.METRICS`; NaN where not recorded.
    """
    test_sets = list(test_sets)
    rows = []
    for r in records.to_dict("records"):
        base = {k: r[k] for k in RECORD_COLUMNS if k != "path"}
        table, sets = pd.DataFrame(), {}
        if has_record(r["path"]):
            m = record_at(r["path"]).metrics
            table, sets = pd.DataFrame(m["table"]), m.get("test_sets", {})
            table = table[table["threshold_rule"].str.startswith(threshold)]
        for t in test_sets:
            row = {**base, "test_set": t, "diagonal": t == r["composition"]}
            hit = table[table["test_set"] == t] if len(table) else table
            if len(hit):
                x = hit.iloc[0]
                row.update({k: x[k] for k in ("n", "n_pos", "n_neg", "threshold")})
                row["n_rejected"] = len(sets.get(t, {}).get("rejected", []))
                row.update({f"{m}{s}": x[f"{m}{s}"] for m in METRICS for s in ("", "_low", "_high")})
            rows.append(row)
    cols = [*RECORD_COLUMNS[:-1], "test_set", "diagonal", "n", "n_pos", "n_neg", "threshold", "n_rejected",
            *[f"{m}{s}" for m in METRICS for s in ("", "_low", "_high")]]
    return pd.DataFrame(rows, columns=cols)


def paper_long(tables: Iterable[str] = ("II", "III", "IV")) -> pd.DataFrame:
    """The paper's cells with our names: ``paper_table, arch, pretrain, composition, test_set`` and
    the seven metrics. Table IV's ResNet-18 row names no encoder; its CORDA cell equals Table II's
    ChestXRay row, so it is read as ``kermany`` (its COVID-ChestXRay cell is the only one Table II
    lacks). COVID-Net (Table IV) is left out: we do not train it."""
    src = resources.files("covid_lib.paper") / "tartaglione2020_tables.csv"
    with resources.as_file(src) as f:
        p = pd.read_csv(f, dtype={"pretrained_encoder": str}, keep_default_na=False, na_values=[""])
    p = p[p["table"].isin(list(tables)) & p["architecture"].isin(PAPER_ARCH)].copy()
    enc = p["pretrained_encoder"].where(p["table"] != "IV", "ChestXRay")
    out = pd.DataFrame({"paper_table": p["table"], "arch": p["architecture"].map(PAPER_ARCH),
                        "pretrain": enc.map(PAPER_PRETRAIN), "composition": p["training_dataset"],
                        "test_set": p["test_dataset"]})
    for m in METRICS:
        out[m] = pd.to_numeric(p[m].replace({"inf": np.inf}), errors="coerce")
    return out.drop_duplicates(["arch", "pretrain", "composition", "test_set"]).reset_index(drop=True)


def beside_paper(long: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """``long`` with the paper's value of each metric as ``paper_<metric>`` (NaN: not in the paper)."""
    paper = paper_long() if paper is None else paper
    keys = ["arch", "pretrain", "composition", "test_set"]
    theirs = paper[keys + ["paper_table", *METRICS]].rename(columns={m: f"paper_{m}" for m in METRICS})
    return long.merge(theirs, on=keys, how="left")


# -------------------------------------------------------------------------------------- paired AUC
def paired_auc(a: pd.DataFrame, b: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Two models' AUCs on the images both scored (index ``(source, image_id)``, see :func:`cell_scores`).

    Returns the counts (``n_a``, ``n_b``, ``n_common``, ``n_patients``), ``auc_a``, ``auc_b``,
    ``diff`` (a - b), the paired DeLong test (:func:`covid_lib.stats.delong_test`, images as units:
    ``se``, ``p``, ``delong_low``, ``delong_high``) and the paired patient-cluster bootstrap of
    ``diff`` (:func:`covid_lib.stats.paired_cluster_bootstrap`, patients as units: ``boot_low``,
    ``boot_high``, ``boot_p``). NaN where a class is missing.
    """
    both = a[["label", "group_id", "score"]].join(b[["label", "score"]], how="inner", suffixes=("", "_b"))
    if (both["label"] != both["label_b"]).any():
        raise ValueError("the two records label the same image differently")
    out = {"n_a": len(a), "n_b": len(b), "n_common": len(both), "n_patients": both["group_id"].nunique()}
    y, sa, sb = both["label"].to_numpy(), both["score"].to_numpy(), both["score_b"].to_numpy()
    if len(np.unique(y)) < 2:
        return {**out, **dict.fromkeys(PAIRED_COLUMNS[4:], np.nan)}
    t = delong_test(y, sa, sb)
    boot = paired_cluster_bootstrap(y, sa, sb, both["group_id"].to_numpy(), n_boot=n_boot, seed=seed)
    return {**out, "auc_a": t.auc_a, "auc_b": t.auc_b, "diff": t.diff, "se": t.se, "p": t.p_value,
            "delong_low": t.low, "delong_high": t.high, "boot_low": boot.low, "boot_high": boot.high,
            "boot_p": boot.p_value}


def paired_cells(left: pd.DataFrame, right: pd.DataFrame, *, on: Iterable[str] = ("pretrain", "composition", "seed"),
                 test_sets: Iterable[str] = TEST_SETS, n_boot: int = 2000) -> pd.DataFrame:
    """Each record of ``left`` against the record of ``right`` with the same ``on`` fields, on every
    test set, with :func:`paired_auc` (a = left, b = right). A pair with a record missing or failed
    stays a row with NaN numbers; ``did_not_learn`` says whether either model did not learn."""
    on = list(on)
    rows = []
    for a in left.to_dict("records"):
        match = right
        for k in on:
            match = match[match[k] == a[k]]
        b = match.iloc[0].to_dict() if len(match) else {"run_id": None, "status": "missing", "path": None}
        for t in test_sets:
            row = {**{k: a[k] for k in on}, "test_set": t, "diagonal": t == a["composition"],
                   "run_a": a["run_id"], "run_b": b["run_id"], "status_a": a["status"], "status_b": b["status"],
                   "did_not_learn": "did not learn" in (a["status"], b["status"])}
            if has_record(a["path"]) and has_record(b["path"]):
                sa, sb = cell_scores(a["path"], t), cell_scores(b["path"], t)
                if len(sa) and len(sb):
                    row.update(paired_auc(sa, sb, n_boot=n_boot))
            rows.append(row)
    cols = [*on, "test_set", "diagonal", "run_a", "run_b", "status_a", "status_b", "did_not_learn", *PAIRED_COLUMNS]
    return pd.DataFrame(rows, columns=cols)


def paired_table(cells: pd.DataFrame, a: str, b: str, *, digits: int = 2) -> pd.DataFrame:
    """Compared cells for reading: AUC of a and b, ΔAUC with its patient-cluster interval and the
    paired DeLong p, on how many common images (of those each scored), and each record's status."""
    if cells.empty:
        return pd.DataFrame()
    cells = cells.reindex(columns=list(dict.fromkeys([*cells.columns, *PAIRED_COLUMNS])))

    def num(x: float) -> str:
        return "–" if pd.isna(x) else f"{x:.{digits}f}"

    return pd.DataFrame({
        "pre-training": cells["pretrain"].map(PRETRAIN_LABELS), "trained on": cells["composition"],
        "tested on": cells["test_set"], f"AUC {a}": cells["auc_a"].map(num), f"AUC {b}": cells["auc_b"].map(num),
        "ΔAUC [patient 95% CI]": [("–" if pd.isna(d) else format_estimate(d, lo, hi, digits))
                                  for d, lo, hi in zip(cells["diff"], cells["boot_low"], cells["boot_high"])],
        "DeLong p": cells["p"].map(lambda p: "–" if pd.isna(p) else f"{p:.3f}"),
        "n common (a / b)": [("–" if pd.isna(n) else f"{int(n)} ({int(x)} / {int(y)})")
                             for n, x, y in zip(cells["n_common"], cells["n_a"], cells["n_b"])],
        f"status {a}": cells["status_a"], f"status {b}": cells["status_b"]})


def paired_summary(cells: pd.DataFrame, *, alpha: float = 0.05) -> dict:
    """How many compared cells have ``a`` better / worse / indistinguishable from ``b`` (paired DeLong
    at ``alpha``), the median and range of the AUC difference, and the cells left out (no pair)."""
    ok = cells[cells["diff"].notna()] if len(cells) else cells
    sig = ok["p"] < alpha if len(ok) else pd.Series(dtype=bool)
    return {"n_cells": len(ok), "n_better": int((sig & (ok["diff"] > 0)).sum()) if len(ok) else 0,
            "n_worse": int((sig & (ok["diff"] < 0)).sum()) if len(ok) else 0,
            "n_indistinguishable": int((~sig).sum()) if len(ok) else 0,
            "median_diff": float(ok["diff"].median()) if len(ok) else np.nan,
            "min_diff": float(ok["diff"].min()) if len(ok) else np.nan,
            "max_diff": float(ok["diff"].max()) if len(ok) else np.nan,
            "n_did_not_learn": int(ok["did_not_learn"].sum()) if len(ok) else 0,
            "n_without_pair": len(cells) - len(ok), "alpha": alpha}


def summary_sentence(s: dict, a: str, b: str) -> str:
    """``paired_summary`` in words."""
    if not s["n_cells"]:
        return f"no cell has both {a} and {b} recorded yet"
    return (f"{a} vs {b} on the same images: better in {s['n_better']}, worse in {s['n_worse']}, "
            f"indistinguishable in {s['n_indistinguishable']} of {s['n_cells']} cells (paired DeLong, "
            f"p < {s['alpha']:g}); median ΔAUC {s['median_diff']:+.3f} (range {s['min_diff']:+.3f} to "
            f"{s['max_diff']:+.3f}); {s['n_did_not_learn']} cells involve a model that did not learn, "
            f"{s['n_without_pair']} have no pair yet")


def own_test_seed_table(frames: dict[str, pd.DataFrame], *, by: Iterable[str] = ("arch", "pretrain", "composition"),
                        metric: str = "auc", label: str = "own-test AUC", digits: int = 3) -> pd.DataFrame:
    """Each cell's own-test ``metric`` as mean ± SD over the seeds whose model learned, per scale
    (the keys of ``frames``, each a grid's records), with the seeds that did not learn, collapsed or
    are not recorded yet counted and named, never averaged in (issue 17: seeds beside the pooled
    intervals). Empty when no frame has a row."""
    from covid_lib.analysis.seeds import seed_summary, seed_summary_table

    parts = [matrix_long(r).assign(scale=scale) for scale, r in frames.items() if len(r)]
    if not parts:
        return pd.DataFrame()
    own = pd.concat(parts, ignore_index=True).query("diagonal")
    summary = seed_summary(own, ["scale", *by], [metric])
    return seed_summary_table(summary, [metric], labels={metric: label}, digits=digits)


def chapter_records(grids: Iterable[str], profile: str, *, data_root: str | os.PathLike | None = None,
                    results: str | os.PathLike | None = None, quiet: bool = False) -> dict[str, pd.DataFrame]:
    """The records of each grid of ``grids`` at ``profile`` (:func:`spec_records` of
    :func:`covid_lib.grid.grid_specs` at the data's current version), printing each grid's status
    counts: the setup the reproduction chapters share."""
    version = data_version(data_root)
    out = {}
    for grid in grids:
        out[grid] = spec_records(grid_specs(grid, profile, data_root=data_root, data_version=version), results)
        if not quiet:
            print(f"{grid} records ({profile} profile, data version {version}):",
                  out[grid]["status"].value_counts().to_dict())
    return out
