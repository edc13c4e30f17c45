"""Lung segmentation: train and evaluate the U-Net of the paper's pre-processing (Sec. III-B).

The paper trains a U-Net on the Montgomery and Shenzhen sets (manual lung masks) and gives no
further detail. Here:

- **Data**: every Montgomery and Shenzhen image with its manual mask; a patient-level split from
  :func:`covid_lib.data.assign_splits` (seeded per source, stratified by TB label within each
  source): ``test_fraction`` of each source's patients held out, ``val_fraction`` of the rest for
  checkpoint selection.
- **Input**: :func:`covid_lib.preprocess.segmenter_input` - global histogram equalisation, bilinear
  resize to ``image_size`` x ``image_size`` (128 by default: lungs are smooth), [0, 1].
- **Training**: BCE + soft Dice loss, Adam, cosine learning-rate decay, light augmentation (small
  random affine transforms, gamma and contrast jitter; no flips: the heart is on one side); the
  checkpoint with the best validation Dice is kept, saved as a float16 state dict.
- **Evaluation**: Dice and IoU per image, (a) at the model resolution against the resized manual
  mask and (b) - the headline - at the stored mask resolution, after the chain's own
  post-processing (:func:`covid_lib.preprocess.probability_to_mask`). 95% intervals are
  percentile bootstraps over patients (one image per patient in Montgomery/Shenzhen, so over
  images; clusters of a patient's images for Cohen). Out of domain, the V7 masks of Cohen's
  COVID-19 images are scored the same way, plus *coverage* (the share of the V7 mask our mask
  covers) and *precision* (the share of our mask inside V7). Coverage below 1 has two causes,
  told apart by precision staying near 1 and by looking at the overlays: (1) *definition* - V7
  masks include the lung behind the heart, which the Montgomery/Shenzhen masks, and so our model,
  leave out (a strip along the left heart border on most images); (2) *error* - densely
  consolidated lung looks like soft tissue to a model trained on mostly aerated TB-screening
  lungs and is left out (the lowest-coverage images are severe bilateral COVID-19 pneumonia).
  The second matters for the paper's chain: masking removes part of the opacities it should
  keep.

Modules: :mod:`~covid_lib.segment.data` (manifests, arrays), :mod:`~covid_lib.segment.metrics`
(Dice/IoU per image, summaries), :mod:`~covid_lib.segment.training` (training run),
:mod:`~covid_lib.segment.evaluation` (masks, scores, held-out evaluation). The checkpoint itself
(save, load, hash) lives in :mod:`covid_lib.models.weights`, below the pre-processing that uses it.

Command line (:mod:`covid_lib.cli.segment`)::

    python -m covid_lib segment train [--epochs 30 --image-size 128 --threads 2 --device auto]
    python -m covid_lib segment eval [--weights weights/unet_lungs.pt] [--data-root PATH]
"""

from __future__ import annotations

from covid_lib.segment.data import SEG_SOURCES, cohen_manifest, load_arrays, manifests_version, segmentation_manifest
from covid_lib.segment.evaluation import evaluate, format_report, predict_masks, score_images, score_masks
from covid_lib.segment.metrics import N_BOOT, dice_iou, summarize
from covid_lib.segment.training import TrainConfig, augment_batch, bce_dice_loss, fit_unet, predict_probs, train

__all__ = [
    "N_BOOT", "SEG_SOURCES", "TrainConfig", "augment_batch", "bce_dice_loss", "cohen_manifest", "dice_iou",
    "evaluate", "fit_unet", "format_report", "load_arrays", "manifests_version", "predict_masks",
    "predict_probs", "score_images", "score_masks", "segmentation_manifest", "summarize", "train",
]
