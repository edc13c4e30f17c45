"""Tables of the training engine, read from run records only: the pre-trainings' test scores, the
gain of pre-training over training from scratch, and bf16 against fp32 (issue 8's gates).

Every number comes from ``results/<run_id>/`` (``$COVID_LIB_RESULTS`` when set), read through
:class:`covid_lib.runs.Record`; a run flagged "did not learn" is shown as such, never averaged in
silently.

Example:
    >>> record_index("/nonexistent").empty
    True
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from covid_lib.metrics import delong_test, format_estimate
from covid_lib.profiles import get_profile
from covid_lib.runs import Record, results_dir
from covid_lib.stats import paired_cluster_bootstrap

SPEC_COLUMNS = ["task", "composition", "arch", "pretrain", "profile", "seed", "precision", "pipeline", "plant",
                "input_size"]
INDEX_COLUMNS = [*SPEC_COLUMNS, "run_id", "path", "status", "did_not_learn", "best_value", "best_epoch"]


def record_index(results: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per complete record under ``results`` (default :func:`covid_lib.runs.results_dir`:
    ``$COVID_LIB_RESULTS``, else the repository's ``results/``): its spec fields, run id, path,
    status (:attr:`covid_lib.runs.Record.outcome`) and learning summary."""
    root = Path(results) if results is not None else results_dir()
    rows = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        record = Record.of(folder.name, results=root)
        if not record.recorded or not (info := record.info):
            continue
        metrics = record.metrics
        rows.append({**{k: info["spec"].get(k) for k in SPEC_COLUMNS}, "run_id": info["run_id"],
                     "path": record.path, "status": record.outcome, "did_not_learn": record.did_not_learn,
                     "best_value": metrics.get("best_value"), "best_epoch": metrics.get("best_epoch")})
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def index_record(row: pd.Series) -> Record:
    """The :class:`~covid_lib.runs.Record` of a row of :func:`record_index` (or :func:`run_row`)."""
    path = Path(row["path"])
    return Record.of(path.name, results=path.parent)


def run_row(index: pd.DataFrame, **where) -> pd.Series | None:
    """The record of :func:`record_index` whose spec fields equal ``where`` (None: unset), or None.

    ``precision`` defaults to None (the profile's precision): the ``precision`` grid's records,
    which set it explicitly, are other runs; so are planted runs (``plant`` defaults to None). With
    a ``profile``, ``input_size`` defaults to that profile's: the ``resolution`` grid's 224-px runs
    share every other field with a Table II cell.
    """
    where.setdefault("precision", None)
    where.setdefault("plant", None)
    if "profile" in where and "input_size" not in where:
        where["input_size"] = get_profile(where["profile"]).input_size
    sel = index
    for key, value in where.items():
        sel = sel[sel[key].isna()] if value is None else sel[sel[key] == value]
    return None if sel.empty else sel.iloc[0]



def _fmt(d: dict | None) -> str:
    return "–" if not d else format_estimate(d["value"], d["low"], d["high"])


def pretraining_table(index: pd.DataFrame, profile: str = "cpu") -> pd.DataFrame:
    """Each pre-training record: test AUC and accuracy with intervals, epochs, speed, learned or not."""
    out = []
    for _, r in index[(index["task"] == "pretrain") & (index["profile"] == profile)].iterrows():
        record = index_record(r)
        m, t, h = record.metrics, record.timings, record.history
        task = "3 classes, macro AUC" if m.get("num_classes", 2) > 2 else "pneumonia yes/no"
        out.append({"source (task)": f"{r['composition'].replace('_', ' ')} ({task})",  # spaces let columns wrap
                    "model": f"{r['arch']}, pipeline {r['pipeline']}, {r['input_size']} px", "seed": r["seed"],
                    "n train/val/test": " / ".join(str(m["splits"][s]["n_used"]) for s in ("train", "val", "test")),
                    "test AUC [95% CI]": _fmt(m.get("test_auc_interval")),
                    "test accuracy [95% CI]": _fmt(m.get("test_accuracy_interval")),
                    "epochs run (best)": f"{len(h)} ({r['best_epoch']})",
                    "train img/s": round(t.get("train_images_per_s", float("nan"))),
                    "minutes": round(t["total_s"] / 60, 1),
                    "learned": "no: did not learn" if r["did_not_learn"] else "yes"})
    return pd.DataFrame(out)


def test_scores(row: pd.Series, test_set: str) -> pd.DataFrame:
    """Per-image scores of a record on one test set, indexed by ``(source, image_id)``."""
    return index_record(row).scores(test_set).set_index(["source", "image_id"]).sort_index()


def pretraining_gain(index: pd.DataFrame, *, composition: str = "CORDA", test_set: str | None = None,
                     arch: str = "resnet18", pretrain: str = "kermany", profile: str = "cpu", seed: int = 0,
                     n_boot: int = 2000) -> dict | None:
    """Test AUC of a pre-trained fine-tune against the same model from scratch, on the same images.

    The difference gets a paired DeLong test (images as units) and the paired patient-cluster
    bootstrap of :func:`covid_lib.stats.paired_cluster_bootstrap` (patients as units; the deciding
    one when patients have several images): ``difference_cluster_ci`` and ``cluster_p``.
    """
    test_set = test_set or composition
    common = dict(task="covid", composition=composition, arch=arch, profile=profile, seed=seed,
                  pipeline="paper")
    a, b = run_row(index, pretrain=pretrain, **common), run_row(index, pretrain=None, **common)
    if a is None or b is None:
        return None
    sa, sb = test_scores(a, test_set), test_scores(b, test_set)
    both = sa.join(sb[["score"]].rename(columns={"score": "score_scratch"}), how="inner")
    y, s1, s0 = both["label"].to_numpy(), both["score"].to_numpy(), both["score_scratch"].to_numpy()
    test = delong_test(y, s1, s0)
    boot = paired_cluster_bootstrap(y, s1, s0, both["group_id"].to_numpy(), n_boot=n_boot)
    return {"composition": composition, "test_set": test_set, "n_images": len(y),
            "n_patients": both["group_id"].nunique(), "pretrained": a["run_id"], "scratch": b["run_id"],
            "auc_pretrained": float(test.auc_a), "auc_scratch": float(test.auc_b),
            "pretrained_did_not_learn": bool(a["did_not_learn"]), "scratch_did_not_learn": bool(b["did_not_learn"]),
            "difference": float(test.auc_a - test.auc_b), "delong_p": float(test.p_value),
            "difference_cluster_ci": (boot.low, boot.high), "cluster_p": boot.p_value}


def precision_table(index: pd.DataFrame, *, composition: str = "CORDA", test_set: str | None = None,
                    profile: str = "cpu", arch: str = "resnet18") -> pd.DataFrame:
    """Test AUC per seed in fp32 and bf16 (the ``precision`` grid: ``arch`` from scratch with the
    paper's chain and an explicit precision; other architectures' fp32 twins, e.g. the precision
    control's Conv8, are not its runs), with mean and SD per precision."""
    test_set = test_set or composition
    rows = []
    for _, r in index[(index["task"] == "covid") & (index["composition"] == composition) & (index["profile"] == profile)
                      & index["precision"].notna() & (index["pretrain"].isna()) & (index["arch"] == arch)
                      & (index["pipeline"] == "paper")].iterrows():
        record = index_record(r)
        m = record.table
        m = m[(m["test_set"] == test_set)].iloc[0]
        t = record.timings
        rows.append({"precision": r["precision"], "seed": r["seed"], "test AUC": m["auc"],
                     "AUC [95% CI]": format_estimate(m["auc"], m["auc_low"], m["auc_high"]),
                     "did not learn": r["did_not_learn"], "train img/s": t.get("train_images_per_s")})
    return pd.DataFrame(rows).sort_values(["precision", "seed"]).reset_index(drop=True) if rows else pd.DataFrame()


def markdown(df: pd.DataFrame) -> str:
    """A plain Markdown table (no tabulate dependency)."""
    if df.empty:
        return "_No records yet: run the grid named above._"
    cells = df.astype(object).where(df.notna(), "–")
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines)
