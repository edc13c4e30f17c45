"""Features by source (covid_lib.analysis.embed): pooled features, the seeded t-SNE wrapper, the
leave-one-patient-out k-NN and its bootstrap, the separability table and the C4 verdict, on
synthetic arrays and tiny models; one smoke run on real data extracts features through the chain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from covid_lib import runs
from covid_lib.analysis import embed
from covid_lib.models import create_model
from covid_lib.train import XrayDataset


def test_pooled_features_are_the_pre_logits_of_resnet_and_conv8():
    imgs = np.random.default_rng(0).integers(0, 256, (5, 40, 40), dtype=np.uint8)
    data = XrayDataset(imgs, [0, 1, 0, 1, 0], list("abcde"), input_size=32)
    for arch, dim in (("resnet18", 512), ("conv8", 64)):
        torch.manual_seed(0)
        model = create_model(arch, num_classes=2).eval()
        f = embed.pooled_features(model, data, batch_size=2)
        assert f.shape == (5, dim)
        x = torch.cat([b for b, _, _ in data.batches(5)])
        with torch.no_grad():
            logits = model(x)
        np.testing.assert_allclose(model.get_classifier()(torch.from_numpy(f)).detach().numpy(), logits.numpy(),
                                   atol=1e-4)


def test_tsne_is_seeded_and_two_dimensional():
    X = np.random.default_rng(0).normal(size=(40, 8))
    a, b = embed.tsne_embedding(X, seed=1), embed.tsne_embedding(X, seed=1)
    assert a.shape == (40, 2) and np.allclose(a, b)
    assert embed.tsne_embedding(X[:7], seed=0).shape == (7, 2)  # perplexity capped for tiny inputs


def test_prepare_features_standardises_and_reduces():
    X = np.random.default_rng(0).normal(size=(30, 80))
    X[:, 3] = 5.0  # a constant column is dropped
    Z = embed.prepare_features(X, n_components=10)
    assert Z.shape == (30, 10) and np.isfinite(Z).all()
    assert embed.prepare_features(X[:, :6]).shape == (30, 5)


def clusters(n=20, shift=3.0, seed=0):
    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal(0, 1, (n, 5)), rng.normal(shift, 1, (n, 5))]
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    return X, y


def test_knn_never_uses_the_images_own_patient():
    X, y = clusters()
    groups = np.arange(len(y)).astype(str)
    assert (embed.knn_predict(X, y, groups, k=5) == y).mean() > 0.95
    # two images per patient, one of each class at the same point: a neighbour of the own patient
    # would give the answer; without it the duplicated point carries no information
    Xd = np.r_[X, X]
    yd = np.r_[y, 1 - y]
    g = np.r_[groups, groups]
    assert abs((embed.knn_predict(Xd, yd, g, k=1) == yd).mean() - 0.5) < 0.15


def test_knn_votes_are_class_balanced():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))  # no structure, 100 against 20
    y = np.r_[np.zeros(100, int), np.ones(20, int)]
    pred = embed.knn_predict(X, y, np.arange(120).astype(str), k=15)
    assert 0.05 < pred.mean() < 0.6  # the small class is still predicted


def test_balanced_accuracies_with_paired_change():
    X, y = clusters()
    g = np.repeat(np.arange(len(y) // 2), 2).astype(str)
    good, bad = y.copy(), np.random.default_rng(1).permutation(y)
    est = embed.balanced_accuracies(y, [bad, good], g, n_boot=300)
    assert len(est) == 3
    assert est[1].value == 1.0 and est[1].low == 1.0
    assert est[2].value == pytest.approx(1.0 - est[0].value) and est[2].low > 0
    assert "20 groups" in est[0].method


def synthetic_rows(seed=0):
    """Sets of the figure with features that separate ChestXRay from the rest and nothing else."""
    rng = np.random.default_rng(seed)
    parts = []
    for s, src, n, labels in (("CORDA", "cohen", 40, (0, 1)), ("COVID-ChestXRay", "cohen", 10, (0, 1)),
                              ("ChestXRay", "kermany", 40, (0,)), ("RSNA", "nih", 40, (0,)),
                              ("Hannover", "hannover", 10, (1,))):
        parts.append(pd.DataFrame({"set": s, "source": src, "label": rng.choice(labels, n),
                                   "group_id": [f"{s}{i}" for i in range(n)]}))
    rows = pd.concat(parts, ignore_index=True)
    X = rng.normal(size=(len(rows), 6))
    X[rows["set"] == "ChestXRay", 0] += 6.0
    return rows, X


def test_separability_table():
    rows, X = synthetic_rows()
    before = np.random.default_rng(9).normal(size=X.shape)
    t = embed.separability_table({"before": before, "after": X}, rows, n_boot=200)
    assert list(t["comparison"]) == [c.name for c in embed.COMPARISONS]
    r = t.set_index("comparison")
    assert r.loc["ChestXRay vs CORDA, COVID- only", "after"] > 0.9
    assert r.loc["ChestXRay vs CORDA, COVID- only", "change low"] > 0
    assert r.loc["label within cohen (CORDA + COVID-ChestXRay stand-ins)", "after low"] < 0.5 < \
        r.loc["label within cohen (CORDA + COVID-ChestXRay stand-ins)", "after high"]
    assert r.loc["source (cohen, kermany, nih, hannover), all images", "chance"] == 0.25


def test_plot_tsne():
    rows, X = synthetic_rows()
    fig = embed.plot_tsne({"a": X[:, :2], "b": X[:, 1:3]}, rows)
    assert len(fig.axes) == 4


@pytest.mark.data
def test_features_of_a_smoke_run_through_the_chain(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    rows = embed.feature_rows(data_root)
    assert set(rows["set"]) == set(embed.SETS) and (rows["split"] == "test").all()
    assert rows.groupby("set")["source"].first().to_dict() == {
        "CORDA": "cohen", "COVID-ChestXRay": "cohen", "ChestXRay": "kermany", "RSNA": "nih", "Hannover": "hannover"}
    spec = runs.RunSpec("COVID-ChestXRay", profile="smoke")
    runs.run(spec, data_root=data_root, device="cpu", progress=False)
    small = rows.groupby("set").head(3)
    feats, kept = embed.encoder_features(spec.resolved(data_root), small, data_root=data_root)
    assert feats.shape == (len(kept), 512) and len(kept) > 0 and np.isfinite(feats).all()


def test_format_and_plot_separability():
    rows, X = synthetic_rows()
    t = embed.separability_table({"before": X[:, ::-1], "after": X}, rows, n_boot=100)
    f = embed.format_separability(t)
    assert {"before", "after", "change"} <= set(f.columns) and f["after"].str.contains(r"\[").all()
    assert len(embed.plot_separability(t, ["before", "after"]).axes) == 1
