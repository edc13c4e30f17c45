"""What each composition confounds with its label: source, view, era, age, sex, file format, size.

Tartaglione et al. (Sec. III, "hidden biases") warn that a model may learn the acquisition instead
of the disease. CORDA had both labels from one hospital in one fortnight; its public stand-in does
not. This module describes every image of a composition by the metadata a model could pick up
without looking at the lungs, and counts them per label, for the training images (train +
validation) and for the test images.

The factors, from the manifest columns:

- ``source``: the public source (``cohen``, ``kermany``, ``nih``, ...).
- ``view``: PA, AP or AP supine (``view``).
- ``era``: the year of the ``date`` column of the Cohen collection (the study date as its
  contributors wrote it: ``"2018"``, ``"January 22, 2020"``, ``"03/09/20"``), binned as
  ``<=2018``, ``2019``, ``2020``; ``undated`` where the date names no year, and for every other
  source (their manifests carry no date).
- ``age group``: child (< 18), 18-39, 40-59, >= 60, unknown (``age``). Kermany states no age per
  image, but the whole set is pediatric (aged 1-5, Kermany et al. 2018): its rows count as child.
- ``sex``: F, M, unknown (``sex``, upper-cased).
- ``format``: the original file format and colour mode (``orig_format``, ``orig_mode``).
- ``size``: the original longer side in pixels (``orig_width``, ``orig_height``), binned.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

#: Factors of :func:`confounder_counts`, in display order.
FACTORS: tuple[str, ...] = ("source", "view", "era", "age group", "sex", "format", "size")
ERA_LEVELS = ("<=2018", "2019", "2020", "undated")
AGE_LEVELS = ("child (<18)", "18-39", "40-59", ">=60", "unknown")
SEX_LEVELS = ("F", "M", "unknown")
#: Bins of the original longer side, in pixels: [lower, upper) with their labels.
SIZE_BINS: tuple[tuple[int, float, str], ...] = (
    (0, 600, "<600"), (600, 1000, "600-999"), (1000, 1500, "1000-1499"),
    (1500, 2000, "1500-1999"), (2000, np.inf, ">=2000"))
#: Sources whose patients are all children although no age is given per image.
PEDIATRIC_SOURCES = frozenset({"kermany"})
PARTS = ("train+val", "test")
LABEL_NAMES = {1: "COVID+", 0: "COVID-"}

_YEAR4 = re.compile(r"\b(19\d{2}|20\d{2})\b")
_SLASHED = re.compile(r"^\s*\d{1,2}/\d{1,2}/(\d{2}|\d{4})\s*$")


def date_year(dates: pd.Series) -> pd.Series:
    """The year a free-text date names (float, NaN when none): ``"2018"``, ``"May 4, 2010"``,
    ``"03/09/20"`` (two digits mean 20xx); ``"January 12"`` and empty strings give NaN."""

    def one(text) -> float:
        if not isinstance(text, str) or not text.strip():
            return np.nan
        m = _SLASHED.match(text)
        if m:
            y = int(m.group(1))
            return float(2000 + y if y < 100 else y)
        m = _YEAR4.search(text)
        return float(m.group(1)) if m else np.nan

    return pd.Series([one(t) for t in dates], index=dates.index, dtype=float)


def era(year: pd.Series) -> pd.Series:
    """``<=2018``, ``2019``, ``2020`` (or later) or ``undated`` for each year (NaN: undated)."""
    out = np.select([year <= 2018, year == 2019, year >= 2020], ERA_LEVELS[:3], ERA_LEVELS[3])
    return pd.Series(out, index=year.index, dtype=object)


def numeric_age(rows: pd.DataFrame) -> pd.Series:
    """Age in years as float (NaN when the manifest leaves it empty)."""
    if "age" not in rows:
        return pd.Series(np.nan, index=rows.index)
    age = rows["age"].astype(object).where(rows["age"].astype(str).str.strip() != "", np.nan)
    return pd.to_numeric(age, errors="coerce").astype(float)


def age_group(age: pd.Series, source: pd.Series | None = None) -> pd.Series:
    """Age groups of :data:`AGE_LEVELS`; rows of :data:`PEDIATRIC_SOURCES` without an age count as
    children."""
    out = pd.Series(np.select([age < 18, age < 40, age < 60, age >= 60], AGE_LEVELS[:4], AGE_LEVELS[4]),
                    index=age.index, dtype=object)
    if source is not None:
        out[age.isna() & source.isin(PEDIATRIC_SOURCES)] = AGE_LEVELS[0]
    return out


def _sex(rows: pd.DataFrame) -> pd.Series:
    if "sex" not in rows:
        return pd.Series(np.nan, index=rows.index, dtype=object)
    s = rows["sex"].astype(object).where(rows["sex"].notna(), "").astype(str).str.strip().str.upper()
    return s.where(s.isin(["F", "M"]), np.nan).astype(object)


def size_bin(long_side: pd.Series) -> pd.Series:
    """The :data:`SIZE_BINS` label of each original longer side (``unknown`` when missing)."""
    out = pd.Series("unknown", index=long_side.index, dtype=object)
    for low, high, label in SIZE_BINS:
        out[(long_side >= low) & (long_side < high)] = label
    return out


def metadata_features(rows: pd.DataFrame) -> pd.DataFrame:
    """Per image, the metadata a model could use instead of the lungs (same index as ``rows``).

    Columns: ``view``, ``year`` (float), ``age`` (float), ``sex`` (F/M/NaN), ``format`` (e.g.
    ``"JPEG RGB"``), ``width``, ``height`` and ``long_side`` (original pixels), plus the binned
    display factors ``era``, ``age group``, ``size``; NaN where the manifest says nothing.
    """
    date = rows["date"] if "date" in rows else pd.Series(np.nan, index=rows.index)
    year = date_year(date.astype(object))
    age = numeric_age(rows)
    width = pd.to_numeric(rows["orig_width"], errors="coerce").astype(float)
    height = pd.to_numeric(rows["orig_height"], errors="coerce").astype(float)
    long_side = np.maximum(width, height)
    fmt = rows["orig_format"].astype(str) + " " + rows["orig_mode"].astype(str)
    sex = _sex(rows)
    return pd.DataFrame({
        "view": rows["view"].astype(object), "year": year, "age": age, "sex": sex, "format": fmt.astype(object),
        "width": width, "height": height, "long_side": long_side,
        "era": era(year), "age group": age_group(age, rows["source"]),
        "sex_level": sex.fillna("unknown"), "size": size_bin(long_side),
    }, index=rows.index)


def _part(split: pd.Series) -> pd.Series:
    return split.map(lambda s: "test" if s == "test" else "train+val")


def level_order(factor: str, observed) -> list[str]:
    """The display order of a factor's observed levels (fixed for era, age, sex, size; else sorted)."""
    fixed = {"era": ERA_LEVELS, "age group": AGE_LEVELS, "sex": SEX_LEVELS,
             "size": tuple(b[2] for b in SIZE_BINS) + ("unknown",)}.get(factor)
    if fixed is not None:
        return [lv for lv in fixed if lv in set(observed)]
    return sorted(set(observed))


def confounder_counts(composed: pd.DataFrame) -> pd.DataFrame:
    """Counts and shares per composition, part, factor, level and label (long format).

    Args:
        composed: rows of one or more compositions (:func:`covid_lib.data.compose`): at least
            ``composition, split, label, source, view, date, age, sex, orig_*``.

    Returns:
        ``composition, part, factor, level, label, n, share``: ``part`` is ``train+val`` or
        ``test``; ``share`` is ``n`` over the images of that composition, part and label.
    """
    feats = metadata_features(composed)
    values = pd.DataFrame({
        "composition": composed["composition"], "part": _part(composed["split"]),
        "label": composed["label"].astype(int),
        "source": composed["source"].astype(object), "view": feats["view"], "era": feats["era"],
        "age group": feats["age group"], "sex": feats["sex_level"], "format": feats["format"],
        "size": feats["size"]})
    long = values.melt(id_vars=["composition", "part", "label"], value_vars=list(FACTORS),
                       var_name="factor", value_name="level")
    counts = long.groupby(["composition", "part", "factor", "level", "label"]).size().rename("n").reset_index()
    totals = values.groupby(["composition", "part", "label"]).size().rename("total").reset_index()
    counts = counts.merge(totals, on=["composition", "part", "label"])
    counts["share"] = counts["n"] / counts["total"]
    order = {f: i for i, f in enumerate(FACTORS)}
    counts["_f"] = counts["factor"].map(order)
    counts["_l"] = [(level_order(f, counts.loc[counts["factor"] == f, "level"]).index(lv))
                    for f, lv in zip(counts["factor"], counts["level"])]
    counts["_p"] = counts["part"].map({p: i for i, p in enumerate(PARTS)})
    counts["_c"] = counts["composition"].map({c: i for i, c in enumerate(dict.fromkeys(composed["composition"]))})
    counts = counts.sort_values(["_c", "_p", "_f", "_l", "label"], ascending=[True, True, True, True, False])
    return counts.drop(columns=["_c", "_f", "_l", "_p", "total"]).reset_index(drop=True)


def confounder_table(counts: pd.DataFrame, composition: str) -> pd.DataFrame:
    """One composition's counts as a readable table: a row per factor and level, a column per
    part and label, cells ``"n (share)"`` (``"-"`` where no image)."""
    c = counts[counts["composition"] == composition].copy()
    c["column"] = list(zip(c["part"], c["label"].map(LABEL_NAMES)))
    c["cell"] = [f"{n} ({s:.0%})" for n, s in zip(c["n"], c["share"])]
    wide = c.pivot_table(index=["factor", "level"], columns="column", values="cell", aggfunc="first")
    columns = [(p, lab) for p in PARTS for lab in ("COVID+", "COVID-") if (p, lab) in wide.columns]
    index = sorted(set(zip(c["factor"], c["level"])), key=lambda fl: (
        FACTORS.index(fl[0]), level_order(fl[0], c.loc[c["factor"] == fl[0], "level"]).index(fl[1])))
    wide = wide.loc[index, columns].fillna("-")
    wide.columns = pd.MultiIndex.from_tuples(columns, names=["part", "label"])
    return wide


def median_ages(composed: pd.DataFrame) -> pd.DataFrame:
    """Median age (with quartiles) per composition, part and label, over images stating an age.

    Kermany's children carry no age per image and are left out here (see :func:`age_group`).
    """
    age = numeric_age(composed)
    frame = pd.DataFrame({"composition": composed["composition"], "part": _part(composed["split"]),
                          "label": composed["label"].astype(int).map(LABEL_NAMES), "age": age})
    g = frame.groupby(["composition", "part", "label"], sort=False)["age"]
    out = pd.DataFrame({"images": g.size(), "age known": g.count(), "median age": g.median(),
                        "q1": g.quantile(0.25), "q3": g.quantile(0.75)}).reset_index()
    return out


def confounder_summary(composed: pd.DataFrame) -> pd.DataFrame:
    """One row per composition, part and label: the headline shares (PA, dated <= 2018, undated,
    child, JPEG, main source) and the median age."""
    feats = metadata_features(composed)
    frame = pd.DataFrame({"composition": composed["composition"], "part": _part(composed["split"]),
                          "label": composed["label"].astype(int).map(LABEL_NAMES),
                          "source": composed["source"].astype(str), "PA": feats["view"].eq("PA"),
                          "<=2018": feats["era"].eq("<=2018"), "undated": feats["era"].eq("undated"),
                          "child": feats["age group"].eq(AGE_LEVELS[0]),
                          "JPEG": feats["format"].str.startswith("JPEG"), "age": feats["age"]})
    g = frame.groupby(["composition", "part", "label"], sort=False)
    out = g[["PA", "<=2018", "undated", "child", "JPEG"]].mean()
    out.insert(0, "images", g.size())
    out.insert(1, "main source", g["source"].agg(lambda s: f"{s.value_counts().index[0]} "
                                                           f"({s.value_counts(normalize=True).iloc[0]:.0%})"))
    out["median age"] = g["age"].median()
    return out
