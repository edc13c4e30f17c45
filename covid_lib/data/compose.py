"""The paper's Table I rebuilt from public sources: stand-ins and composed datasets.

Tartaglione et al. (Sec. IV, Table I) train and test on five compositions of four sets: CORDA
(private hospital data, both labels), ChestXRay (Kermany, COVID-), RSNA (COVID-) and COVID-ChestXRay
(Cohen, early April 2020). Training sets are balanced "where possible" by adding COVID- images from
the borrowed set, "where not possible" by subsampling the larger class; COVID-ChestXRay keeps the
15-image test (10 COVID+, 5 COVID-) of earlier works.

CORDA is private. Its stand-in here is the part of the Cohen collection that is *not* the April
snapshot, *not* a copy of a Hannover image and *not* located at Hannover Medical School: frontal images of many hospitals with both labels,
disjoint from the COVID-ChestXRay stand-in image by image, and leaving the Hannover repository an
unseen hospital. Every set draws on the one per-patient split of :func:`global_splits`, so no image
tested in one composition was trained on in another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from covid_lib.data.sources import DataError, load_sources
from covid_lib.data.splits import SPLITS, assign_splits
from covid_lib.paths import resolve_data_root

#: The last commit date of the COVID-ChestXRay version the paper used ("137 PA CXRs").
SNAPSHOT_DATE = "2020-04-05"
#: Version of the composition rules, hashed into every COVID run id (:class:`covid_lib.runs.RunSpec`):
#: 2 = Cohen images located at Hannover Medical School leave the CORDA stand-in; 3 = Cohen patients
#: 137 and 202 (one radiograph published twice) share a split
#: (:data:`covid_lib.data.splits.JUDGED_SAME_PATIENT`).
COMPOSE_VERSION = 3
#: The fixed COVID-ChestXRay test of the paper and the works it compares with.
SNAPSHOT_TEST = {1: 10, 0: 5}


def _in_snapshot(m: pd.DataFrame) -> pd.Series:
    seen = m["first_seen"].fillna("")
    return (m["source"] == "cohen") & (m["view"] == "PA") & (seen != "") & (seen <= SNAPSHOT_DATE)


def _hannover_copy(m: pd.DataFrame) -> pd.Series:
    hannover_ids = set(m.loc[m["source"] == "hannover", "image_id"])
    return (m["source"] == "cohen") & m["image_id"].isin(hannover_ids)


def at_hannover(m: pd.DataFrame) -> pd.Series:
    """Cohen rows whose ``location`` is Hannover Medical School: counted as Hannover, by location.

    Most are copies of Hannover images; 10 (patients 223, 252, 253, 270) are not, and would
    otherwise put the unseen hospital into the CORDA stand-in.
    """
    location = m["location"] if "location" in m else pd.Series("", index=m.index)
    return (m["source"] == "cohen") & location.fillna("").str.contains("Hannover Medical School", regex=False)


@dataclass(frozen=True)
class StandIn:
    """A set of the paper and the public rows that stand in for it."""

    paper_name: str
    source: str
    rule: str
    why: str
    select: Callable[[pd.DataFrame], pd.Series]


STAND_INS: dict[str, StandIn] = {
    s.paper_name: s
    for s in (
        StandIn(
            "CORDA", "cohen",
            "frontal (PA, AP, AP supine), not in the April-2020 snapshot, not a copy of a Hannover image "
            "nor located at Hannover Medical School",
            "CORDA is private. The rest of the Cohen collection is the only public source with both "
            "labels; removing the snapshot keeps it disjoint from COVID-ChestXRay, removing the "
            "Hannover copies keeps Hannover an unseen hospital. Unlike CORDA it mixes many hospitals.",
            lambda m: ((m["source"] == "cohen") & m["frontal"] & ~_in_snapshot(m) & ~_hannover_copy(m)
                       & ~at_hannover(m)),
        ),
        StandIn(
            "COVID-ChestXRay", "cohen", f"PA, first seen in the repository up to {SNAPSHOT_DATE}",
            "The paper used the early-April-2020 version (137 PA: 108 COVID+, 29 COVID-); git dates "
            "per image rebuild it (the exact filter is not published).",
            lambda m: _in_snapshot(m),
        ),
        StandIn(
            "ChestXRay", "kermany", "all images (normal, bacterial, viral pneumonia), COVID-",
            "The same dataset (a 960-image subset): pediatric patients aged 1-5.",
            lambda m: m["source"] == "kermany",
        ),
        StandIn(
            "RSNA", "nih", "all images (500 No Finding, 500 Pneumonia), COVID-",
            "RSNA's images are NIH ChestX-ray14 images; this is a 1000-image subset.",
            lambda m: m["source"] == "nih",
        ),
    )
}

#: Sources with a role outside Table I.
OTHER_ROLES = {
    "hannover": "an unseen hospital (COVID+ only): tests models on a source they never saw",
    "montgomery": "lung segmentation training (manual masks)",
    "shenzhen": "lung segmentation training (manual masks)",
}


@dataclass(frozen=True)
class Composition:
    """A composed dataset of Table I: the sets it draws on and how its classes are balanced."""

    name: str
    sets: tuple[str, ...]
    borrow_negatives_from: str | None = None
    balance: str = "subsample"  # "add_negatives" | "subsample" | "none"


COMPOSITIONS: dict[str, Composition] = {
    c.name: c
    for c in (
        Composition("CORDA", ("CORDA",)),
        Composition("CORDA&ChestXRay", ("CORDA",), "ChestXRay", "add_negatives"),
        Composition("CORDA&RSNA", ("CORDA",), "RSNA", "add_negatives"),
        Composition("CORDA&COVID-ChestXRay", ("CORDA", "COVID-ChestXRay")),
        Composition("COVID-ChestXRay", ("COVID-ChestXRay",), balance="none"),
    )
}


#: Splits already computed in this process, per (data root, seed); see :func:`global_splits`.
_SPLITS: dict[tuple[str, int], pd.DataFrame] = {}
#: The exclusions of the sources behind :data:`_SPLITS`, per data root.
_EXCLUDED: dict[str, pd.DataFrame] = {}


def global_splits(data_root: str | os.PathLike | None = None, *, seed: int = 0,
                  progress: bool = False) -> pd.DataFrame:
    """Every image of every source with its ``group_id`` and ``split``: one split per patient.

    Computed once per data root and seed in a process (``progress``: bars on stderr meanwhile).
    """
    key = (str(resolve_data_root(data_root)), seed)
    if key not in _SPLITS:
        loaded = load_sources(data_root=key[0], views="all", progress=progress)
        _SPLITS[key] = assign_splits(loaded.manifest, seed=seed, progress=progress)
        _EXCLUDED[key[0]] = loaded.exclusions
    return _SPLITS[key].copy()


def unreadable_files(data_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """The images the integrity check excluded before the splits (missing, undecodable or of the
    wrong size; not duplicate rows or views), per source: what :func:`global_splits` never sees."""
    root = str(resolve_data_root(data_root))
    if root not in _EXCLUDED:
        global_splits(root)
    ex = _EXCLUDED[root]
    return ex[~ex["reason"].str.contains("duplicate row|view \\(frontal|unknown view", regex=True)]


def stand_in_rows(splits: pd.DataFrame, paper_name: str) -> pd.DataFrame:
    """The rows standing in for one of the paper's sets, with ``set`` and ``label`` columns."""
    stand_in = STAND_INS[paper_name]
    rows = splits[stand_in.select(splits)].copy()
    rows["set"] = paper_name
    rows["label"] = rows["covid"].astype(int)
    return rows


def _snapshot_test(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The 15-image COVID-ChestXRay test: 10 COVID+ and 5 COVID- images of test patients, one per
    patient group."""
    rng = np.random.default_rng(seed)
    test = rows[rows["split"] == "test"]
    picked = []
    for label, n in SNAPSHOT_TEST.items():
        pool = test[test["label"] == label]
        one_per_group = pool.groupby("group_id").sample(1, random_state=int(rng.integers(2**31)))
        if len(one_per_group) < n:
            raise DataError(f"only {len(one_per_group)} COVID-ChestXRay test patients with label {label}; "
                            f"{n} needed for the paper's 15-image test (try another seed)")
        picked.append(one_per_group.sample(n, random_state=int(rng.integers(2**31))))
    return pd.concat(picked)


def _subsample_larger(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    counts = rows["label"].value_counts()
    if len(counts) < 2:
        return rows
    n = counts.min()
    parts = [g.sample(n, random_state=int(rng.integers(2**31))) if len(g) > n else g
             for _, g in rows.groupby("label")]
    return pd.concat(parts)


def _add_negatives(rows: pd.DataFrame, pool: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    need = int((rows["label"] == 1).sum() - (rows["label"] == 0).sum())
    if need <= 0:
        return rows
    added = pool.sample(min(need, len(pool)), random_state=int(rng.integers(2**31)))
    combined = pd.concat([rows, added])
    return combined if len(added) == need else _subsample_larger(combined, rng)


def compose(
    name: str,
    data_root: str | os.PathLike | None = None,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """One composed dataset of Table I: its images with ``set``, ``label`` (COVID) and ``split``.

    Training and validation sets are balanced as the composition says (add COVID- images from the
    borrowed set, or subsample the larger class); test sets of the "&ChestXRay"/"&RSNA"
    compositions get as many borrowed COVID- images as they lack (paper: 45 + 45 against 90).
    """
    if name not in COMPOSITIONS:
        raise DataError(f"unknown composition {name!r}; choose from {', '.join(COMPOSITIONS)}")
    spec = COMPOSITIONS[name]
    splits = global_splits(data_root, seed=seed)
    rng = np.random.default_rng(seed)
    parts = []
    for split in SPLITS:
        rows = []
        for set_name in spec.sets:
            set_rows = stand_in_rows(splits, set_name)
            if set_name == "COVID-ChestXRay" and split == "test":
                rows.append(_snapshot_test(set_rows, seed))
            else:
                rows.append(set_rows[set_rows["split"] == split])
        rows = pd.concat(rows)
        if spec.balance == "add_negatives":
            pool = stand_in_rows(splits, spec.borrow_negatives_from)
            rows = _add_negatives(rows, pool[pool["split"] == split], rng)
        elif spec.balance == "subsample" and split != "test":
            rows = _subsample_larger(rows, rng)
        parts.append(rows)
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "composition", name)
    return out



def counts_in_test(name: str, data_root: str | os.PathLike | None = None, *, seed: int = 0) -> dict[int, int]:
    """Images per label (1: COVID+, 0: COVID-) in the test split of composition ``name``
    (:func:`compose`; COVID-ChestXRay: the fixed test of :data:`SNAPSHOT_TEST`)."""
    labels = compose(name, data_root, seed=seed).query("split == 'test'")["label"]
    return {label: int((labels == label).sum()) for label in (1, 0)}

def _paper_table_one() -> pd.DataFrame:
    path = resources.files("covid_lib.paper") / "tartaglione2020_table1.csv"
    with resources.as_file(path) as p:
        return pd.read_csv(Path(p))


_PAPER_COLUMNS = {"CORDA": "corda", "RSNA": "rsna", "ChestXRay": "chestxray", "COVID-ChestXRay": "covidchestxray"}


def composition_counts(composed: pd.DataFrame) -> pd.DataFrame:
    """Counts per composition, split, set and label (long format)."""
    counts = composed.groupby(["composition", "split", "set", "label"]).size().rename("ours")
    return counts.reset_index()


def table_one(data_root: str | os.PathLike | None = None, *, seed: int = 0) -> pd.DataFrame:
    """The Table I analog beside the paper's counts, one row per composition, split, set and label.

    Columns: ``composition, split, set, label, ours, paper`` (paper is NaN for the validation split,
    which Table I does not list, and for cells the paper leaves empty).
    """
    ours = pd.concat([composition_counts(compose(n, data_root, seed=seed)) for n in COMPOSITIONS])
    paper = _paper_table_one()
    rows = []
    for _, r in paper.iterrows():
        for set_name, key in _PAPER_COLUMNS.items():
            for label, sign in ((1, "pos"), (0, "neg")):
                value = r[f"{key}_{sign}"]
                if pd.notna(value):
                    rows.append({"composition": r["composed_dataset"], "split": r["split"],
                                 "set": set_name, "label": label, "paper": int(value)})
    merged = ours.merge(pd.DataFrame(rows), how="outer", on=["composition", "split", "set", "label"])
    merged["ours"] = merged["ours"].fillna(0).astype(int)
    order = {n: i for i, n in enumerate(COMPOSITIONS)}
    merged["_c"] = merged["composition"].map(order)
    merged["_s"] = merged["split"].map({s: i for i, s in enumerate(SPLITS)})
    return merged.sort_values(["_c", "_s", "set", "label"], ascending=[True, True, True, False]).drop(
        columns=["_c", "_s"]).reset_index(drop=True)


def table_one_wide(long: pd.DataFrame) -> pd.DataFrame:
    """Table I's layout: a row per composition and split, "ours (paper)" per set and label."""
    long = long.copy()
    sign = long["label"].map({1: "COVID+", 0: "COVID-"})
    long["column"] = long["set"] + " " + sign
    long["cell"] = [f"{o} ({int(p)})" if pd.notna(p) else f"{o} (-)" for o, p in zip(long["ours"], long["paper"])]
    wide = long.pivot_table(index=["composition", "split"], columns="column", values="cell", aggfunc="first")
    totals = long.groupby(["composition", "split", sign])[["ours", "paper"]].sum(min_count=1)
    for s in ("COVID+", "COVID-"):
        t = totals.xs(s, level=2)
        wide[f"total {s}"] = [f"{int(o)} ({int(p)})" if pd.notna(p) else f"{int(o)} (-)"
                              for o, p in zip(t["ours"], t["paper"])]
    columns = [f"{n} {s}" for n in STAND_INS for s in ("COVID+", "COVID-") if f"{n} {s}" in wide]
    wide = wide[columns + ["total COVID+", "total COVID-"]].fillna("-")
    index = [(c, s) for c in COMPOSITIONS for s in SPLITS if (c, s) in wide.index]
    return wide.loc[index]


def train_val_vs_paper(long: pd.DataFrame) -> pd.DataFrame:
    """Our training + validation counts beside the paper's *train* rows, which include validation.

    Table I (Sec. IV) lists train and test only; the 20 % validation share is taken from its train
    rows. Args: ``long`` from :func:`table_one`. Returns a row per composition and set (plus a
    ``total`` row per composition): ``ours COVID+, paper COVID+, ours COVID-, paper COVID-`` and
    whether each side is balanced (equal classes).
    """
    fit = long[long["split"].isin(["train", "val"])]
    ours = fit.groupby(["composition", "set", "label"])["ours"].sum()
    paper = long[long["split"] == "train"].groupby(["composition", "set", "label"])["paper"].sum(min_count=1)
    both = pd.concat([ours, paper], axis=1).reset_index()
    totals = both.groupby(["composition", "label"])[["ours", "paper"]].sum(min_count=1).reset_index()
    both = pd.concat([both, totals.assign(set="total")], ignore_index=True)
    sign = both["label"].map({1: "COVID+", 0: "COVID-"})
    wide = both.assign(sign=sign).pivot_table(index=["composition", "set"], columns="sign",
                                              values=["ours", "paper"], aggfunc="first")
    wide.columns = [f"{who} {s}" for who, s in wide.columns]
    wide = wide.reindex(columns=["ours COVID+", "paper COVID+", "ours COVID-", "paper COVID-"])
    total = wide.xs("total", level="set")
    wide["balanced"] = ""
    for name in total.index:
        t = total.loc[name]
        wide.loc[(name, "total"), "balanced"] = (
            f"ours {'yes' if t['ours COVID+'] == t['ours COVID-'] else 'no'}, "
            f"paper {'yes' if t['paper COVID+'] == t['paper COVID-'] else 'no'}")
    order = [(c, s) for c in COMPOSITIONS for s in [*STAND_INS, "total"] if (c, s) in wide.index]
    return wide.loc[order].astype({c: "Int64" for c in wide.columns if c != "balanced"})


def stand_in_table() -> pd.DataFrame:
    """The mapping from the paper's sets to public sources, with the rule and the reason."""
    rows = [{"paper set": s.paper_name, "source": s.source, "rule": s.rule, "why": s.why}
            for s in STAND_INS.values()]
    rows += [{"paper set": "-", "source": src, "rule": "all images", "why": role}
             for src, role in OTHER_ROLES.items()]
    return pd.DataFrame(rows)
