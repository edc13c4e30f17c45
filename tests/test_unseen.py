"""Seen and unseen sources (Ben Ahmed et al. 2021): the split registry on the real data, run ids,
the frozen head, the parent chain of adaptation runs, the drop statistic, and a smoke end-to-end."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from covid_lib import runs
from covid_lib.data import PARTS, SOURCE_SPLITS, adapt_rows, global_splits, source_split_counts, source_split_rows
from covid_lib.grid import failed_pretraining, grid_specs, with_pretrainings
from covid_lib.models import create_model
from covid_lib.models.heads import freeze_encoder, trainable_parameters, with_small_head
from covid_lib.runs import RunSpec


@pytest.fixture(autouse=True)
def _tmp_results(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))


# ------------------------------------------------------------------------------ the split registry
@pytest.mark.data
@pytest.mark.parametrize("name", list(SOURCE_SPLITS))
def test_source_split_rows_keep_patients_apart_and_sources_unseen(data_root, name):
    s = SOURCE_SPLITS[name]
    rows = source_split_rows(name, data_root)
    assert not s.train_sources & s.unseen_sources
    assert set(rows.loc[rows["role"].isin(["train", "seen"]), "set"]) == set(s.train)
    assert set(rows.loc[rows["role"].isin(["unseen", "adapt pool"]), "set"]) == set(s.unseen)
    # no patient group in two splits, and no image in two roles
    assert (rows.groupby("group_id")["split"].nunique() == 1).all()
    assert not rows.duplicated(["source", "image_id"]).any()
    fit = set(rows.loc[rows["role"].isin(["train", "adapt pool"]), "group_id"])
    assert not fit & set(rows.loc[rows["role"].isin(["seen", "unseen"]), "group_id"])
    # training classes balanced per split, test sets whole (every test patient of each part)
    for split in ("train", "val"):
        counts = rows[(rows["role"] == "train") & (rows["split"] == split)]["label"].value_counts()
        assert counts[0] == counts[1] > 0
    splits = global_splits(data_root)
    for role, parts in (("seen", s.train), ("unseen", s.unseen)):
        for part in parts:
            source, label = PARTS[part]
            got = rows[(rows["role"] == role) & (rows["set"] == part)]
            assert (got["split"] == "test").all() and (got["source"] == source).all() and (got["label"] == label).all()
            expected = splits[(splits["source"] == source) & (splits["split"] == "test")
                              & (splits["covid"].astype(float) == label)]
            if source == "cohen":  # frontal, without the Hannover copies / images taken at Hannover
                assert 0 < len(got) < len(expected)
                assert not set(got["image_id"]) & set(splits.loc[splits["source"] == "hannover", "image_id"])
                assert not got["location"].fillna("").str.contains("Hannover").any()
            else:
                assert len(got) == len(expected)


@pytest.mark.data
def test_counts_table_matches_the_rows(data_root):
    counts = source_split_counts(data_root)
    assert set(counts["source_split"]) == set(SOURCE_SPLITS)
    u1 = counts[counts["source_split"] == "U1-hannover-nih"].set_index(["role", "set"])
    rows = source_split_rows("U1-hannover-nih", data_root)
    assert u1.loc[("seen", "hannover COVID+"), "test"] == ((rows["role"] == "seen") & (rows["set"] == "hannover COVID+")).sum()
    train = u1.loc["train"]
    assert train.loc["hannover COVID+", "train"] == train.loc["nih COVID-", "train"]  # balanced
    assert (counts.loc[counts["role"] == "train", "test"] == 0).all()


@pytest.mark.data
def test_adapt_rows_draw_k_per_class_from_unseen_train_and_val_patients(data_root):
    rows = source_split_rows("U2-cohen-kermany", data_root)
    picked = adapt_rows(rows, 8)
    assert picked.groupby(["split", "label"]).size().to_dict() == {(s, y): 8 for s in ("train", "val") for y in (0, 1)}
    assert set(picked["set"]) == set(SOURCE_SPLITS["U2-cohen-kermany"].unseen)
    assert not set(picked["group_id"]) & set(rows.loc[rows["role"] == "unseen", "group_id"])
    assert picked["group_id"].nunique() == len(picked)  # one image per patient while patients last
    assert adapt_rows(rows, 8).index.equals(picked.index)  # seeded


# ---------------------------------------------------------------------------------------- run ids
def test_existing_run_ids_do_not_change():
    # a record of the committed cpu grid (results/<run_id>/spec.json of the integrator's run)
    spec = RunSpec("CORDA&ChestXRay", arch="resnet18", pretrain=None, profile="cpu", data_version="dee3cf54a969",
                   input_size=128, epochs=30)
    assert spec.run_id == "covid-CORDA+ChestXRay-resnet18-scratch-cpu-s0-6f75d30922"
    assert RunSpec("CORDA", pretrain="kermany", profile="smoke", data_version="v1").run_id == \
        "covid-CORDA-resnet18-kermany-smoke-s0-b7a13b2762"
    identity = spec.identity()["spec"]
    assert "freeze" not in identity and "adapt" not in identity and "source_split_version" not in identity


def test_freeze_and_adapt_are_hashed_and_validated():
    base = RunSpec("U1-hannover-nih", pretrain="kermany", profile="smoke", data_version="v1")
    frozen, adapted = replace(base, freeze="encoder"), replace(base, adapt=8)
    assert len({base.run_id, frozen.run_id, adapted.run_id}) == 3
    assert "-frozen-" in frozen.run_id and "-adapt8-" in adapted.run_id
    assert base.pretrain_spec() == frozen.pretrain_spec() == adapted.pretrain_spec()  # one shared pre-training
    with pytest.raises(ValueError, match="source splits"):
        RunSpec("CORDA", pretrain="kermany", freeze="encoder")
    with pytest.raises(ValueError, match="pre-trained encoder"):
        RunSpec("U1-hannover-nih", freeze="encoder")
    with pytest.raises(ValueError, match="positive"):
        RunSpec("U1-hannover-nih", adapt=0)
    with pytest.raises(ValueError, match="unknown composition"):
        RunSpec("U9-nowhere")


def test_adapt_parent_chain_runs_parents_first():
    child = RunSpec("U1-hannover-nih", pretrain="kermany", profile="smoke", data_version="v1", adapt=4)
    parent = child.parent_spec()
    assert parent == replace(child, adapt=None) and parent.parent_spec() == child.pretrain_spec()
    order = with_pretrainings([child, replace(child, adapt=8)])
    assert [s.run_id for s in order] == [child.pretrain_spec().run_id, parent.run_id, child.run_id,
                                         replace(child, adapt=8).run_id]
    assert "parent run" in failed_pretraining(child, {parent.run_id: "boom"})
    specs = grid_specs("unseen", "smoke", data_version="v1")
    seen: set[str] = set()
    for s in specs:
        assert s.parent_spec() is None or s.parent_spec().run_id in seen
        seen.add(s.run_id)
    assert sum(s.adapt is not None for s in specs) == 8 and sum(s.freeze is not None for s in specs) == 3
    # the existing grids keep their order and runs
    t4 = grid_specs("table4", "smoke", data_version="x")
    assert [(s.task, s.composition, s.pretrain) for s in t4] == [
        ("covid", "COVID-ChestXRay", None), ("pretrain", "kermany", None), ("covid", "COVID-ChestXRay", "kermany"),
        ("pretrain", "nih", None), ("covid", "COVID-ChestXRay", "nih")]


# ------------------------------------------------------------------------------------- frozen head
def test_frozen_encoder_trains_only_batch_norm_and_the_head():
    torch.manual_seed(0)
    net = freeze_encoder(with_small_head(create_model("resnet18", num_classes=3), 2))
    names = {n for n, p in net.named_parameters() if p.requires_grad}
    bn = {f"{m}.{p}" for m, mod in net.named_modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)
          for p, _ in mod.named_parameters(recurse=False)}
    assert names == bn | {n for n, _ in net.named_parameters() if n.startswith("fc.")}
    assert any("layer4" in n for n in bn) and "conv1.weight" not in names
    head = sum(p.numel() for p in net.fc.parameters())
    assert head == 512 * 64 + 64 + 2 * 64 + 64 * 2 + 2 and trainable_parameters(net) < 50_000
    conv = net.layer1[0].conv1.weight.detach().clone()
    bn1 = net.bn1.weight.detach().clone()
    stats = net.bn1.running_mean.clone()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=0.1)
    net.train()
    loss = net(torch.randn(4, 1, 64, 64)).sum()
    loss.backward()
    opt.step()
    assert torch.equal(conv, net.layer1[0].conv1.weight) and not torch.equal(bn1, net.bn1.weight)
    assert not torch.equal(stats, net.bn1.running_mean)  # batch norm keeps updating its statistics


def test_frozen_checkpoint_round_trips():
    spec = RunSpec("U1-hannover-nih", pretrain="kermany", freeze="encoder", profile="smoke", data_version="v1"
                   ).resolved()
    net = with_small_head(create_model("resnet18", num_classes=3), 2).eval()
    model, meta = runs.model_from_checkpoint(runs.records.checkpoint_bytes(net, spec, 2, 0.5, 0.2))
    x = torch.randn(2, 1, 64, 64)
    assert torch.allclose(model(x), net(x)) and meta["run_id"] == spec.run_id


# ------------------------------------------------------------------------------------ drop statistic
def test_auc_drop_matches_sklearn_and_is_unpaired():
    from covid_lib.report.unseen import auc_drop

    rng = np.random.default_rng(0)
    n = 60
    y = np.r_[np.ones(n), np.zeros(n)].astype(int)
    seen = pd.DataFrame({"label": y, "score": np.r_[rng.uniform(0.5, 1, n), rng.uniform(0, 0.5, n)],
                         "group_id": [f"s{i // 2}" for i in range(2 * n)]})
    unseen = pd.DataFrame({"label": y[:80], "score": rng.uniform(0, 1, 80), "group_id": [f"u{i}" for i in range(80)]})
    d = auc_drop(seen, unseen, n_boot=500)
    expected = roc_auc_score(seen["label"], seen["score"]) - roc_auc_score(unseen["label"], unseen["score"])
    assert d.value == pytest.approx(expected)
    assert 0 < d.low < d.value < d.high  # a perfect seen AUC against chance: a clear drop
    # the same scores twice: a paired bootstrap would give a zero-width interval, the unpaired one does not
    same = auc_drop(unseen, unseen.assign(group_id="x" + unseen["group_id"]), n_boot=500)
    assert same.value == 0 and same.low < -0.05 and same.high > 0.05
    assert np.isnan(auc_drop(seen, unseen[unseen["label"] == 1], n_boot=10).value)


# ---------------------------------------------------------------------------------- end to end
@pytest.mark.data
@pytest.mark.slow
def test_smoke_split_run_and_adaptation_end_to_end(data_root, tmp_path):
    from covid_lib.report import unseen as ru

    storage = tmp_path / "ckpt"
    child = RunSpec("U1-hannover-nih", pretrain="kermany", profile="smoke", adapt=4)
    result = runs.run(child, data_root=data_root, device="cpu", progress=False, storage=storage)
    parent = runs.load_result(result.spec.parent_spec(), storage=storage)
    assert result.record["parent_run"] == parent.run_id and parent.record["pretrain_run"].startswith("pretrain-kermany")
    for r in (parent, result):
        metrics = json.loads((r.path / "metrics.json").read_text())
        assert set(r.scores["test_set"]) == set(PARTS)
        assert {"seen", "unseen", *PARTS} == set(r.metrics["test_set"])
        for name, entry in metrics["test_sets"].items():
            assert entry["n_expected"] == entry["n_scored"] + len(entry["rejected"])
        unseen = r.metrics[(r.metrics["test_set"] == "unseen") & r.metrics["threshold_rule"].str.startswith("paper")]
        scored = r.scores[r.scores["test_set"].isin(SOURCE_SPLITS["U1-hannover-nih"].unseen)]
        assert unseen["auc"].iloc[0] == pytest.approx(roc_auc_score(scored["label"], scored["score"]))
    adapted = json.loads((result.path / "metrics.json").read_text())
    assert adapted["adapt"] == 4 and set(adapted["trained_on"]) == set(SOURCE_SPLITS["U1-hannover-nih"].unseen)
    assert sum(adapted["trained_on"].values()) <= 8
    a, _ = runs.load_model(result.spec, storage=storage)
    b, meta = runs.load_model(parent.spec, storage=storage)
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert runs.model_from_checkpoint(result.checkpoint)[1]["mean"] == meta["mean"]  # the parent's normalisation
    # the report reads both records
    records = ru.unseen_records([parent.spec, result.spec])
    table = ru.seen_unseen_table(records, n_boot=200)
    assert len(table) == 1 and table["seen_auc"].notna().all()
    curve = ru.adaptation_table(records)
    assert curve["adapt"].tolist() == [0, 4] and curve["unseen_auc"].notna().all()
    assert ru.drop_statements(table)[0].decided in ("drop", "rise", "undecided")


# ------------------------------------------------------------------ the run path on synthetic data
def _synthetic_splits() -> pd.DataFrame:
    """A tiny stand-in for :func:`global_splits`: every part with train / val / test patients."""
    rows = []
    for source, covid, n in (("hannover", 1, 12), ("cohen", 1, 12), ("cohen", 0, 12), ("kermany", 0, 12),
                             ("nih", 0, 12)):
        for i in range(n):
            split = ("train", "train", "train", "train", "val", "val", "test", "test")[i % 8] if i < 8 else \
                ("train", "val", "test", "train")[i % 4]
            rows.append({"source": source, "covid": float(covid), "frontal": True, "location": "",
                         "image_id": f"{source}{covid}-{i}", "patient_id": f"{source}:{covid}-{i}",
                         "group_id": f"{source}:{covid}-{i}", "split": split})
    return pd.DataFrame(rows)


@pytest.fixture
def synthetic_runs(monkeypatch):
    """Source-split runs over synthetic images: COVID+ images brighter, so a model can learn."""
    import covid_lib.data as data
    from covid_lib.data import source_splits

    splits = _synthetic_splits()
    monkeypatch.setattr(source_splits, "global_splits", lambda *a, **k: splits.copy())
    monkeypatch.setattr(data, "global_splits", lambda *a, **k: splits.copy())

    def images(spec, rows, data_root, set_name, split):
        rng = np.random.default_rng(len(rows))
        x = rng.integers(0, 120, (len(rows), 72, 72)).astype(np.uint8) + 100 * rows["label"].to_numpy()[:, None, None]
        return x.astype(np.uint8), rows, pd.DataFrame(columns=runs.execution.REJECTION_COLUMNS)

    monkeypatch.setattr(runs.execution, "_images", images)  # the split datasets and the test-set scoring
    return splits


@pytest.mark.slow  # trains two ResNet-18s on a few synthetic images: seconds on a free CPU, minutes under a grid
def test_split_run_and_adaptation_on_synthetic_images(synthetic_runs, tmp_path):
    from covid_lib.report import unseen as ru
    from covid_lib.runs import source_runs

    storage = tmp_path / "ckpt"
    net = create_model("resnet18", num_classes=3)  # a stand-in pre-training checkpoint
    base = RunSpec("U1-hannover-nih", pretrain="kermany", freeze="encoder", profile="smoke", data_version="v1"
                   ).resolved()
    pre_ckpt = runs.records.checkpoint_bytes(net, base.pretrain_spec(), 3, 0.5, 0.2)
    artifacts = runs.compute(base, pretrain_checkpoint=pre_ckpt, device="cpu")
    metrics = artifacts.files["metrics.json"]
    assert metrics["trained_on"] == {"hannover COVID+": 6, "nih COVID-": 6}  # balanced, train patients only (6 of 12)
    assert 0 < metrics["trainable_parameters"] < 50_000
    assert set(artifacts.files["scores.csv"]["test_set"]) == set(PARTS)
    table = pd.DataFrame(metrics["table"])
    assert {"seen", "unseen", *PARTS} == set(table["test_set"])
    part = table[(table["test_set"] == "nih COVID-")].iloc[0]
    assert np.isnan(part["auc"]) and not np.isnan(part["specificity"])  # one class: specificity only
    runs.write_artifacts(artifacts, storage)
    # the adaptation starts from that checkpoint, trains on the unseen parts' train patients only
    child = replace(base, adapt=2)
    with pytest.raises(ValueError, match="adapts run"):
        runs.compute(child, device="cpu")
    adapted = runs.compute(child, pretrain_checkpoint=runs.read_checkpoint(base.run_id, storage), device="cpu")
    m = adapted.files["metrics.json"]
    assert m["trained_on"] == {"cohen COVID+": 2, "kermany COVID-": 2} and m["adapt"] == 2
    assert adapted.files["spec.json"]["parent_run"] == base.run_id
    with pytest.raises(ValueError, match="needs"):
        source_runs.compute_source_split(child, None, "cpu", 1, False, pre_ckpt)
    runs.write_artifacts(adapted, storage)
    records = ru.unseen_records([base, child])
    # each record's status is the one its own numbers give: did not learn exactly when the best
    # validation AUC is under 0.6, and never collapsed, failed or missing
    best = [a.files["metrics.json"]["best_value"] for a in (artifacts, adapted)]
    assert records["status"].tolist() == ["did not learn" if b < 0.6 else "done" for b in best], best
    assert [a.files["metrics.json"]["did_not_learn"] for a in (artifacts, adapted)] == [b < 0.6 for b in best]
    t = ru.seen_unseen_table(records, n_boot=100)
    assert len(t) == 1 and t["variant"].iloc[0] == "kermany encoder, frozen (Finetune1)" and t["seen_auc"].notna().all()
    rates = ru.part_rates(records)
    assert set(rates.loc[rates["role"] == "unseen", "part"]) == {"cohen COVID+", "kermany COVID-"}
    pairs = ru.pair_aucs(records["path"].iloc[0], "U1-hannover-nih", n_boot=50)
    assert len(pairs) == 6 and pairs.set_index(["COVID+ part", "COVID- part"]).loc[
        ("hannover COVID+", "nih COVID-"), "pair"] == "seen"
    curve = ru.adaptation_table(records)
    assert curve["adapt"].tolist() == [0, 2] and curve["run_id"].tolist() == [base.run_id, child.run_id]
    assert curve["unseen_auc"].notna().all() and "cohen COVID+ sensitivity" in curve
    import matplotlib.pyplot as plt

    for fig in (ru.plot_seen_unseen(t), ru.plot_adaptation(curve)):
        assert fig.axes and fig.axes[0].lines
        plt.close(fig)


def test_seen_unseen_legend_leaves_the_tick_labels_free():
    import matplotlib

    from covid_lib.report import unseen as ru

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [{"split": s, "variant": v, "status": "done", "seen_auc": 0.9, "seen_low": 0.8, "seen_high": 0.95,
             "unseen_auc": 0.4, "unseen_low": 0.3, "unseen_high": 0.5}
            for s in ("U1", "U2") for v in ("from scratch", "kermany encoder, fine-tuned", "kermany encoder, frozen")]
    fig = ru.plot_seen_unseen(pd.DataFrame(rows))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        for label in ax.get_xticklabels() + [ax.title]:
            assert not legend.overlaps(label.get_window_extent(renderer)), label.get_text()
    plt.close(fig)
