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
# # Pre-training the encoder
#
# ```{glue:md} chapter-answer
# :format: myst
# ```
#
# Tartaglione et al. pre-train the ResNet encoder on a pneumonia task before fine-tuning it on the
# few COVID-19 images (Sec. III-C, IV-A): on **ChestXRay** (Kermany's pediatric pneumonia set,
# three classes: normal, bacterial, viral) or on **RSNA** (pneumonia yes/no), both starting from
# ImageNet weights. They read Table II as "pre-training the encoder helps in improving the
# specificity" (claim **C2**). This chapter shows our pre-trainings, their learning curves and test
# scores, and tests C2 on the same test images, pre-trained against from scratch.
#
# Every number below is read from a run record under `results/` (written by
# `python -m covid_lib grid run table2 --profile cpu` and `... grid run seeds`); this chapter trains
# nothing. A record that is missing is shown as missing, and a model that did not learn (best
# validation AUC under 0.6) is flagged wherever it appears.

# %% tags=["parameters"]
data_root = None  # None: $COVID_LIB_DATA, else ../shared/data (only for the provenance record)
device = "auto"  # no model runs in this chapter
profile = "cpu"  # whose records to read: smoke | cpu | paper
seed = 0  # the seed of the single-seed tables
n_boot = 2000  # bootstrap resamples over patients

# %% tags=["hide-input"]
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")

import pandas as pd
from IPython.display import display

from covid_lib.report import common as report
from covid_lib.analysis import verdicts
from covid_lib.report import pretraining as rp
from covid_lib.report import training as rt
from covid_lib.grid import COMPOSITION_ORDER, grid_status, status_counts
from covid_lib.profiles import get_profile

started = time.time()
settings = get_profile(profile)
pd.set_option("display.max_colwidth", None)
pd.set_option("display.width", 200)
index = rt.record_index()
status = pd.concat([grid_status(g, profile, data_root=data_root).assign(grid=g) for g in ("table2", "seeds")])
counts = status_counts(status.drop_duplicates("run_id"))
print(f"profile {profile!r}: table2 + seeds grids, {len(status.drop_duplicates('run_id'))} runs: {counts}")

# %% [markdown]
# ## How small our pre-training sets are
#
# The paper pre-trains on the whole of ChestXRay (5,857 images) and of RSNA (26,684), each on top
# of an ImageNet encoder. Our data hold a 960-image subset of ChestXRay and a 1,000-image NIH subset
# with RSNA labels, split by patient, and no ImageNet weights can be downloaded: **our encoders
# start from random weights and see a few percent of the paper's pre-training images.** This is the
# largest departure from the paper in this book, and it bears on every pre-trained row below.

# %%
display(rp.pretraining_sizes(index, profile).style.hide(axis="index"))

# %% [markdown]
# ## Learning curves and test scores
#
# Each pre-training is trained with the `cpu` recipe (AdamW one-cycle, up to 30 epochs, early
# stopping after 10 without a better validation AUC, focal loss, 128 px; `book/reproduce.md` gives
# the reasons). The kept weights are those of the best validation epoch (dotted line). ChestXRay's
# AUC is the macro one-vs-rest AUC over its three classes.

# %% tags=["hide-input"]
pre = index[(index["task"] == "pretrain") & (index["profile"] == profile)]
if pre.empty:
    print("no pre-training record yet for this profile: run `python -m covid_lib grid run table2`")
else:
    fig = rp.plot_learning_curves(index, profile)

# %% [markdown]
# Test scores on each pre-training set's own patient-level test split, with 95 % intervals from a
# bootstrap over patients:

# %%
display(rt.pretraining_table(index, profile))

# %% [markdown]
# The pre-trainings learn their own task (an AUC well above 0.5 on held-out patients), which is
# all a pre-training has to do here; they are weaker than ImageNet-initialised encoders trained
# on ten to fifty times more images would be.
#
# ## Does pre-training raise specificity? (claim C2)
#
# The paper's evidence is Table II read row by row: on CORDA, "the specificity is 0.80 [with the
# RSNA encoder], while it is only 0.58 with no pre-trained feature extractor", at the same
# sensitivity. Here each pre-trained fine-tune is compared with the **same architecture from
# scratch on the same test images** (each composition's own test set), at the paper's threshold
# 0.5. The difference in specificity gets a 95 % interval from a bootstrap over patients (a
# patient's images are resampled together). Seeds 1 and 2 exist for the CORDA, CORDA&ChestXRay and
# COVID-ChestXRay rows (the `seeds` grid).

# %%
gains = rp.specificity_gains(index, COMPOSITION_ORDER, seeds=settings.seeds, profile=profile, n_boot=n_boot)
display(rp.specificity_gain_table(gains))

# %% tags=["hide-input"]
import matplotlib.pyplot as plt

if not gains.empty:
    g = gains.assign(label=gains["composition"] + " · " + gains["pretrain"] + " · s" + gains["seed"].astype(str))
    g = g.sort_values(["composition", "pretrain", "seed"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(g) + 1.2))
    for i, r in g.iterrows():  # grey: a model of the pair did not learn
        ax.errorbar(r["difference"], i, xerr=[[r["difference"] - r["low"]], [r["high"] - r["difference"]]],
                    fmt="o", color="tab:grey" if r["did_not_learn"] else "tab:blue", mfc="white", capsize=2)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(g.index, g["label"], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("specificity: pre-trained minus scratch (95% CI over patients; grey: a model did not learn)")
    fig.tight_layout()

# %% [markdown]
# The AUC, which needs no threshold, tells the same story or a different one; the paired DeLong
# test and the patient-cluster interval of the AUC difference, seed 0:

# %%
auc_rows = [{**g, "pretrain": p} for c in COMPOSITION_ORDER for p in ("kermany", "nih")
            if (g := rt.pretraining_gain(index, composition=c, pretrain=p, profile=profile, seed=seed,
                                         n_boot=n_boot)) is not None]
auc_gain = pd.DataFrame(auc_rows)
if not auc_gain.empty:
    auc_gain["difference [95% CI]"] = [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, (lo, hi) in
                                       zip(auc_gain["difference"], auc_gain["difference_cluster_ci"])]
    display(auc_gain[["composition", "pretrain", "n_images", "n_patients", "auc_pretrained", "auc_scratch",
                      "pretrained_did_not_learn", "scratch_did_not_learn", "difference [95% CI]", "delong_p"]]
            .round(3))
else:
    print("no paired records yet")

# %% [markdown]
# ### Verdict on C2
#
# The verdict is decided by the paired specificity differences above, counting only comparisons
# in which both models learned: *reproduced* when most intervals lie wholly above 0 and none below,
# *not reproduced* when none lies above and some below (or most below), otherwise *inconclusive*.

# %%
verdicts.show(rp.verdict_c2(gains))

# %% [markdown]
# Whatever the verdict, it is a verdict on *this* pre-training: from random weights, on a few
# hundred images. It does not say that the paper's ImageNet + 5,857 / 26,684-image pre-training
# fails to raise specificity on CORDA; it says that the gain is not something a reader should
# expect to carry over to a small public reconstruction, and that a specificity difference between
# two single runs, read off a table without an interval, is not evidence.
#
# ## Takeaway

# %% tags=["hide-input"]
from covid_lib.report.common import show_verdict_answer

show_verdict_answer("Does pre-training the encoder on pneumonia images raise specificity on COVID-19?",
                    rp.verdict_c2(gains))

# %% [markdown]
# ## Provenance

# %% tags=["hide-input"]
parameters = dict(data_root=data_root, device=device, profile=profile, seed=seed, n_boot=n_boot)
report.provenance(profile=profile, parameters=parameters, started=started, data_root=data_root)
