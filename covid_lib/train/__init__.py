"""The training layer: datasets over the pre-processing cache, losses, the runtime (device,
threads, bf16), one training stage (:func:`fit`) and batched inference (:func:`predict`).

Tartaglione et al. 2020, Sec. III-C: pre-train the encoder on a pneumonia task, replace the head,
fine-tune the whole network on a COVID composition. :mod:`covid_lib.runs` chains the stages and
records them; this package knows nothing of compositions or records.
"""

from covid_lib.train.datasets import Augment, XrayDataset, augment_batch, center_crop, load_images, make_dataset
from covid_lib.train.fit import DID_NOT_LEARN_AUC, FitResult, TrainConfig, fit, replace_head, train_epoch
from covid_lib.train.loss import focal_loss, make_loss
from covid_lib.train.predict import auc, num_classes, predict
from covid_lib.train.runtime import Runtime, available_cores, cpu_has_bf16, seed_everything

__all__ = [
    "Augment", "XrayDataset", "augment_batch", "center_crop", "load_images", "make_dataset",
    "DID_NOT_LEARN_AUC", "FitResult", "TrainConfig", "fit", "replace_head", "train_epoch",
    "focal_loss", "make_loss", "auc", "num_classes", "predict",
    "Runtime", "available_cores", "cpu_has_bf16", "seed_everything",
]
