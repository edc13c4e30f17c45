"""Focal loss, datasets, fit() and evaluation on synthetic arrays (no real data, seconds each)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from covid_lib.data import limit_rows
from covid_lib.evaluate import format_metrics, metrics_table, score_images, validation_threshold
from covid_lib.models import create_model
from covid_lib.train import (Augment, Runtime, TrainConfig, XrayDataset, augment_batch, center_crop, fit, focal_loss,
                             make_loss, predict, replace_head)


# ------------------------------------------------------------------------------------- focal loss
def test_focal_loss_matches_hand_computation():
    logits = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    y = torch.tensor([0, 0, 1])
    # p_t by hand: sigmoid of the margin for two classes
    p = [1 / (1 + math.exp(-1)), 1 / (1 + math.exp(2)), 0.5]
    hand = [-((1 - q) ** 2) * math.log(q) for q in p]
    assert focal_loss(logits, y, gamma=2.0, reduction="none").tolist() == pytest.approx(hand, rel=1e-6)
    assert focal_loss(logits, y, gamma=2.0).item() == pytest.approx(np.mean(hand), rel=1e-6)
    assert focal_loss(logits, y, gamma=2.0, reduction="sum").item() == pytest.approx(np.sum(hand), rel=1e-6)


def test_focal_loss_gamma_zero_is_cross_entropy():
    torch.manual_seed(0)
    logits, y = torch.randn(16, 3), torch.randint(0, 3, (16,))
    assert torch.allclose(focal_loss(logits, y, gamma=0.0), F.cross_entropy(logits, y))
    assert torch.allclose(make_loss("ce", 2.0)(logits, y), F.cross_entropy(logits, y))


def test_focal_loss_down_weights_easy_examples():
    easy, hard = torch.tensor([[5.0, 0.0]]), torch.tensor([[0.2, 0.0]])
    y = torch.tensor([0])
    ratio = lambda g: (focal_loss(easy, y, g) / focal_loss(hard, y, g)).item()  # noqa: E731
    assert ratio(2.0) < ratio(0.0)


def test_focal_loss_errors():
    with pytest.raises(ValueError, match="gamma"):
        focal_loss(torch.zeros(1, 2), torch.tensor([0]), gamma=-1)
    with pytest.raises(ValueError, match="reduction"):
        focal_loss(torch.zeros(1, 2), torch.tensor([0]), reduction="avg")
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("hinge", 2.0)


# -------------------------------------------------------------------------------------- datasets
def separable(n: int, side: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 1: bright left half; class 0: bright right half; plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    imgs = rng.integers(0, 60, (n, side, side)).astype(np.uint8)
    for i, y in enumerate(labels):
        if y:
            imgs[i, :, : side // 2] += 150
        else:
            imgs[i, :, side // 2:] += 150
    return imgs, labels


def test_dataset_items_and_normalisation():
    imgs, y = separable(6, side=20)
    ds = XrayDataset(imgs, y, [f"p{i}" for i in range(6)], input_size=16)
    x, label, group = ds[3]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and label == 1 and group == "p3"
    stacked = torch.stack([ds[i][0] for i in range(6)])
    assert abs(stacked.mean().item()) < 1e-4 and stacked.std().item() == pytest.approx(1.0, abs=0.02)
    other = XrayDataset(imgs, y, list("abcdef"), input_size=16, mean=ds.mean, std=ds.std)
    assert torch.equal(other[0][0], ds[0][0])


def test_dataset_augmentation_is_seeded_and_changes_images():
    imgs, y = separable(4, side=24)
    ds = XrayDataset(imgs, y, list("abcd"), input_size=20, augment=True)
    a = next(ds.batches(4, shuffle=True, generator=torch.Generator().manual_seed(1)))
    b = next(ds.batches(4, shuffle=True, generator=torch.Generator().manual_seed(1)))
    c = next(ds.batches(4, shuffle=True, generator=torch.Generator().manual_seed(2)))
    plain = XrayDataset(imgs, y, list("abcd"), input_size=20, mean=ds.mean, std=ds.std)
    p = next(plain.batches(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], p[0][a[2]])


def test_augment_batch_identity_and_flip_are_exact():
    x = torch.rand(3, 1, 12, 12)
    still = Augment(flip_p=0.0, degrees=0.0, translate=0.0, scale=(1.0, 1.0))
    assert torch.allclose(augment_batch(x, still), x, atol=1e-5)
    flip = Augment(flip_p=1.0, degrees=0.0, translate=0.0, scale=(1.0, 1.0))
    assert torch.allclose(augment_batch(x, flip), x.flip(-1), atol=1e-5)


def test_augment_batch_matches_per_image_draws():
    """One grid_sample over the batch equals per-image transforms with the same matrices."""
    from covid_lib.train.datasets import affine_matrices
    x = torch.rand(4, 1, 16, 16)
    theta = affine_matrices(4, Augment(flip_p=0.5), torch.Generator().manual_seed(3))
    batch = augment_batch(x, Augment(flip_p=0.5), torch.Generator().manual_seed(3))
    for i in range(4):
        grid = F.affine_grid(theta[i:i + 1], [1, 1, 16, 16], align_corners=False)
        one = F.grid_sample(x[i:i + 1], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        assert torch.allclose(batch[i:i + 1], one, atol=1e-6)


def test_dataset_errors():
    with pytest.raises(ValueError, match="uint8"):
        XrayDataset(np.zeros((2, 8, 8), np.float32), [0, 1], ["a", "b"], input_size=8)
    with pytest.raises(ValueError, match="2 images, 3 labels"):
        XrayDataset(np.zeros((2, 8, 8), np.uint8), [0, 1, 0], ["a", "b"], input_size=8)
    with pytest.raises(ValueError, match="larger than the image"):
        center_crop(torch.zeros(1, 8, 8), 10)


def test_limit_rows_caps_per_source_and_split_keeping_both_labels():
    rows = pd.DataFrame({"source": ["s"] * 40 + ["t"] * 10, "split": (["train"] * 20 + ["test"] * 20) + ["train"] * 10,
                         "label": [1] * 18 + [0] * 2 + [1] * 20 + [0, 1] * 5})
    out = limit_rows(rows, 5, seed=0)
    counts = out.groupby(["source", "split"]).size()
    assert (counts <= 5).all() and set(out.query("source == 's' and split == 'train'")["label"]) == {0, 1}
    assert limit_rows(rows, None) is rows


# ------------------------------------------------------------------------------------------- fit
def tiny_sets(n_train: int = 32, n_val: int = 16):
    imgs, y = separable(n_train + n_val, side=20)
    groups = [f"p{i}" for i in range(len(y))]
    train = XrayDataset(imgs[:n_train], y[:n_train], groups[:n_train], input_size=16, augment=False)
    val = XrayDataset(imgs[n_train:], y[n_train:], groups[n_train:], input_size=16, mean=train.mean, std=train.std)
    return train, val


def tiny_config(**kw) -> TrainConfig:
    base = dict(epochs=8, batch_size=8, optimizer="sgd", schedule="plateau", lr=0.05, weight_decay=1e-3, lr_patience=5,
                device="cpu", progress=False, seed=0, precision="fp32")
    return TrainConfig(**{**base, **kw})


def test_fit_overfits_a_separable_set():
    train, val = tiny_sets()
    torch.manual_seed(0)
    result = fit(create_model("conv8", width=4), train, val, tiny_config())
    probs, y, _ = predict(result.model, train, device="cpu")
    assert (probs.argmax(1) == y).mean() == 1.0
    assert result.history["val_auc"].max() == 1.0 and result.monitor == "val_auc"
    h = result.history
    assert list(h.columns) == ["epoch", "lr", "train_loss", "train_auc", "val_loss", "val_auc", "val_acc", "seconds",
                              "images_per_s", "best"]
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert h.loc[h["epoch"] == result.best_epoch, "best"].item()


def test_fit_is_deterministic_with_a_seed():
    def train_once(seed: int):
        train, val = tiny_sets()
        train.augment = True
        torch.manual_seed(seed)
        model = create_model("conv8", width=4)
        return fit(model, train, val, tiny_config(epochs=2, seed=seed))

    a, b, c = train_once(3), train_once(3), train_once(4)
    pd.testing.assert_frame_equal(a.history.drop(columns=["seconds", "images_per_s"]), b.history.drop(columns=["seconds", "images_per_s"]))
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


class _NoisySet(torch.utils.data.Dataset):
    """A plain dataset (the DataLoader path) whose items draw noise from torch's global generator."""

    def __init__(self, data: XrayDataset):
        self.x = (data.crops.float() / 255 - data.mean) / data.std
        self.labels = np.asarray(data.labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.x[i] + 0.05 * torch.randn_like(self.x[i]), int(self.labels[i]), i


def _resume_sets(kind: str):
    train, val = tiny_sets()
    train.augment = True
    return (train, val) if kind == "batches" else (_NoisySet(train), val)


@pytest.mark.parametrize("kind, settings", [
    ("batches", dict(optimizer="adamw", schedule="onecycle", lr=1e-2)),
    ("loader", dict(early_stopping=5)),
])
def test_fit_resumed_after_a_stop_equals_an_uninterrupted_fit(tmp_path, capsys, kind, settings):
    def train(resume=None, after_epoch=None):
        torch.manual_seed(7)
        model = create_model("conv8", width=4)
        cfg = tiny_config(epochs=3, seed=5, resume_file=resume and str(resume), resume_key="run-a", **settings)
        return fit(model, *_resume_sets(kind), cfg, after_epoch=after_epoch)

    whole = train()

    def stop(epoch):
        if epoch == 2:
            raise KeyboardInterrupt("session ended")

    path = tmp_path / "run-a" / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        train(path, stop)
    assert path.exists() and not list(path.parent.glob("*.tmp-*"))
    torch.manual_seed(123), np.random.seed(123)  # a new session: other global random states
    capsys.readouterr()
    resumed = train(path)
    assert "resuming run-a at epoch 3/3" in capsys.readouterr().err
    timing = ["seconds", "images_per_s"]
    pd.testing.assert_frame_equal(whole.history.drop(columns=timing), resumed.history.drop(columns=timing))
    sw, sr = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(sw[k], sr[k]) for k in sw)
    assert (whole.best_epoch, whole.best_value) == (resumed.best_epoch, resumed.best_value)
    assert resumed.resume_info["at_epoch"] == 3 and resumed.resume_info["sessions"] == 2 and whole.resume_info is None
    # the finished fit's file gives the same result without training again (a stop before the record)
    again = train(path)
    assert "resuming run-a after its last epoch (3/3: training finished)" in capsys.readouterr().err
    sa = again.model.state_dict()
    assert all(torch.equal(sw[k], sa[k]) for k in sw) and len(again.history) == 3


def test_fit_refuses_the_resume_file_of_another_run(tmp_path):
    path = tmp_path / "resume.pt"
    train, val = tiny_sets()
    torch.manual_seed(0)
    fit(create_model("conv8", width=4), train, val, tiny_config(epochs=1, resume_file=str(path), resume_key="run-a"))
    for key, cfg in [("run-b", {}), ("run-a", {"lr": 0.01})]:
        with pytest.raises(ValueError, match="refused") as error:
            fit(create_model("conv8", width=4), train, val,
                tiny_config(epochs=1, resume_file=str(path), resume_key=key, **cfg))
        assert "\n" not in str(error.value) and str(path) in str(error.value)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        fit(create_model("conv8", width=4), train, val, tiny_config(epochs=1, resume_file=str(path), resume_key="run-a"))


def test_fit_keeps_best_epoch_and_stops_early():
    train, val = tiny_sets()
    torch.manual_seed(0)
    result = fit(create_model("conv8", width=4), train, val, tiny_config(epochs=30, early_stopping=2))
    assert result.stopped_early and len(result.history) < 30
    assert len(result.history) - result.best_epoch == 2
    probs, y, _ = predict(result.model, val, device="cpu")
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(y, probs[:, 1]) == pytest.approx(result.best_value)


def test_fit_uses_loss_with_single_class_validation():
    train, val = tiny_sets()
    one_class = XrayDataset(val.images[val.labels == 1], val.labels[val.labels == 1],
                            ["g"] * int(val.labels.sum()), input_size=16)
    result = fit(create_model("conv8", width=4), train, one_class, tiny_config(epochs=2))
    assert result.monitor == "val_loss" and result.history["val_auc"].isna().all()


def test_fit_errors():
    train, val = tiny_sets()
    empty = XrayDataset(np.zeros((0, 20, 20), np.uint8), [], [], input_size=16)
    with pytest.raises(ValueError, match="empty validation"):
        fit(create_model("conv8", width=4), train, empty, tiny_config())
    with pytest.raises(ValueError, match="empty training"):
        fit(create_model("conv8", width=4), empty, val, tiny_config())
    with pytest.raises(TypeError, match="reset_classifier"):
        replace_head(torch.nn.Linear(2, 2), 2)


def test_from_profile_and_overrides():
    cfg = TrainConfig.from_profile("paper", seed=7)
    assert (cfg.optimizer, cfg.schedule, cfg.lr, cfg.batch_size, cfg.epochs, cfg.focal_gamma, cfg.weight_decay,
            cfg.lr_patience, cfg.seed) == ("sgd", "plateau", 0.1, 4, 100, 2.0, 1e-3, 15, 7)
    cpu = TrainConfig.from_profile("cpu", epochs=None, precision="fp32")
    assert (cpu.optimizer, cpu.schedule, cpu.epochs, cpu.precision) == ("adamw", "onecycle", 30, "fp32")
    with pytest.raises(ValueError, match="unknown optimizer"):
        TrainConfig(optimizer="adam")


def test_pretrain_then_finetune_replaces_head():
    """Stage 1 with three classes, head replaced, stage 2 binary (paper Sec. III-C)."""
    imgs, y = separable(36, side=20)
    y3 = np.arange(36) % 3
    g = [str(i) for i in range(36)]
    pre_train = XrayDataset(imgs[:24], y3[:24], g[:24], input_size=16)
    pre_val = XrayDataset(imgs[24:], y3[24:], g[24:], input_size=16)
    torch.manual_seed(0)
    model = fit(create_model("conv8", width=4, num_classes=3), pre_train, pre_val, tiny_config(epochs=1)).model
    encoder = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    replace_head(model, 2)
    train, val = tiny_sets()
    result = fit(model, train, val, tiny_config(epochs=1))
    assert result.model.get_classifier().out_features == 2
    changed = [not torch.equal(encoder[k], result.model.state_dict()[k]) for k in encoder if "weight" in k]
    assert all(changed)  # the encoder is fine-tuned, not frozen


# -------------------------------------------------------------------------------------- evaluate
def test_scores_and_metrics_use_validation_threshold_not_test():
    train, val = tiny_sets()
    model = fit(create_model("conv8", width=4), train, val, tiny_config(epochs=3)).model
    rows = pd.DataFrame({"source": "syn", "image_id": [f"i{i}" for i in range(len(val))],
                         "patient_id": val.groups, "group_id": val.groups})
    scores = score_images(model, val, rows, test_set="syn", device="cpu")
    assert list(scores.columns[:2]) == ["test_set", "source"] and scores["score"].between(0, 1).all()
    val_scores = pd.DataFrame({"label": [0, 0, 1, 1], "score": [0.1, 0.2, 0.6, 0.7], "group_id": list("abcd")})
    table = metrics_table(scores, val_scores, n_boot=50)
    assert table["threshold"].tolist() == [0.5, validation_threshold(val_scores)]
    assert {"auc_low", "dor_high", "balanced_accuracy_method"} <= set(table.columns)
    assert (table["bootstrap_unit"] == "patient").all()
    formatted = format_metrics(table)
    assert formatted["AUC"].str.match(r"^\d\.\d\d \[").all()
    with pytest.raises(ValueError, match="rows for a dataset"):
        score_images(model, val, rows.iloc[:3], test_set="syn", device="cpu")


def test_validation_threshold_defaults_with_one_class():
    assert validation_threshold(pd.DataFrame({"label": [1, 1], "score": [0.2, 0.9]})) == 0.5


# ------------------------------------------------------------------- recipe, precision, determinism
def test_adamw_onecycle_bf16_learns_a_separable_set():
    train, val = tiny_sets()
    torch.manual_seed(0)
    cfg = tiny_config(optimizer="adamw", schedule="onecycle", lr=3e-3, weight_decay=0.05, precision="bf16")
    result = fit(create_model("conv8", width=4), train, val, cfg)
    assert result.best_value > 0.9 and not result.did_not_learn
    assert result.runtime["precision"] in ("bf16", "fp32")  # fp32 where the CPU has no bf16
    lrs = result.history["lr"].tolist()
    assert max(lrs) > lrs[0] and lrs[-1] < max(lrs)  # warm-up, then decay
    assert {"train_auc", "images_per_s"} <= set(result.history.columns)


def test_model_that_cannot_learn_is_flagged():
    imgs = np.random.default_rng(0).integers(0, 256, (48, 20, 20), dtype=np.uint8)
    y = np.tile([0, 1], 24)
    g = [str(i) for i in range(48)]
    train = XrayDataset(imgs[:32], y[:32], g[:32], input_size=16)
    val = XrayDataset(imgs[32:], np.r_[np.zeros(8, int), np.ones(8, int)], g[32:], input_size=16)
    torch.manual_seed(0)
    # a learning rate of zero: the model stays as initialised, so validation AUC is chance
    result = fit(create_model("conv8", width=4), train, val, tiny_config(epochs=2, lr=0.0))
    assert result.monitor == "val_auc"
    assert result.did_not_learn == (result.best_value < 0.6)


def test_runtime_falls_back_to_fp32_without_bf16(monkeypatch):
    import covid_lib.train.runtime as runtime
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert Runtime.create("cpu", precision="bf16", threads=1).precision == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        Runtime.create("cpu", precision="fp16")
