# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lung segmentation: what the mask removes, and what it keeps
#
# ```{glue:md} chapter-answer
# :format: myst
# ```
#
# The paper's remedy for **hidden dataset biases** is pre-processing (Sec. III-B, Fig. 1-2 of
# {cite:t}`tartaglione2020unveiling`): equalise the histogram, so that every source has the same
# grey-level dynamics, then keep only the lungs with a U-Net {cite:p}`ronneberger2015unet` trained
# on the Montgomery and Shenzhen sets {cite:p}`jaeger2014two,stirenko2018chest`, so that "all the
# writings and medical equipment" outside them are removed. Whether the remedy works depends on
# how good the masks are, on the paper's sources and on images unlike those it was trained on.
# The paper reports no segmentation quality; this chapter measures it, draws the chain on every
# source, counts the images it refuses, and shows what the mask leaves inside the lungs.
#
# The U-Net's weights are committed (`weights/unet_lungs.pt`); every number below is computed here
# by `covid_lib.segment` and `covid_lib.preprocess`, and drawn by `covid_lib.report`.

# %% tags=["parameters"]
data_root = None  # None: $COVID_LIB_DATA, else ../shared/data
device = "auto"  # the U-Net runs on CUDA when present
profile = "cpu"  # smoke | cpu | paper
seed = 0  # which example images are drawn
chain_size = 256  # side of the chain's square output, px (the 3-px blur is measured here)
equalization = "global"  # global (paper) | clahe | none
worst_cases = 4  # worst-scoring images drawn per set
examples_per_source = 2  # before/after rows per source
rejected_shown = 6  # rejected images drawn (mask rejections first, then crops)
chain_example = "covid-19-pneumonia-23-day1"  # the image of the first figure (cohen)
overlap_examples = ["hannover/19073f37", "hannover/a228e110", "cohen/11547_2020_1202_Fig1_HTML-b"]  # by eye
batch_size = 32  # U-Net inference batch
audit_csv = "book/audit/mask_audit.csv"  # the visual audit's verdicts (relative to the repository root, where the runner executes)
audit_per_source = 25  # images drawn per source for the audit (one per patient)
audit_seed = 0  # seed of the audit sample
n_boot = 2000  # bootstrap resamples of the intervals by label

# %% tags=["hide-input"]
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import json
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")

import pandas as pd
from IPython.display import display

from covid_lib import data, segment
from covid_lib.report import common as report
from covid_lib.report import chain
from covid_lib.report import masks
from covid_lib.report import segmentation as seg
from covid_lib.models.weights import DEFAULT_WEIGHTS, load_unet
from covid_lib.preprocess import get_pipeline
from covid_lib.profiles import get_profile, resolve_device

started = time.time()
settings = get_profile(profile)
dev = resolve_device(device)
pd.set_option("display.max_colwidth", None)
pd.set_option("display.max_rows", 200)
pd.set_option("display.width", 200)

model = load_unet(DEFAULT_WEIGHTS, device=dev)
record = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
pipeline = get_pipeline("paper", image_size=chain_size, equalization=equalization).resolved()
frontal = data.load_sources(data_root=data_root, views="frontal").manifest
cap = settings.max_images
print(f"U-Net {DEFAULT_WEIGHTS.name} (input {model.input_size} px) on {dev}; pipeline {pipeline.hash}; "
      f"profile {settings.name!r}: " + ("all images" if cap is None else f"at most {cap} images per set"))
run_unet = dict(batch_size=batch_size, device=dev)  # how the chapter's figures run the U-Net


# %% [markdown]
# ## The chain
#
# Equalise, predict a lung mask with the U-Net, blur it, keep what lies under it, scale to [0, 1];
# optionally crop to the lungs as {cite:t}`benahmed2021deep` do.
#
# :::{dropdown} The chain step by step, as implemented here
# In order, on each stored image (8-bit, shorter side 256 px, see {doc}`01_data`):
#
# 1. **Histogram equalisation**, global (256 bins) as in the paper; CLAHE is an option of the
#    library, not used by the paper's chain. It is applied at the stored resolution.
# 2. **U-Net lung mask.** The U-Net sees the equalised image resized to **128 x 128 px** (the paper
#    states no size), outputs a probability map, which is upsampled to the stored image,
#    thresholded at 0.5, reduced to its two largest components with holes filled.
# 3. The image and its mask are zero-padded to a square and resized to the chain's output side,
#    here `chain_size` px; there the mask is **blurred** with a Gaussian of 3 px (the paper's
#    "3 pixel radius", read as the standard deviation, PIL's convention): at 256 px that is about
#    1.2 % of the image side, a soft edge a few millimetres wide.
# 4. **Masking and [0, 1] normalisation**: the equalised image times the blurred mask, min-max
#    scaled.
# 5. Optionally, the **lung ROI crop** of {cite:t}`benahmed2021deep`: the mask's bounding box, with
#    their rejection rule ("less than half of the size of the original image", read per side).
#
# **Before and after, for each source** (the last toggle of this section: random frontal images of
# each of the six sources, frame colour = source, through the chain: stored image, equalised, lung
# mask, masked and normalised output, and the ROI crop option). Equalisation gives every image a
# flat grey-level histogram, whatever its source's windowing (the differences {doc}`01_data`
# showed); it also amplifies the noise of low-contrast images and the burnt-in text. The mask
# removes borders, text, shoulders and abdomen; it keeps the shape and size of the lungs, which
# still differ between children (Kermany) and adults.
# :::
#
# One COVID-19 image of the COVID-ChestXRay collection through every step; the "SUPINE MOBILE"
# label burnt into its corner is gone at step 5, as in the paper's Fig. 2:

# %% tags=["hide-input"]
example = frontal[(frontal["source"] == "cohen") & (frontal["image_id"] == chain_example)]
example = example if len(example) else frontal[frontal["source"] == "cohen"].head(1)
(label, stages), = chain.stages_of(example, model, pipeline, **run_unet)
chain.plot_chain(stages, pipeline=pipeline, title=label)

# %% [markdown]
# The paper describes the chain in four lines. Everything it leaves open had to be decided here:
# each decision, with the numbers used, is behind the first toggle; the U-Net's one training run
# (`weights/unet_lungs.json`) behind the second.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the departures from the paper: every decision its four lines leave open", "code_prompt_hide": "Hide the departures"}
display(seg.departures_table(record, pipeline))

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the U-Net's training run: its record and its curve", "code_prompt_hide": "Hide the training run"}
display(seg.run_record_table(record))
seg.plot_training_curve(record)

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show frontal images of each source through the chain", "code_prompt_hide": "Hide the images"}
for source, rows in frontal.groupby("source", sort=False):
    picks = rows.sample(n=min(examples_per_source, len(rows)), random_state=seed)
    display(report.as_jpeg(chain.plot_chain_grid(chain.stages_of(picks, model, pipeline, with_source=False, **run_unet),
                                                 title=source, color=report.SOURCE_COLORS.get(source))))

# %% [markdown]
# ## Montgomery and Shenzhen, held out
#
# Dice and IoU against the manual masks of the patients the U-Net's training run held out.
#
# :::{dropdown} How they are scored
# The held-out patients are those of the training run's split (patient-level, seeded; each patient
# has one image in these sets). Dice and IoU are computed per image at the stored 256-px
# resolution, after the chain's own post-processing, against the manual masks; means carry a 95 %
# percentile-bootstrap interval over patients (10,000 resamples). They are recomputed here, then
# compared with the scores recorded when the weights were trained (behind the first toggle below:
# the recorded scores were computed when the run ended, with the float32 model; the committed
# weights are its float16 copy, hence differences in the fourth decimal at most).
# :::

# %% tags=["hide-input"]
split = model.meta.get("split", {})
seg_manifest = segment.segmentation_manifest(data_root, seed=split.get("seed", 0),
                                             test_fraction=split.get("test_fraction", 0.2),
                                             val_fraction=split.get("val_fraction", 0.15))
held_rows = report.limit_per_source(seg_manifest[seg_manifest["split"] == "test"], cap, seed=seed)
held_masks = segment.predict_masks(model, held_rows, batch_size=batch_size, device=dev)  # one U-Net pass
held = segment.score_masks(held_masks)
held_table = seg.score_table(held, ("dice", "iou"), by="source")
display(seg.format_score_table(held_table))

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the scores against those recorded with the weights", "code_prompt_hide": "Hide the comparison"}
recorded = pd.read_csv(DEFAULT_WEIGHTS.with_suffix(".scores.csv"), dtype={"image_id": str})
display(seg.compare_with_record(held, recorded[recorded["set"] == "held_out"], ("dice", "iou")).round(5))

# %% [markdown]
# Montgomery masks are matched more closely than Shenzhen's: a few poor Shenzhen images pull its
# mean down and widen its interval, while the medians of both sets are close. Behind the toggle:
# every held-out image as a point, the worst images, and where the masks disagree on average.
#
# :::{dropdown} What the worst cases and the disagreement map show
# Most of the worst cases are a matter of convention rather than of failure: a few Shenzhen
# masks include the lung behind the heart, which most Montgomery and Shenzhen masks leave out,
# and so does our U-Net; the others are edges (a base under soft tissue, an apex). Averaged over
# all held-out images in normalised image coordinates, no region is systematically missed or
# added. In the worst images, the manual mask is green and ours red, dashed; cyan is manual lung
# we miss, magenta our lung outside the manual mask.
# :::

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show every held-out score, the worst images and the disagreement map", "code_prompt_hide": "Hide the figures"}
display(seg.plot_score_distributions(held, ("dice", "iou"), by="source",
                                     title="Held-out Montgomery and Shenzhen patients"))
held_masks = {m["image_id"]: m for m in held_masks}
worst = seg.worst_cases(held, worst_cases, "dice")
display(seg.plot_mask_cases([{**held_masks[r.image_id], "label": f"{r.source} {r.image_id}\nDice {r.dice:.3f}"}
                             for r in worst.itertuples()], reference="manual mask",
                            title=f"The {len(worst)} lowest Dice scores among held-out patients"))
maps = seg.disagreement_maps([m["ref"] for m in held_masks.values()], [m["pred"] for m in held_masks.values()])
seg.plot_disagreement(maps, reference="manual mask",
                      title=f"Held-out patients ({maps['n']} images): where the masks agree and disagree")

# %% [markdown]
# ## COVID-19 images, against V7's masks
#
# The U-Net never saw a COVID-19 image. The V7 Labs lung masks {cite:p}`v7labs2020covid` of the
# COVID collection {cite:p}`cohen2020covid` (frontal images, COVID-positive) measure how it
# transfers. Besides Dice and IoU, two one-sided scores tell the kinds of error apart:
# **coverage**, the share of the V7 mask inside ours, and **precision**, the share of ours inside
# the V7 mask. Intervals are bootstrapped over patients (several images per patient here).

# %%
v7_rows = report.limit_per_source(segment.cohen_manifest(data_root), cap, seed=seed)
v7_masks = segment.predict_masks(model, v7_rows, batch_size=batch_size, device=dev)  # one U-Net pass
v7 = segment.score_masks(v7_masks)
v7_table = seg.score_table(v7, ("dice", "iou", "coverage", "precision"), by="view")
display(seg.format_score_table(v7_table))

# %% [markdown]
# Precision stays high while coverage is much lower: our masks lie inside the V7 masks but miss
# part of them, partly by **definition** (the lung behind the heart and below the dome of the
# diaphragm), partly by **error** (consolidated lung left out). Supine AP images, of patients too
# ill to stand, score lowest: the U-Net cuts most lung from the images of the sickest patients.
#
# :::{dropdown} Definition and error, by view, and what the figures behind the toggles show
# Part of this is **definition**: the V7 masks include the lung behind the heart and below the
# dome of the diaphragm, which the Montgomery and Shenzhen masks, and so our U-Net, leave out. The
# other part is **error**: densely consolidated lung looks like soft tissue to a network trained
# on mostly aerated lungs, and is left out.
#
# By view, each view's mean minus PA's, with a bootstrap interval over patients (a patient can have
# images in two views), is behind the first toggle; the figures behind the second. Supine AP images
# score lower than PA images on Dice and on coverage: their intervals in the score table do not
# overlap PA's, and their differences from PA exclude zero. AP images taken upright or sitting fall
# between the two. Precision is high for every view, a little lower for supine AP.
#
# Averaged in normalised coordinates, the V7 lung our masks miss is a wedge along the left heart
# border (in the image's right half) and a thinner band along the right heart border: the lung
# behind the heart. Our masks add almost nothing outside V7's. The cases: typical ones first (the
# images closest to the median Dice), where the difference is the definition, then the worst,
# where it is error.
# :::

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show each view's scores minus PA's, with intervals", "code_prompt_hide": "Hide the differences by view"}
display(masks.view_gaps(v7, ("dice", "coverage", "precision"), n_boot=n_boot, seed=seed))

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show every score by view, the disagreement map, typical and worst images", "code_prompt_hide": "Hide the figures"}
display(seg.plot_score_distributions(v7, ("dice", "coverage", "precision"), by="view",
                                     title="COVID-19 images, our masks against V7's"))
v7_masks = {m["image_id"]: m for m in v7_masks}
maps = seg.disagreement_maps([m["ref"] for m in v7_masks.values()], [m["pred"] for m in v7_masks.values()])
display(seg.plot_disagreement(maps, reference="V7 mask",
                              title=f"COVID-19 images ({maps['n']}): where our masks and V7's agree and disagree"))
median = v7.iloc[(v7["dice"] - v7["dice"].median()).abs().argsort()[:worst_cases]]
worst = seg.worst_cases(v7, worst_cases, "dice")
for title, rows in ((f"{len(median)} COVID-19 images near the median Dice", median),
                    (f"The {len(worst)} lowest Dice scores on COVID-19 images", worst)):
    cases = [{**v7_masks[r.image_id], "label": f"{r.image_id[:28]} · {r.view}\n"
              f"Dice {r.dice:.2f} · coverage {r.coverage:.2f} · precision {r.precision:.2f}"}
             for r in rows.itertuples()]
    display(seg.plot_mask_cases(cases, reference="V7 mask", title=title))

# %% [markdown]
# The worst images are severe bilateral pneumonia: white, consolidated lungs that the U-Net reads
# as soft tissue. For the paper's chain this is the important failure: the mask removes part of
# the opacities a COVID-19 classifier should look at, most on supine AP images. Whether it cuts
# more on one *label*, the V7 masks cannot tell ("Masks by label" measures it on every image).
#
# ## The images the chain refuses
#
# The chain rejects a broken mask rather than pass it on; the ROI crop adds the rule of
# {cite:t}`benahmed2021deep`. What each rule refuses, per source, and every refused image with its
# reason are behind the first toggle (two appear twice: the COVID collection holds copies of
# Hannover images).
#
# :::{dropdown} The rules, and which images they see
# The chain checks every mask and rejects it rather than pass on a broken one: an **empty** mask,
# a **fragmented** one (its two largest components hold under 80 % of the predicted lung), or one
# covering under 5 % or over 90 % of the image. The ROI crop adds the rule of
# {cite:t}`benahmed2021deep`: a bounding box **under half** the image's height or width is
# refused. All frontal images of each source go through the U-Net once (at most `max_images` per
# source under the chosen profile).
#
# The crop rule refuses many more images than the mask checks, and mostly not bad masks: correct
# masks of lungs that span less than half the image's *height*, in images that show much of the
# neck and abdomen (NIH's square films, Montgomery, Shenzhen) or lungs at low inspiration. Behind
# the second toggle, per source, which side of the refused crops is short, and how short; then the
# refused images through the chain: mask rejections (distinct images) first, then the shortest
# refused crop of each source. The probability column shows the U-Net's raw output, where the
# fragments of a fragmented mask are visible; the mask column shows what the chain kept of it. The
# fragments of the refused masks are gas in the stomach and bowel, taken for lung. The shortest
# refused crops tell something else: where one lung is white (consolidation, effusion, collapse),
# the U-Net finds only the other one, the paper's chain accepts that mask and removes the diseased
# lung entirely; only the crop rule, through the crop's width, catches such images.
# :::

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the refusals per source and rule, and every image the chain refuses", "code_prompt_hide": "Hide the refusals"}
sample = report.limit_per_source(frontal, cap, seed=seed, stratify="covid")
t0 = time.time()
diag = chain.chain_diagnostics(sample, model, pipeline, batch_size=batch_size, device=dev)
print(f"{len(diag)} frontal images diagnosed in {time.time() - t0:.0f} s")
display(chain.rejection_counts(diag))
refused = diag[diag["chain_rejection"] != ""]
display(refused[["source", "image_id", "view", "chain_rejection", "chain_reason"]].reset_index(drop=True))

# %% [markdown]
# The crop rule refuses many more images than the mask checks, mostly correct masks of short
# lungs, and some sources far more often than others: it selects images by source. Where one lung
# is white, the U-Net finds only the other one, and the paper's chain accepts that mask and
# removes the diseased lung entirely; only the crop rule catches such images.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the short side of the refused crops, and refused images through the chain", "code_prompt_hide": "Hide the short crops and the refused images"}
short = chain.refused_crops(diag, pipeline.min_crop_fraction)
display(chain.crop_shortfall(short))
half = -(-rejected_shown // 2)
shown = pd.concat([refused.drop_duplicates("image_id").head(half),
                   short.sort_values("side").groupby("source", sort=False).head(1)]).head(rejected_shown)
chain.plot_chain_grid(chain.stages_of(chain.rows_of(shown, frontal), model, pipeline, **run_unet),
                      ("original", "probability", "mask", "output", "crop"),
                      title="Rejected by the chain or by the ROI crop")

# %% [markdown]
# ## Masks by label
#
# Does the mask cut more, or fail more, on COVID-positive images? Per source and label, then COVID+
# minus COVID− within the COVID collection and pooled, behind the toggle.
#
# :::{dropdown} What is measured by label, and with which intervals
# Per source and label, over
# every frontal image diagnosed above: the **mask area** (share of the image; mean with a
# bootstrap interval over patients, and median), **one-lung masks** (the smaller side of the image
# holds under a quarter of the mask's larger side, and the second component under a quarter of
# the first: a single lung, as in the shortest refused crops above) and the images **refused** by
# the paper's chain and with the ROI crop of {cite:t}`benahmed2021deep`. Rates carry a cluster
# bootstrap interval over patients where a patient has several images, a Wilson interval
# otherwise (and over patients when no image is flagged). Montgomery and Shenzhen carry no COVID
# label and are left out.
#
# Within one source, only the COVID collection holds both labels. The compositions of Table I
# pool sources, so the label also differs by source there. The second table gives COVID+ minus
# COVID−, in percentage points, within the COVID collection and over the four sources the
# classifiers see.
# :::

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the masks per source and label, and COVID+ minus COVID−", "code_prompt_hide": "Hide the tables"}
display(masks.label_table(diag, n_boot=n_boot, seed=seed))
display(masks.label_gaps(diag, {"cohen (within one source)": ["cohen"],
                                   "cohen, hannover, kermany, nih pooled": ["cohen", "hannover", "kermany", "nih"]},
                         n_boot=n_boot, seed=seed))

# %% [markdown]
# The numbers do not support the claim that the mask cuts most on the COVID-positive label: the
# size and shape of the mask differ by source more than by label, so a classifier can read the
# source from them, and with it the label wherever a composition takes each label from a
# different source.
#
# :::{dropdown} The tables by label, read in detail
# Within the COVID collection, the one source with both labels, COVID+ and COVID− masks cover
# about the same share of the image (the interval of the difference includes zero), none of its
# masks holds a single lung, and refusals differ by less than their intervals. Pooled over the
# four sources the classifiers see, COVID+ masks are *larger*, not smaller: Kermany's children
# and NIH's films show more around the lungs, so their masks are a smaller share of the image.
# One-lung masks are *more* frequent among COVID− images: Kermany children with a consolidated
# lung, NIH adults with a white hemithorax (effusion, collapse), against a single Hannover mask.
# The chain refuses slightly more COVID+ images (Hannover's fragmented masks), the ROI crop
# refuses NIH's COVID− images most. What *is* measured for COVID+ images, the consolidated lung
# left out on V7 masks (most on supine AP), has no V7 counterpart for COVID− images, so the
# comparison of how much diseased lung the mask misses by label cannot be made with these data;
# the audit below looks at it by eye. What the tables show is that the size and shape of the mask
# differ by source more than by label: a classifier can read the source from them, and with it
# the label wherever a composition takes each label from a different source.
# :::
#
# ## What the mask removes and keeps
#
# How much of each image the mask keeps, and what lies outside it, is behind the first toggle
# (what its columns measure is in the dropdown below).

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show what the mask keeps and removes, per source: a table and a figure", "code_prompt_hide": "Hide the table and the figure"}
display(chain.area_summary(diag))
chain.plot_area_kept(diag)

# %% [markdown]
# The mask keeps about a fifth to a third of each image. What it removes is brighter than the
# lungs in every source, and source-specific: the field of view, the borders, the text, and the
# small marks that are a source signature in themselves. What lies *on* the lungs stays: devices,
# lines, tubes and annotations, which come with the sickest patients, and so with the
# COVID-positive label in these data.
#
# :::{dropdown} What is measured, what goes, and a failure the checks let through
# Nearly all near-white pixels lie outside the lungs and go. The small marks are a source signature
# in themselves: nearly every Montgomery image carries them (the "R" and "PA ERECT" labels), most
# Kermany and Shenzhen images, few Hannover images; the mask removes them.
#
# The first toggle gives the mean grey level inside and outside the lungs; the near-white pixels
# (stored value 250 or more: saturated body parts, borders, text, metal) and the share of them
# the chain removes; and the share of images with small near-white **marks** (connected
# components of 4 pixels to 1 % of the image: letters, side markers, labels) outside and inside
# the lungs.
#
# The second toggle shows the images with the most mark pixels outside the lungs, one per
# source (top: stored image and mask; bottom: the chain's output), then devices and text on
# the lungs.
#
# The NIH image of the second toggle (00003176_001, PA) shows a failure the chain's checks let
# through. The film is collimated to a narrow rectangle, and on both sides the U-Net follows the
# straight edges of the collimator rather than the ribs. At the image's lower left (the patient's
# right) the mask runs past the dome of the diaphragm into the upper abdomen, and the masked
# output keeps that bright block of liver as lung. The mask is large and in two pieces, so the
# area and fragment checks pass it; its crop is not short, so the ROI crop passes it too. Straight
# collimator edges are common on NIH films: where the mask copies them, the chain passes a source
# signature on to the classifier instead of removing it.
#
# Arrows drawn onto a figure from a paper (the COVID example above) partly stay: what lies *on* the
# lungs is kept. The marks counted inside the lungs (a few per cent of the COVID collection's
# images: annotations, arrows) undercount it, because devices are rarely saturated in the stored
# images. The examples of the second toggle were therefore picked by eye (they are named in the
# chapter's parameters): the leads and the pacemaker of a patient, the lines and tubes crossing an
# intensive-care chest, and severity scores written by a radiologist onto the lung fields of a
# figure from a paper. Electrodes, lines and tubes come with the sickest patients, and so with the
# COVID-positive label in these data: a classifier can still find them after masking.
# :::

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show marks removed outside the lungs, and devices and text kept on them", "code_prompt_hide": "Hide the images"}
texty = diag[diag["chain_rejection"] == ""].sort_values("marks_outside", ascending=False, kind="stable")
texty = texty.groupby("source", sort=False).head(1)
display(chain.plot_chain_grid(chain.stages_of(chain.rows_of(texty, frontal), model, pipeline, **run_unet),
                              columns=("mask", "output"), transpose=True, size=2.4,
                              title="Removed: markers, labels and text outside the lungs"))
picked = pd.DataFrame([key.split("/", 1) for key in overlap_examples], columns=["source", "image_id"])
chain.plot_chain_grid(chain.stages_of(chain.rows_of(picked, frontal), model, pipeline, **run_unet),
                      columns=("mask", "output"), transpose=True, size=3.2,
                      title="Kept: devices and text on the lungs")

# %% [markdown]
# ## Failures where no mask is known
#
# How often does the mask fail where there is no reference mask? Kermany, NIH, Hannover and the
# COVID collection's images without V7 masks have no Dice; a small visual audit stands in for one:
# **one reader's judgement on a small sample**, by a reader who is not a radiologist, an order of
# magnitude and not a validated failure rate.
#
# :::{dropdown} How the audit was drawn and judged
# Kermany, NIH, Hannover and the COVID collection's images without V7 masks (all of them
# COVID-negative) have no reference mask, so no Dice. A small visual audit stands in for one: a
# seeded sample of `audit_per_source` images per source, one image per patient (so that images
# are independent), each drawn with its predicted mask, was judged by eye as **ok** (the lungs
# covered, edges within a few millimetres), **partial** (a lung zone left out, usually an opaque
# base, or a mask running into the neck, the mediastinum or the abdomen) or **failed** (a lung
# mostly missed, or a mask that is not a pair of lungs). The verdicts, each with a short reason,
# are committed in `book/audit/mask_audit.csv`. This is **one reader's judgement on a small
# sample**, by a reader who is not a radiologist: it gives an order of magnitude, not a
# validated failure rate. The sample the chapter draws is checked against the CSV (behind the
# first toggle); the contact sheets the verdicts were given on (equalised image, predicted mask in
# yellow; the caption gives the verdict and its reason, green ok, orange partial, red failed) are
# behind the second.
# :::

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the audit's sample, checked against the committed verdicts", "code_prompt_hide": "Hide the sample check"}
pool = frontal[frontal["source"].isin(["kermany", "nih", "hannover"])
               | ((frontal["source"] == "cohen") & frontal["mask_path"].isna())]
audit = masks.read_audit(audit_csv)
drawn = masks.audit_sample(pool, audit_per_source, seed=audit_seed)
same = drawn[["source", "image_id"]].reset_index(drop=True).equals(audit[["source", "image_id"]])
print(f"audit sample: {len(drawn)} images drawn (seed {audit_seed}) from {len(pool)} frontal images "
      f"without reference masks; " + ("the CSV judges exactly these images" if same else
                                      "WARNING: the CSV does not match this sample (different data or seed)"))
print("judged by:", ", ".join(sorted(audit["auditor"].unique())))
report.glue_value("audit-per-source", report.rounded_range(audit.groupby("source").size(), step=1))

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the contact sheets of the audit", "code_prompt_hide": "Hide the contact sheets"}
shown_audit = chain.rows_of(audit, pool)
cases = masks.audit_cases(shown_audit, model, audit=audit, **run_unet)
for source in dict.fromkeys(audit["source"]):
    display(report.as_jpeg(masks.plot_audit_sheet([c for c in cases if c["source"] == source], ncols=5, size=2.3,
                                                  title=f"{source}: visual audit of the predicted masks",
                                                  color=report.SOURCE_COLORS.get(source))))

# %%
display(masks.audit_summary(audit))

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show which audited masks the chain's automatic checks would have flagged", "code_prompt_hide": "Hide the checks"}
display(masks.audit_against_checks(audit, diag))

# %% [markdown]
# Outright failures are rare in this sample, partial masks common, and the chain's checks catch
# neither: on these sources the masks' errors pass into the classifier's input unchecked, and they
# are errors of the same kind the V7 comparison measured on COVID-19 images, diseased lung left
# out.
#
# :::{dropdown} The audit's outcome, read in detail
# Outright failures are rare in this sample, a few in a hundred, though with
# {glue:text}`audit-per-source` images per source the upper end of each interval is well above that.
# Partial masks are common, about one in four: an opaque lung zone left out (Hannover's
# intensive-care films, Kermany children with a consolidated left lung, NIH bases with effusion), or
# a mask that runs into the neck, across the mediastinum or into the bowel gas under the diaphragm,
# as in the NIH image above. The paper's chain accepts every audited mask, failed ones included; the
# ROI crop refuses none of the failed or partial ones, only correct masks of short lungs; the
# one-lung measure finds half of the failures and none of the partial masks.
# :::
#
# ## Takeaway
#
# The answer below gives the chapter's key numbers (all of them behind the toggle). Beside them:
# on the sources without reference masks a small visual audit finds few outright failures but
# many partial masks, none of which the chain's checks refuse; mask size, one-lung masks and
# refusals differ more by source than by label. Whether a classifier still finds the source in
# what is left is measured in the following chapters.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the chapter's key numbers", "code_prompt_hide": "Hide the key numbers"}
key = seg.key_numbers(held_table, v7_table, chain.rejection_counts(diag), diag)["value"]
display(key)

# %% tags=["hide-input"]
report.show_answer(
    "Does the paper's lung segmentation work on these images, and what does the chain leave in?",
    f"On held-out patients of its own sources the U-Net reaches Dice {key['held-out Dice, all']}; on COVID-19 "
    f"images with reference masks (V7) Dice {key['V7 dice, all views']}, covering {key['V7 coverage, all views']} "
    f"of the lung at a precision of {key['V7 precision, all views']}: it leaves diseased lung out. The chain "
    f"refuses {key['refused by the paper chain']} and keeps a median {key['area kept, median']}; it removes "
    "what lies around the lungs, not what lies on them, nor the shape of the mask.",
    "Intervals resample patients. The sources without reference masks are audited by eye on a small sample, "
    "so their failure rates have wide intervals.")

# %% [markdown]
# ## Provenance

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show what produced this chapter", "code_prompt_hide": "Hide the provenance"}
parameters = dict(data_root=data_root, device=device, profile=profile, seed=seed, chain_size=chain_size,
                  equalization=equalization, worst_cases=worst_cases, examples_per_source=examples_per_source,
                  rejected_shown=rejected_shown, chain_example=chain_example,
                  overlap_examples=overlap_examples, batch_size=batch_size, audit_csv=audit_csv,
                  audit_per_source=audit_per_source, audit_seed=audit_seed, n_boot=n_boot)
report.provenance(profile=profile, parameters=parameters, started=started, data_root=data_root)
