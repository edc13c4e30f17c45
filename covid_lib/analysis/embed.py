"""Features by source (Tartaglione et al. 2020, Sec. IV-C, Fig. 3): encoder features, their t-SNE,
and how well source and label can be read off them.

The paper draws a t-SNE of the features of the ChestXRay-pre-trained encoder trained on
CORDA&ChestXRay: ChestXRay and CORDA images fall apart "regardless of the COVID label" (Fig. 3a),
RSNA and CORDA do not (Fig. 3b). A picture is not a measurement, so besides the t-SNE
(openTSNE, :func:`tsne_embedding`, seeded) this module reads source and label off the features with
a k-nearest-neighbour classifier that never takes a neighbour from the image's own patient group
(:func:`knn_predict`) and reports its balanced accuracy with a patient-cluster bootstrap interval,
for several encoders on the same images (:func:`separability_table`; chance is 1 / classes).

Features are the global-pooled penultimate activations (timm's ``forward_features`` then
``forward_head(pre_logits=True)``; Conv8 has the same interface), standardised and reduced to at
most 50 principal components (:func:`prepare_features`) before both the t-SNE and the k-NN.

Example:
    >>> import numpy as np
    >>> X = np.r_[np.zeros((6, 3)), np.ones((6, 3))] + np.random.default_rng(0).normal(0, .1, (12, 3))
    >>> y = np.r_[np.zeros(6, int), np.ones(6, int)]
    >>> knn_predict(X, y, np.arange(12).astype(str), k=3).tolist() == y.tolist()
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from covid_lib import stats
from covid_lib.metrics import Estimate

#: The sets of the figure: Table I's four stand-ins and the unseen Hannover hospital.
SETS = ("CORDA", "COVID-ChestXRay", "ChestXRay", "RSNA", "Hannover")
SET_COLORS = {"CORDA": "tab:orange", "COVID-ChestXRay": "tab:red", "ChestXRay": "tab:blue", "RSNA": "tab:green",
              "Hannover": "tab:purple"}
LABEL_COLORS = {1: "tab:red", 0: "tab:gray"}


# --------------------------------------------------------------------------------------- images
def feature_rows(data_root: str | os.PathLike | None = None, *, split_seed: int = 0, split: str = "test") -> pd.DataFrame:
    """The ``split`` images of every set of :data:`SETS`, with ``set``, ``source`` and ``label`` (COVID)."""
    from covid_lib.data import global_splits
    from covid_lib.data.compose import stand_in_rows

    splits = global_splits(data_root, seed=split_seed)
    parts = [stand_in_rows(splits, s) for s in SETS if s != "Hannover"]
    hannover = splits[splits["source"] == "hannover"].assign(set="Hannover")
    parts.append(hannover.assign(label=hannover["covid"].astype(int)))
    rows = pd.concat(parts, ignore_index=True)
    return rows[rows["split"] == split].reset_index(drop=True)


def pooled_features(model: torch.nn.Module, data, *, batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """Global-pooled penultimate features ``(N, num_features)`` of a timm-style model over a dataset."""
    model = model.to(device).eval()
    out = []
    with torch.inference_mode():
        for x, _, _ in data.batches(batch_size, device=device):
            out.append(model.forward_head(model.forward_features(x), pre_logits=True).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, int(getattr(model, "num_features", 0))), np.float32)


def encoder_features(spec, rows: pd.DataFrame, *, data_root: str | os.PathLike | None = None, device: str = "cpu",
                     storage: str | os.PathLike | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """A finished run's features on ``rows`` through its own chain and normalisation; returns the
    features and the rows the chain kept (in order)."""
    from covid_lib.runs import load_model
    from covid_lib.runs.execution import rows_dataset

    model, meta = load_model(spec, device, storage)
    data, kept, _ = rows_dataset(spec, rows, mean=meta["mean"], std=meta["std"], data_root=data_root,
                                 set_name="features")
    return pooled_features(model, data, device=device), kept.reset_index(drop=True)


# ---------------------------------------------------------------------------------------- spaces
def prepare_features(X: np.ndarray, n_components: int = 50) -> np.ndarray:
    """Standardised features (constant columns dropped) projected on at most ``n_components``
    principal components."""
    from sklearn.decomposition import PCA

    X = np.asarray(X, dtype=np.float64)
    sd = X.std(axis=0)
    Z = (X[:, sd > 1e-12] - X[:, sd > 1e-12].mean(axis=0)) / sd[sd > 1e-12]
    k = int(min(n_components, Z.shape[0], Z.shape[1]))
    return PCA(n_components=k, random_state=0).fit_transform(Z) if k < Z.shape[1] else Z


def tsne_embedding(X: np.ndarray, *, seed: int = 0, perplexity: float = 30.0, n_jobs: int = 1) -> np.ndarray:
    """A seeded 2-D openTSNE embedding (PCA initialisation); perplexity is capped for tiny inputs."""
    from openTSNE import TSNE

    perplexity = float(min(perplexity, max(1.0, (len(X) - 1) / 3.0)))
    emb = TSNE(perplexity=perplexity, random_state=seed, n_jobs=n_jobs, verbose=False).fit(np.asarray(X, float))
    return np.asarray(emb)


def knn_predict(X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, k: int = 10) -> np.ndarray:
    """Leave-one-patient-group-out k-NN predictions (Euclidean): each image's ``k`` nearest
    neighbours from *other* groups vote, each vote weighted by 1 / its class's size (so that a
    larger class does not win by its size); ties go to the class with the nearest neighbour."""
    X, y, g = np.asarray(X, float), np.asarray(y), np.asarray(groups).astype(str)
    classes, codes = np.unique(y, return_inverse=True)
    from scipy.spatial.distance import cdist

    d = cdist(X, X, "sqeuclidean")
    d[g[:, None] == g[None, :]] = np.inf
    k = int(min(k, max(1, (np.isfinite(d).sum(1)).min())))
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
    votes_of = codes[nearest]  # (N, k) neighbour classes
    weight = 1.0 / np.bincount(codes, minlength=len(classes))
    votes = np.stack([(votes_of == c).sum(1) * weight[c] for c in range(len(classes))], 1)
    votes[np.arange(len(y)), votes_of[:, 0]] += 1e-9  # tie-break: the nearest neighbour's class
    return classes[votes.argmax(1)]


def balanced_accuracies(y: np.ndarray, preds: list[np.ndarray], groups: np.ndarray, *, n_boot: int = 2000,
                        seed: int = 0, alpha: float = 0.05) -> list[Estimate]:
    """Balanced accuracy (mean recall over classes) of each prediction vector, then of the
    difference ``preds[-1] - preds[0]`` when there are two or more, all from one patient-cluster
    bootstrap (the same resamples: a paired interval of the difference)."""
    y = np.asarray(y)
    classes = np.unique(y)
    onehot = np.stack([y == c for c in classes], 1).astype(float)
    correct = [np.asarray(p) == y for p in preds]

    def ba(w: np.ndarray, c: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.mean((w @ (onehot * c[:, None])) / (w @ onehot), axis=1)

    def statistic(w: np.ndarray) -> np.ndarray:
        cols = [ba(w, c) for c in correct]
        return np.column_stack(cols + ([cols[-1] - cols[0]] if len(cols) > 1 else []))

    point = statistic(np.ones((1, len(y))))[0]
    reps = stats.bootstrap_replicates(statistic, len(y), groups=np.asarray(groups).astype(str), n_boot=n_boot,
                                      seed=seed)
    n_groups = len(set(np.asarray(groups).astype(str)))
    out = []
    for j, v in enumerate(point):
        low, high, _ = stats.percentile_interval(reps[:, j], alpha)
        out.append(Estimate(float(v), low, high, f"cluster bootstrap (n_boot={n_boot}, {n_groups} groups)"))
    return out


@dataclass(frozen=True)
class Comparison:
    """What to read off the features: ``target`` (a column) among the rows ``select`` keeps."""

    name: str
    target: str
    select: Callable[[pd.DataFrame], pd.Series]
    paper: str = ""


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("ChestXRay vs CORDA, COVID- only", "set",
               lambda r: r["set"].isin(["ChestXRay", "CORDA"]) & (r["label"] == 0), "Fig. 3a: clearly separable"),
    Comparison("ChestXRay vs CORDA, both labels", "set", lambda r: r["set"].isin(["ChestXRay", "CORDA"]),
               "Fig. 3a: clearly separable"),
    Comparison("RSNA vs CORDA, COVID- only", "set",
               lambda r: r["set"].isin(["RSNA", "CORDA"]) & (r["label"] == 0), "Fig. 3b: no clear clusters"),
    Comparison("RSNA vs CORDA, both labels", "set", lambda r: r["set"].isin(["RSNA", "CORDA"]),
               "Fig. 3b: no clear clusters"),
    Comparison("source (cohen, kermany, nih, hannover), all images", "source", lambda r: r["source"].notna()),
    Comparison("label within cohen (CORDA + COVID-ChestXRay stand-ins)", "label", lambda r: r["source"] == "cohen",
               "the COVID feature: not shown"),
    Comparison("label, all images (confounded with source)", "label", lambda r: r["label"].notna()),
)


def separability_table(features: dict[str, np.ndarray], rows: pd.DataFrame, *,
                       comparisons: tuple[Comparison, ...] = COMPARISONS, k: int = 10, n_boot: int = 2000,
                       seed: int = 0) -> pd.DataFrame:
    """k-NN balanced accuracy of each comparison for each encoder (prepared features of the same
    ``rows``, in order), plus the paired change from the first encoder to the last.

    Returns one row per comparison: ``comparison, target, n, groups, classes, chance`` then per
    encoder ``value, low, high`` columns (``<name>``, ``<name> low``, ``<name> high``) and
    ``change`` / ``change low`` / ``change high`` when there are two or more encoders.
    """
    names = list(features)
    out = []
    for comp in comparisons:
        keep = comp.select(rows).to_numpy()
        sub = rows[keep]
        y, g = sub[comp.target].astype(str).to_numpy(), sub["group_id"].astype(str).to_numpy()
        row = {"comparison": comp.name, "target": comp.target, "n": int(keep.sum()), "groups": len(set(g)),
               "classes": int(len(np.unique(y))), "chance": 1.0 / max(len(np.unique(y)), 1), "paper": comp.paper}
        if row["classes"] < 2:
            out.append(row)
            continue
        preds = [knn_predict(features[n][keep], y, g, k=k) for n in names]
        est = balanced_accuracies(y, preds, g, n_boot=n_boot, seed=seed)
        for n, e in zip(names + (["change"] if len(names) > 1 else []), est):
            row.update({n: e.value, f"{n} low": e.low, f"{n} high": e.high})
        out.append(row)
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------- figure
def plot_tsne(embeddings: dict[str, np.ndarray], rows: pd.DataFrame, *, point_size: float = 8.0):
    """One row of panels per encoder: coloured by set (left) and by COVID label (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(embeddings), 2, figsize=(11, 4.8 * len(embeddings)), squeeze=False)
    for (name, emb), (ax_set, ax_label) in zip(embeddings.items(), axes):
        for s in SETS:
            m = (rows["set"] == s).to_numpy()
            if m.any():
                ax_set.scatter(emb[m, 0], emb[m, 1], s=point_size, c=SET_COLORS[s], label=f"{s} ({m.sum()})", alpha=.75)
        for lab, txt in ((0, "COVID-"), (1, "COVID+")):
            m = (rows["label"] == lab).to_numpy()
            ax_label.scatter(emb[m, 0], emb[m, 1], s=point_size, c=LABEL_COLORS[lab], label=f"{txt} ({m.sum()})",
                             alpha=.75)
        ax_set.set_title(f"{name}: by set")
        ax_label.set_title(f"{name}: by label")
        for ax in (ax_set, ax_label):
            ax.set_xticks([]), ax.set_yticks([])
            ax.legend(fontsize=8, markerscale=2, loc="best")
    fig.tight_layout()
    return fig


def format_separability(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """:func:`separability_table` with ``value [low, high]`` cells per encoder and for the change."""
    from covid_lib.metrics import format_estimate

    names = [c for c in table.columns if f"{c} low" in table.columns]
    out = table[["comparison", "paper", "n", "groups", "chance"]].copy()
    out["chance"] = out["chance"].round(2)
    for n in names:
        out[n] = [format_estimate(v, lo, hi, digits) if pd.notna(v) else "–"
                  for v, lo, hi in zip(table[n], table[f"{n} low"], table[f"{n} high"])]
    return out


def plot_separability(table: pd.DataFrame, encoders: list[str]):
    """k-NN balanced accuracy per comparison and encoder with its interval; chance dashed."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 0.55 * len(table) + 1.2))
    y = np.arange(len(table))[::-1]
    for j, n in enumerate(encoders):
        off = (j - (len(encoders) - 1) / 2) * 0.25
        ax.errorbar(table[n], y + off, xerr=[table[n] - table[f"{n} low"], table[f"{n} high"] - table[n]],
                    fmt="o", capsize=3, label=n)
    ax.scatter(table["chance"], y, marker="|", s=200, color="black", label="chance")
    ax.set_yticks(y, table["comparison"])
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("k-NN balanced accuracy (leave one patient group out), 95% CI")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------- verdict