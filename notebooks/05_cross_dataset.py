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
# # The cross-dataset matrix
#
# ```{glue:md} chapter-answer
# :format: myst
# ```
#
# Table II of {cite:t}`tartaglione2020unveiling` is the paper's central experiment. A ResNet-18
# {cite:p}`he2016deep` is trained on each of five compositions of Table I, with its encoder
# trained from scratch or pre-trained on pneumonia (ChestXRay {cite:p}`kermany2018identifying` or
# RSNA {cite:p}`rsna2018pneumonia`), and every model is tested on the test set of *every*
# composition. The paper reads the matrix as a warning (claim **C1**): a model trained on CORDA
# plus COVID- images borrowed from another dataset scores very high on its own composition's test
# set and collapses on the others, because it learned to tell the datasets apart, not COVID-19.
#
# This chapter rebuilds the matrix from the run records of the `table2` grid (ResNet-18 x three
# pre-trainings x five compositions, seed 0) and `seeds` (seeds 1 and 2 of the headline cells),
# puts the paper's numbers beside ours cell by cell, adds what no paper of the three reports, the
# AUC a classifier reaches from the images' metadata alone, and decides C1 with a number and its
# interval. Nothing is trained here: every number is read from `results/<run_id>/` by
# `covid_lib.report.records` and `covid_lib.report.reproduction`.
#
# **Departures from the paper**, which bear on every number below (the `cpu` profile, see
# {doc}`../reproduce`): 128 px inputs (paper: 224), AdamW with a one-cycle schedule for at most 30
# epochs with early stopping (paper: SGD, 100 epochs), encoders trained **from scratch** without
# ImageNet, and pre-training sets of about {glue:text}`pretrain-images` images (paper: 5,857
# ChestXRay and 26,684 RSNA images, on top of ImageNet). Our **CORDA is a public stand-in** (the
# part of the Cohen collection outside the April-2020 snapshot: many hospitals, where CORDA was one
# hospital in one fortnight; see {doc}`01_data`). Classes are balanced **exactly** (the paper:
# "where possible"), and every split is **by patient**. The pre-training runs behind the encoders,
# with the images they used (the paper pre-trained on all of ChestXRay and of RSNA's pneumonia set):

# %% tags=["parameters"]
data_root = None  # None: $COVID_LIB_DATA, else ../shared/data
device = "auto"  # nothing is trained or scored here
profile = "cpu"  # the profile whose records are read: smoke | cpu | paper
seed = 0  # seed of the bootstrap resamples (and of the metadata baseline)
threshold = "paper"  # paper: 0.5, as in the paper | validation: chosen on the validation set
n_boot = 2000  # patient-cluster bootstrap resamples of the C1 gap and paired differences
results = None  # None: $COVID_LIB_RESULTS, else the repository's results/

# %% tags=["hide-input"]
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import time

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from covid_lib.report import records as rr
from covid_lib.report import reproduction as rp
from covid_lib.data import counts_in_test, data_version
from covid_lib.grid import grid_specs
from covid_lib.report import judge
from covid_lib.report.common import glue_value, rounded_range, start_chapter, styled

started = start_chapter()
version = data_version(data_root)
records = rr.chapter_records(("table2", "seeds"), profile, data_root=data_root, results=results)
table2, seed_runs = records["table2"], records["seeds"]
print(f"threshold rule {threshold!r}")

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the pre-training sets behind the encoders", "code_prompt_hide": "Hide the pre-training sets"}
pretraining = rr.pretraining_sizes(grid_specs("table2", profile, data_root=data_root, data_version=version), results)
glue_value("pretrain-images", rounded_range(pretraining["n train"].dropna()))
glue_value("covidchestxray-test", sum(counts_in_test("COVID-ChestXRay", data_root).values()))
display(styled(pretraining))

# %% [markdown]
# ## Which runs are there
#
# One row per run of the grid, found by its run id (the hash of its spec). A run can be *done*,
# *did not learn* (best validation AUC under 0.6: it is shown, hatched in the heatmaps, never
# averaged in silently), *collapsed* (it learned on validation, but its scores on its own test set
# all fall on one side of the threshold or barely spread: BA 0.5 whatever its AUC),
# *failed* (it has no record; its traceback is kept in the cache, `$COVID_LIB_CACHE/failures/`, not
# among the results) or *missing* (not trained yet).

# %% tags=["hide-output"] mystnb={"code_prompt_show": "Show every run of the grid", "code_prompt_hide": "Hide the runs"}
display(styled(table2[["pretrain", "composition", "seed", "status", "run_id"]]))

# %% [markdown]
# ## The metadata-only baseline
#
# Each composition mixes sources that differ in more than disease: view, acquisition year, age,
# sex, original image size and file format (see {doc}`01_data`). A classifier that sees only these
# fields, never a pixel, shows how far a model can get without looking at the lungs. Its AUC, with
# the interval of every AUC below (the patient bootstrap, DeLong's where each test patient has one
# image; column `interval`), stands beside each cell of the table below.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the metadata-only baseline", "code_prompt_hide": "Hide the baseline"}
from covid_lib.analysis.metadata_baseline import baseline_table

baseline = baseline_table(data_root, seed=seed, n_boot=n_boot)
display(styled(baseline))

# %% [markdown]
# ## Table II, ours beside the paper's
#
# Every (pre-training, training composition, test set) cell with the seven metrics of the paper:
# ours with its 95% interval (patients are the resampling unit; threshold 0.5, the paper's rule,
# unless `threshold` says otherwise), the paper's point value beside it. `n (rejected)` counts the
# test images scored and those the pre-processing chain refused.
#
# **Our test sets include COVID-ChestXRay** (its {glue:text}`covidchestxray-test` April-2020 images;
# Table IV of the paper, not Table II). The paper tests Table II's models on four test sets only, so
# those cells have no paper value, except the COVID-ChestXRay model on its own
# {glue:text}`covidchestxray-test` images, which the paper reports in Table IV. Table IV's model
# names no encoder; its CORDA cell equals Table II's ChestXRay row, so it is shown there.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show Table II, every cell with its interval beside the paper's", "code_prompt_hide": "Hide Table II"}
long = rp.with_baseline(rr.beside_paper(rr.matrix_long(table2, threshold=threshold)), baseline)
display(styled(rp.matrix_display(long)))

# %% [markdown]
# ## Heatmaps: ours beside the paper's
#
# Rows are the training composition, columns the test set, one row of panels per pre-training;
# the diagonal (a model on its own composition's test set) is outlined. Blue is better than
# chance, red worse, white is chance (BA and AUC 0.5, DOR 1). Hatched cells (†) did not learn, dotted
# cells (‡) collapsed; grey
# cells are missing records or cells the paper does not report. The AUC first (the metric C1 is
# decided on), then the BA and the DOR behind toggles.

# %%
fig = rp.plot_heatmaps(long, "auc", ours_label=f"ours ({profile} profile)")
plt.show()

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the BA heatmaps (threshold 0.5)", "code_prompt_hide": "Hide the BA heatmaps"}
fig = rp.plot_heatmaps(long, "balanced_accuracy", ours_label=f"ours ({profile} profile)")
plt.show()

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the DOR heatmaps", "code_prompt_hide": "Hide the DOR heatmaps"}
fig = rp.plot_heatmaps(long, "dor", ours_label=f"ours ({profile} profile)")
plt.show()

# %% [markdown]
# ### The threshold
#
# At the paper's threshold of 0.5 a model whose scores all fall on one side of it has a BA of
# exactly 0.5 whatever its AUC: its sensitivity is 1 and its specificity 0, or the reverse. The
# same BA with the threshold chosen on each model's **validation** set (Youden's J; never on test
# data) separates "ranks the images but is badly calibrated" from "cannot tell them apart". The
# paper's panels stay at 0.5.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the BA heatmaps at the validation threshold", "code_prompt_hide": "Hide the heatmaps"}
long_val = rr.beside_paper(rr.matrix_long(table2, threshold="validation"))
fig = rp.plot_heatmaps(long_val, "balanced_accuracy", ours_label="ours, validation threshold",
                       threshold_label="ours at the validation threshold, the paper's at 0.5")
plt.show()

# %% [markdown]
# ## C1: the diagonal against the off-diagonal
#
# The claim is about the diagonal: high on the composition's own test set, low elsewhere. The
# number that decides it, per model, is **its AUC on its own test set minus its mean AUC on the
# other Table II test sets**, with a patient-cluster bootstrap interval. Our test sets are nested
# (each CORDA&X test set is the CORDA test set plus the COVID- images of X), so the bootstrap
# draws patients once for all test sets of a model. A positive gap whose interval excludes 0 is
# what the paper describes; the CORDA-only model is the reference, since it borrowed nothing.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the gap of every model, with its interval", "code_prompt_hide": "Hide the gaps"}
gaps = rp.c1_table(table2, n_boot=n_boot)
display(styled(gaps[["pretrain", "composition", "status", "auc_own", "auc_off", "gap", "gap_low", "gap_high",
                      "n_images_own", "n_patients"]], intervals={"gap [95% CI]": ("gap", "gap_low", "gap_high")}))

# %% [markdown]
# The same images, two models: each augmented-composition model against the CORDA-only model of
# the same pre-training, on the CORDA test set (where borrowing COVID- images from another
# dataset should not help if the model learned COVID-19) and on the augmented model's own test
# set. Paired DeLong test {cite:p}`delong1988comparing` on the images both scored, and a
# patient-cluster interval of the difference.

# %% tags=["hide-output"] mystnb={"code_prompt_show": "Show the paired tests, augmented against CORDA-only", "code_prompt_hide": "Hide the paired tests"}
paired = rp.c1_paired(table2, n_boot=n_boot)
display(styled(rr.paired_table(paired, "augmented", "CORDA only")))

# %% [markdown]
# ### C1 as the protocol decides it
#
# The gaps above are also positive for the CORDA-only models, which borrowed nothing: test sets
# differ in difficulty. The {doc}`../protocol` therefore decides C1 on the *difference* of gaps,
# augmented model minus the CORDA-only model of the same pre-training and seed, pooled over
# compositions, pre-trainings and seeds. The answer box above gives the outcome; the rule and the
# outcome at both pre-training scales:

# %% tags=["remove-input", "hide-output"] mystnb={"code_prompt_show": "Show the protocol's rule for claim C1 and its outcome at both pre-training scales", "code_prompt_hide": "Hide the rule"}
judge.show_claim("C1")

# %% [markdown]
# ## Seeds
#
# The headline cells (the CORDA and CORDA&ChestXRay rows, and the COVID-ChestXRay model) are
# trained with seeds 0, 1 and 2 (the `seeds` grid: weights, head, shuffling and augmentation
# change; the splits do not). Mean ± SD over the seeds whose model learned sits beside seed 0's
# interval: the interval says how much the *test images* leave open, the SD how much the
# *training run* does. Seeds that did not learn or collapsed are counted and named beside, never
# averaged in, and so are seeds not recorded yet.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the headline cells over seeds", "code_prompt_hide": "Hide the seeds table"}
headline = pd.concat([table2[table2["composition"].isin(["CORDA", "CORDA&ChestXRay", "COVID-ChestXRay"])],
                      seed_runs], ignore_index=True).drop_duplicates("run_id")
seed_long = rr.matrix_long(headline, threshold=threshold)
display(styled(rp.seed_table(seed_long)))

# %% [markdown]
# ## Does the input size change the verdicts?
#
# Ours see 128 px, the paper's 224 px. The `resolution` grid retrains at 224 px ResNet-18 on CORDA
# and CORDA&ChestXRay, from scratch and from a whole-set ChestXRay pre-training also run at 224 px,
# seeds 0-2, beside their 128-px twins in `table2_full`. No new rule: C1's and C2's rules of the
# {doc}`../protocol` are applied unchanged to these cells at each size, and a verdict *changes*
# when the two outcomes differ (a subset of each claim's cells; the claims' own verdicts are in the
# answer boxes). Beside them, each model's own-test AUC at 224 minus 128 px (paired, descriptive).
# The check was committed before any 224-px run was recorded; the cell counts the records made after.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the verdicts on the resolution cells at 128 and 224 px", "code_prompt_hide": "Hide the resolution check"}
from covid_lib.report import resolution as rs

res = rs.resolution_records(profile, data_root=data_root, results=results)
res_verdicts, res_effect = rs.cell_verdicts(res), rs.size_effect(res)
res_fixed = rs.fixed_at()
res_after, res_n = rs.records_after(res, res_fixed)
print(f"check fixed at {res_fixed or 'an uncommitted file'}; {res_n} of {len(res) // 2} 224-px records here, "
      f"{res_after} of them made after the check was fixed")
print(rs.summary(res_verdicts, res_effect))
display(styled(rs.verdict_table(res_verdicts)))

# %% tags=["hide-output"] mystnb={"code_prompt_show": "Show each model's AUC at both sizes", "code_prompt_hide": "Hide the plot"}
if res_effect.n_used:
    fig = rs.plot_size_effect(res_effect)
    plt.show()
else:
    print("no cell has a usable model at both sizes yet")

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Until the bf16 runs land: an fp32 pilot, from scratch, 224 against 128 px (deciding nothing)", "code_prompt_hide": "Hide the pilot"}
from IPython.display import Markdown

from covid_lib.report.sensitivity import keep_threshold_collapsed

display(Markdown(
    "Until the check's bf16 runs are recorded (they need a CPU with native bf16 or a GPU), a CPU without bf16 "
    "can still compare the two sizes at *one* precision: this **fp32 pilot** trains the fp32 twins of the six "
    "from-scratch cells at 224 px and sets them beside the fp32 twins of the same cells at 128 px, which the "
    "precision control trained (see the reproduce page). It was fixed before its runs were trained "
    "(`scripts/run_resolution_pilot.py`), it leaves out the pre-trained cells (so C2), and it decides nothing. "
    "Beside the protocol's reading, the same with the models collapsed at the threshold only kept (the verdicts "
    "page's sensitivity reading)."))

pilot = rs.pilot_records(profile, data_root=data_root, results=results)
for reading, recs in (("protocol's collapse rule", pilot),
                      ("threshold-collapsed models kept (post hoc)", keep_threshold_collapsed(pilot))):
    pilot_verdicts = rs.cell_verdicts(recs, pretrains=("none",))
    pilot_effect = rs.size_effect(recs, pretrains=("none",))
    print(f"fp32 pilot, {reading}: {rs.summary(pilot_verdicts, pilot_effect)}")
    display(styled(rs.verdict_table(pilot_verdicts)))
if pilot_effect.n_used:  # the last reading: every cell whose models rank
    fig = rs.plot_size_effect(pilot_effect)
    fig.suptitle("fp32 pilot, threshold-collapsed models kept (post hoc)", fontsize=9)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## Are the scores probabilities? (calibration)
#
# The paper reads every metric at the threshold 0.5, which treats a score as a probability. On
# each model's own test set: the Brier score (mean squared error of the score; patient-cluster
# interval) beside that of always answering the test set's share of COVID+ images, the mean score
# against that share, and the expected calibration error (ECE, 10 bins). The ResNet-18 models of
# the grid at the paper's pre-training scale, seed 0; collapsed models are listed, not scored.
# The numbers, then the reliability diagrams, each behind a toggle.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the calibration table", "code_prompt_hide": "Hide the calibration table"}
full_seed0 = rr.spec_records([s for s in grid_specs("table2_full", profile, data_root=data_root)
                              if s.task == "covid" and s.seed == 0])
display(styled(rp.calibration_table(full_seed0, n_boot=n_boot)))

# %% tags=["hide-output"] mystnb={"code_prompt_show": "Show the reliability diagrams", "code_prompt_hide": "Hide the reliability diagrams"}
if (full_seed0["status"] == "done").any():
    fig = rp.plot_reliability(full_seed0)
    plt.show()

# %% [markdown]
# ## What the matrix says
#
# - The verdict above is decided by the protocol's difference of gaps (augmented minus CORDA-only),
#   with patients as the resampling unit; the table of paired tests says whether borrowing COVID-
#   images from another dataset changed what a model does on the same CORDA images.
# - The paper's matrix has no intervals. Ours (computed below) show how much test sets of about a
#   hundred images leave open; many of the paper's off-diagonal differences are smaller than one of
#   them.
# - Where the metadata-only AUC is close to a model's AUC, the model needs no lung to reach its
#   score.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the interval widths per test set and the paper's off-diagonal range", "code_prompt_hide": "Hide the widths"}
done = long[long["auc"].notna()]
widths = done.assign(width=done["auc_high"] - done["auc_low"]).groupby("test_set")["width"].median()
print("median width of our AUC intervals per test set:", widths.round(2).to_dict())
paper_ii = rr.paper_long(("II",))
paper_off = paper_ii[paper_ii["test_set"] != paper_ii["composition"]]
spread = paper_off.groupby(["pretrain", "composition"])["auc"].agg(lambda a: a.max() - a.min())
print(f"the paper's AUC range across the off-diagonal cells of a Table II row: median {spread.median():.2f}")

# %% [markdown]
# ## Takeaway

# %% tags=["hide-input"]
from covid_lib.report.common import show_verdict_answer

c1 = judge.protocol_verdict("C1")
show_verdict_answer(
    "Does a model trained on CORDA plus COVID- images borrowed from another dataset learn the dataset "
    "instead of COVID-19 (high on its own test set, low on the others)?", c1,
    answer=(f"Median width of our AUC intervals: {widths.median():.2f}; the paper's AUC range across a Table II "
            f"row's off-diagonal cells: median {spread.median():.2f}." if len(widths) else ""))
print(f"chapter executed in {time.time() - started:.0f} s")
