"""The latent landscape (Panagiotakopoulos et al., KTH report, Secs. 4.1 and 5.4, Fig. 7): a
self-organising map and a t-SNE of encoder features over all six sources, and *how organised*
the map is by source, by COVID label and by age group.

The report maps images "before and after applying our Neural Network" with a SOM (Kohonen) and a
t-SNE and reads from the pictures that "initially the model was focused on differentiating two
data sets" while the latent representation "is more structured, separating the different
diseases into clusters". A picture is not a measurement, so this module fits a seeded MiniSom on
the prepared features (:func:`covid_lib.analysis.embed.prepare_features`) and measures, per target column
(``source``, ``label``, ``age_group``):

- **purity**: each node's share of its majority class, averaged over nodes weighted by their
  hits (= the share of images that agree with their node's majority; 1: every node holds one
  class), with a patient-cluster bootstrap interval (the map and the node of each image are held
  fixed; patients are resampled with all their images: :func:`covid_lib.stats.bootstrap_replicates`).
  A resample duplicates patients, and a node's majority share can only rise when its few hits
  are duplicated, so the replicates sit above the estimate (by about 0.05-0.1 with a few hits per
  node); they are centred on the estimate (bootstrap bias correction) before the percentiles;
- **chance**: the same purity after permuting the target across the images (the node of each
  image kept), ``n_perm`` times: its mean, 95th percentile and a one-sided permutation p-value.
  Chance is not ``1 / classes``: a node of one hit is always pure, and a dominant class fills
  many nodes, so the permutation sets the floor the map is compared with;
- **excess purity** ``(purity - chance) / (1 - chance)``: 0 at chance, 1 when every node is pure,
  comparable across targets with different numbers and sizes of classes;
- the map's quantisation and topographic errors, U-matrix and hits per node and source.

The t-SNE is :func:`covid_lib.analysis.embed.tsne_embedding`; features are
:func:`covid_lib.analysis.embed.encoder_features`.

Example:
    >>> import numpy as np
    >>> purity(np.array([0, 0, 1, 1]), np.array(["a", "a", "b", "a"]))
    0.75
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from covid_lib import stats
from covid_lib.analysis.shortcuts import probe_rows

#: The six sources of the landscape, in drawing order.
SOURCES: tuple[str, ...] = ("cohen", "hannover", "kermany", "nih", "montgomery", "shenzhen")
#: Age groups (years): children < 18, adults 18-64, 65 and over, unknown.
AGE_GROUPS: tuple[str, ...] = ("children (<18)", "adults (18-64)", "65+", "unknown")
#: Sources whose manifest has no per-image age but whose documentation states the age range
#: (Kermany: paediatric patients aged 1-5, shared/data/README.md); used by :func:`age_group`.
SOURCE_AGE_GROUPS: dict[str, str] = {"kermany": "children (<18)"}
#: What the map is asked to be organised by.
TARGETS: tuple[str, ...] = ("source", "label", "age_group")


# --------------------------------------------------------------------------------------- images
def age_group(age: pd.Series, source: pd.Series | None = None,
              source_groups: dict[str, str] | None = None) -> pd.Series:
    """:data:`AGE_GROUPS` of ages in years (NaN or negative: ``unknown``); rows of a source of
    ``source_groups`` (default :data:`SOURCE_AGE_GROUPS`) without an age take its documented group."""
    a = pd.to_numeric(age, errors="coerce")
    out = pd.Series(AGE_GROUPS[3], index=age.index, dtype=object)
    out[(a >= 0) & (a < 18)] = AGE_GROUPS[0]
    out[(a >= 18) & (a < 65)] = AGE_GROUPS[1]
    out[a >= 65] = AGE_GROUPS[2]
    if source is not None:
        for s, g in (SOURCE_AGE_GROUPS if source_groups is None else source_groups).items():
            out[(source == s).to_numpy() & (out == AGE_GROUPS[3]).to_numpy()] = g
    return out


def stratified_cap(rows: pd.DataFrame, cap: int | None, by: list[str], *, seed: int = 0) -> pd.DataFrame:
    """At most ``cap`` rows, drawn with proportional allocation over the strata ``by`` (largest
    remainders; every stratum keeps at least one row where the cap allows)."""
    if cap is None or len(rows) <= cap:
        return rows
    strata = rows[by].astype(str).agg("|".join, axis=1)
    sizes = strata.groupby(strata, sort=True).size()
    quota = sizes / sizes.sum() * cap
    take = np.floor(quota).astype(int).clip(lower=1).clip(upper=sizes)
    for key in (quota - np.floor(quota)).sort_values(ascending=False).index:
        if take.sum() >= cap:
            break
        if take[key] < sizes[key]:
            take[key] += 1
    while take.sum() > cap:  # the floor of one per stratum overshot: trim the largest
        take[take.idxmax()] -= 1
    rng = np.random.default_rng(seed)
    parts = [g.sample(int(take[k]), random_state=int(rng.integers(2**31))) for k, g in rows.groupby(strata, sort=True)
             if take[k] > 0]
    return pd.concat(parts)


def landscape_rows(splits: pd.DataFrame, *, per_source: int | None = 80, split: str = "test", seed: int = 0,
                   sources: tuple[str, ...] = SOURCES) -> pd.DataFrame:
    """The ``split`` images of ``sources`` (frontal; Cohen copies of Hannover images left out, as in
    :func:`covid_lib.analysis.shortcuts.probe_rows`), at most ``per_source`` per source stratified by COVID
    label and age group, with ``label`` (COVID; the TB and pneumonia sets are COVID-) and
    ``age_group`` (:func:`age_group`)."""
    m = probe_rows(splits[splits["split"] == split], per_source=None, sources=sources)
    m = m.assign(label=m["covid"].fillna(0).astype(int), age_group=age_group(m["age"], m["source"]))
    parts = [stratified_cap(g, per_source, ["label", "age_group"], seed=seed) for _, g in m.groupby("source")]
    out = pd.concat(parts) if parts else m
    order = {s: i for i, s in enumerate(sources)}
    return out.sort_values(["source", "image_id"], key=lambda c: c.map(order) if c.name == "source" else c
                           ).reset_index(drop=True)


# ------------------------------------------------------------------------------------------ map
def som_shape(n: int) -> tuple[int, int]:
    """A near-square grid of about ``5 * sqrt(n)`` nodes (Vesanto's rule of thumb), at least 2 x 2."""
    side = max(2, int(round(math.sqrt(5 * math.sqrt(max(n, 1))))))
    return side, max(2, int(math.ceil(5 * math.sqrt(max(n, 1)) / side)))


@dataclass
class SomFit:
    """A trained map and where each image landed: ``nodes`` (flat index ``i * shape[1] + j``),
    quantisation error (mean distance to the winner) and topographic error (share of images whose
    two best nodes are not neighbours)."""

    som: object
    shape: tuple[int, int]
    nodes: np.ndarray
    quantization_error: float
    topographic_error: float

    def u_matrix(self) -> np.ndarray:
        """Mean distance of each node's weights to its neighbours' (MiniSom ``distance_map``, scaled to [0, 1])."""
        return self.som.distance_map()

    def hits(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Images per node, ``shape``-d (only those of ``mask``)."""
        nodes = self.nodes if mask is None else self.nodes[np.asarray(mask, bool)]
        return np.bincount(nodes, minlength=self.shape[0] * self.shape[1]).reshape(self.shape)


def fit_som(X: np.ndarray, *, shape: tuple[int, int] | None = None, sigma: float | None = None,
            learning_rate: float = 0.5, n_iter: int | None = None, seed: int = 0) -> SomFit:
    """A seeded MiniSom (Gaussian neighbourhood, PCA-initialised weights, images in random order)
    on ``X``; ``sigma`` defaults to a quarter of the longer side, ``n_iter`` to 20 passes."""
    from minisom import MiniSom

    X = np.asarray(X, dtype=float)
    shape = shape or som_shape(len(X))
    sigma = sigma if sigma is not None else max(1.0, max(shape) / 4)
    som = MiniSom(shape[0], shape[1], X.shape[1], sigma=sigma, learning_rate=learning_rate,
                  neighborhood_function="gaussian", random_seed=seed)
    if X.shape[1] >= 2 and len(X) >= 2:
        som.pca_weights_init(X)
    else:
        som.random_weights_init(X)
    som.train(X, n_iter if n_iter is not None else 20 * len(X), random_order=True)
    nodes = np.array([i * shape[1] + j for i, j in (som.winner(x) for x in X)], dtype=int)
    te = float(som.topographic_error(X)) if len(X) and min(shape) > 1 else math.nan
    return SomFit(som, shape, nodes, float(som.quantization_error(X)), te)


# ------------------------------------------------------------------------------------- purity
def _onehot(nodes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, int, int]:
    _, node_code = np.unique(nodes, return_inverse=True)
    _, label_code = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    n_nodes, n_classes = int(node_code.max()) + 1, int(label_code.max()) + 1
    cell = node_code * n_classes + label_code
    return np.eye(n_nodes * n_classes)[cell], n_nodes, n_classes


def weighted_purity(nodes: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Hit-weighted mean majority share for each row of ``weights (b, n)``: ``sum_nodes max_class
    w(node, class) / sum w``."""
    onehot, n_nodes, n_classes = _onehot(nodes, labels)
    w = np.atleast_2d(weights)
    counts = (w @ onehot).reshape(len(w), n_nodes, n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts.max(axis=2).sum(axis=1) / w.sum(axis=1)


def purity(nodes: np.ndarray, labels: np.ndarray) -> float:
    """Share of images that belong to their node's majority class (the hit-weighted mean of node purity)."""
    return float(weighted_purity(nodes, labels, np.ones(len(nodes)))[0])


def permutation_chance(nodes: np.ndarray, labels: np.ndarray, *, n_perm: int = 200, seed: int = 0) -> np.ndarray:
    """Purity after each of ``n_perm`` seeded permutations of ``labels`` across the images (nodes fixed)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    return np.array([purity(nodes, rng.permutation(labels)) for _ in range(n_perm)])


def purity_table(fits: dict[str, SomFit], rows: pd.DataFrame, *, targets: tuple[str, ...] = TARGETS,
                 n_boot: int = 1000, n_perm: int = 200, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Purity of each map (same ``rows``, in order) for each target, with its patient-cluster
    interval, permutation chance and excess purity; with two or more maps also the paired change
    of the excess purity from the first map (same bootstrap resamples of patients).

    Returns one row per (encoder, target): ``encoder, target, n, groups, classes, purity,
    purity_low, purity_high, chance, chance_95, p_perm, excess, excess_low, excess_high,
    change, change_low, change_high`` (change: NaN for the first map), ``qe, te, nodes``.
    """
    names = list(fits)
    groups = rows["group_id"].astype(str).to_numpy()
    chance = {(e, t): permutation_chance(fits[e].nodes, rows[t].to_numpy(), n_perm=n_perm, seed=seed)
              for e in names for t in targets}
    keys = [(e, t) for e in names for t in targets]

    def statistic(w: np.ndarray) -> np.ndarray:
        return np.column_stack([weighted_purity(fits[e].nodes, rows[t].to_numpy(), w) for e, t in keys])

    reps = stats.bootstrap_replicates(statistic, len(rows), groups=groups, n_boot=n_boot, seed=seed) \
        if len(rows) else np.zeros((0, len(keys)))
    observed = np.array([purity(fits[e].nodes, rows[t].to_numpy()) for e, t in keys])
    reps = reps - (np.nanmean(reps, axis=0) - observed)  # bias-centred: see the module docstring
    out = []
    for j, (e, t) in enumerate(keys):
        obs = float(observed[j])
        c = float(chance[e, t].mean())
        excess_reps = (reps[:, j] - c) / (1 - c) if c < 1 else np.full(len(reps), np.nan)
        lo, hi, _ = stats.percentile_interval(reps[:, j], alpha)
        elo, ehi, _ = stats.percentile_interval(excess_reps, alpha)
        row = {"encoder": e, "target": t, "n": len(rows), "groups": len(set(groups)),
               "classes": int(rows[t].nunique()), "purity": obs, "purity_low": lo, "purity_high": hi,
               "chance": c, "chance_95": float(np.quantile(chance[e, t], 0.95)),
               "p_perm": float((1 + (chance[e, t] >= obs - 1e-12).sum()) / (1 + n_perm)),
               "excess": (obs - c) / (1 - c) if c < 1 else math.nan, "excess_low": elo, "excess_high": ehi,
               "change": math.nan, "change_low": math.nan, "change_high": math.nan,
               "qe": fits[e].quantization_error, "te": fits[e].topographic_error,
               "nodes": fits[e].shape[0] * fits[e].shape[1], "interval": f"cluster bootstrap (n_boot={n_boot}, "
               f"{len(set(groups))} patient groups; map fixed)"}
        if e != names[0]:
            first = [r for r in out if r["encoder"] == names[0] and r["target"] == t][0]
            c0 = first["chance"]
            first_reps = (reps[:, keys.index((names[0], t))] - c0) / (1 - c0) if c0 < 1 else np.full(len(reps), np.nan)
            row["change"] = row["excess"] - first["excess"]
            row["change_low"], row["change_high"], _ = stats.percentile_interval(excess_reps - first_reps, alpha)
        out.append(row)
    return pd.DataFrame(out)
