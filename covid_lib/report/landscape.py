"""The latent landscape chapter's records, features, figures and tables (KTH report, Secs. 4.1,
5.4, Fig. 7; measurements in :mod:`covid_lib.analysis.landscape`).

Three encoders are compared on the same images: the ChestXRay (Kermany) pre-trained ResNet-18
before fine-tuning (the ``pretrain`` run of grid ``table2``), the same encoder after fine-tuning
on CORDA&ChestXRay, and a ResNet-18 trained from scratch on CORDA&ChestXRay. An encoder whose
record or checkpoint is missing is listed as such and left out; nothing is trained here.

Example:
    >>> import pandas as pd
    >>> format_purity(pd.DataFrame(columns=list(PURITY_COLUMNS))).empty
    True
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from covid_lib.analysis.landscape import AGE_GROUPS, SOURCES, SomFit

SOURCE_COLORS = {"cohen": "tab:orange", "hannover": "tab:purple", "kermany": "tab:blue", "nih": "tab:green",
                 "montgomery": "tab:brown", "shenzhen": "tab:olive"}
LABEL_NAMES = {0: "COVID-", 1: "COVID+"}
LABEL_COLORS = {0: "tab:gray", 1: "tab:red"}
AGE_COLORS = dict(zip(AGE_GROUPS, ("tab:cyan", "tab:blue", "navy", "lightgray")))
TARGET_COLORS = {"source": SOURCE_COLORS, "label": LABEL_COLORS, "age_group": AGE_COLORS}
TARGET_NAMES = {"source": "source", "label": "COVID label", "age_group": "age group"}
PURITY_COLUMNS = ("encoder", "target", "classes", "purity", "purity_low", "purity_high", "chance", "chance_95",
                  "p_perm", "excess", "excess_low", "excess_high", "change", "change_low", "change_high")


# ---------------------------------------------------------------------------------------- records
def encoder_records(profile: str = "cpu", *, composition: str = "CORDA&ChestXRay", pretrain: str = "kermany",
                    seed: int = 0, data_root: str | os.PathLike | None = None,
                    results: str | os.PathLike | None = None, storage: str | os.PathLike | None = None
                    ) -> pd.DataFrame:
    """The three encoders of the chapter from the Table II grid of ``pretrain``
    (:func:`covid_lib.grid.table2_grid`): ``encoder, role, run_id, status, spec``.

    ``status`` is a :attr:`covid_lib.runs.Record.status` with the checkpoint asked for: ``done``,
    ``did not learn``, ``collapsed``, ``failed``, ``missing`` (no record) or ``recorded (no
    checkpoint here)`` (a record whose checkpoint is not in the cache); only ``done``, ``did not
    learn`` and ``collapsed`` encoders can be mapped.
    """
    from covid_lib.grid import grid_specs, table2_grid
    from covid_lib.runs import Record

    specs = grid_specs(table2_grid(pretrain), profile, data_root=data_root)
    covid = {(s.pretrain, s.composition, s.seed): s for s in specs if s.task == "covid"}
    after, scratch = covid[(pretrain, composition, seed)], covid[(None, composition, seed)]
    before = next(s for s in specs if s.run_id == after.pretrain_spec().run_id)
    rows = []
    for name, role, spec in ((f"{pretrain} pre-trained, before fine-tuning", "before", before),
                             (f"{pretrain} pre-trained, fine-tuned on {composition}", "after", after),
                             (f"from scratch on {composition}", "scratch", scratch)):
        status = Record.of(spec, results=results, storage=storage, need_checkpoint=True).status
        rows.append({"encoder": name, "role": role, "run_id": spec.run_id, "status": status, "spec": spec})
    return pd.DataFrame(rows)


def encoder_features(records: pd.DataFrame, rows: pd.DataFrame, *, data_root: str | os.PathLike | None = None,
                     device: str = "cpu", storage: str | os.PathLike | None = None
                     ) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Raw pooled features of every mappable encoder of ``records`` on ``rows`` (through each
    run's chain, :func:`covid_lib.analysis.embed.encoder_features`), restricted to the images every
    encoder kept, in one order; returns ``({encoder: features}, kept rows)``."""
    from covid_lib.analysis import embed

    raw: dict[str, tuple[np.ndarray, pd.DataFrame]] = {}
    from covid_lib.runs import LEARNED

    for r in records[records["status"].isin(LEARNED)].itertuples():
        raw[r.encoder] = embed.encoder_features(r.spec, rows, data_root=data_root, device=device, storage=storage)
    if not raw:
        return {}, rows.iloc[:0]
    key = ["source", "image_id"]
    common = None
    for _, kept in raw.values():
        ids = kept[key].astype(str).apply(tuple, axis=1)
        common = set(ids) if common is None else common & set(ids)
    first = next(iter(raw.values()))[1]
    kept_rows = first[first[key].astype(str).apply(tuple, axis=1).isin(common)].reset_index(drop=True)
    order = kept_rows[key].astype(str).apply(tuple, axis=1)
    feats = {}
    for name, (f, kept) in raw.items():
        pos = pd.Series(np.arange(len(kept)), index=kept[key].astype(str).apply(tuple, axis=1))
        feats[name] = f[pos.loc[order].to_numpy()]
    return feats, kept_rows


# ----------------------------------------------------------------------------------------- tables
def format_purity(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """:func:`covid_lib.analysis.landscape.purity_table` for reading: ``value [low, high]`` cells."""
    from covid_lib.metrics import format_estimate

    if table.empty:
        return pd.DataFrame()

    def cell(v, lo, hi):
        return "–" if pd.isna(v) else format_estimate(v, lo, hi, digits)

    return pd.DataFrame({
        "encoder": table["encoder"], "organised by": table["target"].map(TARGET_NAMES), "classes": table["classes"],
        "purity [95% CI]": [cell(*x) for x in zip(table["purity"], table["purity_low"], table["purity_high"])],
        "chance (permutation mean / 95th pct)": [f"{c:.{digits}f} / {c95:.{digits}f}" for c, c95 in
                                                 zip(table["chance"], table["chance_95"])],
        "permutation p": table["p_perm"].map(lambda p: f"{p:.3f}"),
        "excess purity [95% CI]": [cell(*x) for x in zip(table["excess"], table["excess_low"], table["excess_high"])],
        "change from the first encoder [95% CI]": [cell(*x) for x in zip(table["change"], table["change_low"],
                                                                        table["change_high"])]})


def map_quality(table: pd.DataFrame) -> pd.DataFrame:
    """Per encoder: nodes, quantisation error, topographic error."""
    return table.drop_duplicates("encoder")[["encoder", "nodes", "qe", "te"]].rename(
        columns={"qe": "quantisation error", "te": "topographic error"}).reset_index(drop=True)


def conclusion(table: pd.DataFrame, after: str, before: str | None = None) -> str:
    """The deciding numbers in words: excess purity by source against by label in the fine-tuned
    encoder, and the change of the label's excess purity from ``before``."""
    if table.empty or after not in set(table["encoder"]):
        return f"no map of {after!r}: its record or checkpoint is missing"
    t = table.set_index(["encoder", "target"])

    def fmt(e, target, col="excess"):
        r = t.loc[(e, target)]
        return f"{r[col]:.2f} [{r[f'{col}_low']:.2f}, {r[f'{col}_high']:.2f}]"

    src, lab = t.loc[(after, "source")], t.loc[(after, "label")]
    above = [name for name, r in (("source", src), ("label", lab)) if r["excess_low"] > 0]
    if src["excess_low"] > lab["excess_high"]:
        reading = "the map is organised more by source than by label"
    elif lab["excess_low"] > src["excess_high"]:
        reading = "the map is organised more by label than by source"
    else:
        reading = ("the map is organised by " + (" and by ".join(above) + " above chance" if above else
                   "neither above chance") + ", and by neither more than the other (the intervals overlap)")
    text = (f"After fine-tuning ({after}), excess purity by source is {fmt(after, 'source')} and by COVID label "
            f"{fmt(after, 'label')} (0: permutation chance, 1: every node pure): {reading}")
    if before is not None and before in set(table["encoder"]) and (after, "label") in t.index:
        text += (f". From before fine-tuning ({before}) the label's excess purity changes by "
                 f"{fmt(after, 'label', 'change')} and the source's by {fmt(after, 'source', 'change')} "
                 f"(paired over the same resamples of patients)")
    return text + "."


# ---------------------------------------------------------------------------------------- figures
def _majority(fit: SomFit, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_nodes = fit.shape[0] * fit.shape[1]
    classes = list(pd.unique(labels))
    counts = np.zeros((n_nodes, len(classes)))
    for c, lab in enumerate(classes):
        counts[:, c] = np.bincount(fit.nodes[labels == lab], minlength=n_nodes)
    major = np.array(classes, dtype=object)[counts.argmax(1)]
    share = counts.max(1) / np.maximum(counts.sum(1), 1)
    return major, share


def plot_som(fit: SomFit, rows: pd.DataFrame, title: str = "", *, targets=("source", "label", "age_group")):
    """U-matrix, then one hit map per target: each node a square coloured by its majority class,
    its area proportional to its hits, its opacity its purity."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 1 + len(targets), figsize=(3.3 * (1 + len(targets)), 3.6))
    im = axes[0].imshow(fit.u_matrix().T, cmap="bone_r", origin="lower")
    axes[0].set_title(f"{title}\nU-matrix" if title else "U-matrix", fontsize=9)
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.02)
    hits = fit.hits().ravel()
    ii, jj = np.divmod(np.arange(hits.size), fit.shape[1])
    for ax, target in zip(axes[1:], targets):
        labels = rows[target].to_numpy()
        major, share = _majority(fit, labels)
        colors = TARGET_COLORS[target]
        for k in np.flatnonzero(hits):
            ax.scatter(ii[k], jj[k], s=300 * hits[k] / hits.max(), marker="s", color=colors.get(major[k], "k"),
                       alpha=float(0.25 + 0.75 * share[k]), linewidths=0)
        ax.set_xlim(-0.7, fit.shape[0] - 0.3), ax.set_ylim(-0.7, fit.shape[1] - 0.3)
        ax.set_aspect("equal"), ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"majority {TARGET_NAMES[target]}", fontsize=9)
        present = [c for c in colors if (labels == c).any()]
        ax.legend([Line2D([], [], marker="s", ls="", color=colors[c]) for c in present],
                  [LABEL_NAMES.get(c, c) if target == "label" else c for c in present], fontsize=6, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0), frameon=False)
    axes[0].set_xticks([]), axes[0].set_yticks([])
    fig.tight_layout()
    return fig


def plot_hits(fit: SomFit, rows: pd.DataFrame, title: str = ""):
    """Hits per node of each source (one panel per source, shared colour scale)."""
    import matplotlib.pyplot as plt

    present = [s for s in SOURCES if (rows["source"] == s).any()]
    maps = [fit.hits((rows["source"] == s).to_numpy()) for s in present]
    vmax = max([int(m.max()) for m in maps] + [1])
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(1.9 * max(len(present), 1), 2.3), squeeze=False)
    for ax, s, m in zip(axes[0], present, maps):
        im = ax.imshow(m.T, origin="lower", cmap="Greys", vmin=0, vmax=vmax)
        ax.set_title(f"{s} ({int(m.sum())})", fontsize=8, color=SOURCE_COLORS[s])
        ax.set_xticks([]), ax.set_yticks([])
    if present:
        fig.colorbar(im, ax=list(axes[0]), fraction=0.02, pad=0.01, label="hits")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_tsne(embeddings: dict[str, np.ndarray], rows: pd.DataFrame, *, point_size: float = 6.0):
    """One row of panels per encoder, coloured by source, by COVID label and by age group."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(embeddings), 3, figsize=(11, 3.4 * len(embeddings)), squeeze=False)
    for (name, emb), row_axes in zip(embeddings.items(), axes):
        for ax, target in zip(row_axes, ("source", "label", "age_group")):
            for c, color in TARGET_COLORS[target].items():
                m = (rows[target] == c).to_numpy()
                if m.any():
                    ax.scatter(emb[m, 0], emb[m, 1], s=point_size, color=color, alpha=.75, linewidths=0,
                               label=f"{LABEL_NAMES.get(c, c) if target == 'label' else c} ({m.sum()})")
            ax.set_title(f"{name}\nby {TARGET_NAMES[target]}", fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
            ax.legend(fontsize=6, markerscale=1.5, loc="best")
    fig.tight_layout()
    return fig


def plot_purity(table: pd.DataFrame):
    """Excess purity per target and encoder with its interval (0: permutation chance)."""
    import matplotlib.pyplot as plt

    encoders = list(pd.unique(table["encoder"]))
    targets = list(pd.unique(table["target"]))
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(targets) * len(encoders) + 1.2))
    y = np.arange(len(targets))[::-1]
    for j, e in enumerate(encoders):
        t = table[table["encoder"] == e].set_index("target").loc[targets]
        off = (j - (len(encoders) - 1) / 2) * 0.22
        ax.errorbar(t["excess"], y + off, xerr=[t["excess"] - t["excess_low"], t["excess_high"] - t["excess"]],
                    fmt="o", capsize=3, label=e)
    ax.axvline(0, color="black", ls="--", lw=1)
    ax.set_yticks(y, [TARGET_NAMES[t] for t in targets])
    ax.set_xlabel("excess purity of the SOM, (purity - chance) / (1 - chance), 95% CI; dashed: chance")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
