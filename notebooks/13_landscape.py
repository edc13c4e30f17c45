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
# # The latent landscape
#
# ```{glue:md} chapter-answer
# :format: myst
# ```
#
# **What the KTH report did.** {cite:t}`panagiotakopoulos2020transfer` pre-train DenseNet-121
# and ResNet-50 on ChestX-ray14 and fine-tune them on COVID-19 X-rays. To "visualize the effect
# of the learnt latent representation" they draw self-organising maps {cite:p}`kohonen1990self`
# and t-SNE {cite:p}`vandermaaten2008visualizing` "before and after applying our Neural Network
# on our images" (Sec. 4.1): "we will input both our original images and the output of the
# final convolution (before the classification)". Their SOM has a Gaussian neighbourhood whose
# radius shrinks as σ_t = σ_0 exp(−t² log(4σ_0) / T²). Sec. 5.4 maps the 14 ChestX-ray14
# pathologies and COVID-19 (Fig. 7). In both maps "COVID-19 turned to be close to Edema,
# Pneumonia and Emphysema". They also write: "we see that the latent representation is more
# structured, separating the different diseases into clusters (compare 7a with 7b), while
# initially the model was focused on differentiating two data sets. However, after learning
# thoracic images the representations became more alike and the model managed to better cluster
# the diseases." The conclusion reads: "Its latent representation was able to properly separate
# the classes and created distinct clusters". **The report gives no number for either map.**
# Its numbers are classification AUCs: 0.81 on average on ChestX-ray14, 0.83 and 0.88 for
# COVID-19, and 0.89 for COVID-19 in the 15-class task. Among its proposals is to "exploit
# further features provided by many of the medical data sets (e.g. age and gender)".
#
# **What this chapter asks.** Is a fine-tuned encoder's latent space organised by *disease* (the
# COVID label), or still by *where the image came from* (its source), or by the patient's *age*?
# Pictures cannot settle this, so each map gets a number. We use one SOM (MiniSom, seeded) and one
# t-SNE (openTSNE {cite:p}`policar2024opentsne`, seeded) of the encoder features of the test images
# of all six of our sources, coloured three ways. For each SOM node we take the share of its
# majority class, and average it over nodes weighted by their hits. This **purity** is computed for
# source, for COVID label and for age group. Each purity gets a patient-cluster bootstrap interval
# and is set against a chance level from permutations. There are three encoders: the
# ChestXRay-pre-trained ResNet-18 before fine-tuning, the same encoder after fine-tuning on
# CORDA&ChestXRay, and a ResNet-18 trained on CORDA&ChestXRay from scratch. Nothing is trained here.
# The features come from the checkpoints of the Table II grid of the chosen pre-training
# (`table2_full` for the whole ChestXRay set, `table2` for {glue:text}`pretrain-small` images); an
# encoder whose checkpoint is not cached here is listed and left out.

# %% tags=["parameters"]
data_root = None  # None: $COVID_LIB_DATA, else ../shared/data
device = "auto"  # features are extracted on CUDA when present
profile = "cpu"  # smoke | cpu | paper: whose checkpoints are read (nothing is trained here)
seed = 0  # sampling, SOM, t-SNE, permutation and bootstrap seed
per_source = 80  # test images drawn per source (stratified by COVID label and age group; None: all)
composition = "CORDA&ChestXRay"  # the fine-tuning compared
pretrain = "kermany_full"  # ChestXRay pre-training: kermany_full (the whole set, the paper's scale) or kermany (563 images)
n_components = 50  # principal components kept before the SOM and the t-SNE
perplexity = 30.0  # t-SNE perplexity
n_boot = 1000  # bootstrap resamples over patients
n_perm = 200  # label permutations for the chance level

# %% tags=["hide-input"]
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from covid_lib.analysis import embed
from covid_lib.report import common as report
from covid_lib.analysis import landscape as L
from covid_lib.report import landscape as rl
from covid_lib.data import global_splits
from covid_lib.report.records import pretraining_images
from covid_lib.profiles import resolve_device

plt.rcParams["figure.dpi"] = 72
started = time.time()
dev = resolve_device(device)
pd.set_option("display.max_colwidth", None)
pd.set_option("display.width", 200)
records = rl.encoder_records(profile, composition=composition, pretrain=pretrain, seed=seed, data_root=data_root)
small = pretraining_images(("table2",), profile, sources=("kermany",), data_root=data_root)
report.glue_value("pretrain-small", report.rounded_range(small, step=1))
display(records.drop(columns="spec").style.hide(axis="index"))
missing = records[~records["status"].isin(["done", "did not learn"])]
if len(missing):
    print("not mapped (no usable record or checkpoint):", "; ".join(f"{e} ({s})" for e, s in
                                                                   zip(missing["encoder"], missing["status"])))
    print("to make them: python -m covid_lib grid run table2 --profile", profile)
if (records["status"] == "did not learn").any():
    print("did not learn (best validation AUC < 0.6), mapped but flagged:",
          ", ".join(records.loc[records["status"] == "did not learn", "encoder"]))

# %% [markdown]
# ## The images
#
# The test split of `global_splits` (patients that no composition trains on) is used for each of
# the six sources. Only frontal images are kept, and Cohen copies of Hannover images are left
# out (as in the shortcuts chapter). At most `per_source` images are drawn per source,
# proportionally within strata of COVID label × age group. What each source can show:
#
# - **cohen** (the CORDA and COVID-ChestXRay stand-ins): the only source with both labels, and
#   with ages of both adults and some children.
# - **hannover**: all COVID+, with ages.
# - **kermany** (ChestXRay): all COVID−, children aged 1–5. The manifest has no age per image,
#   so each image takes the age group that the source's documentation states. Age and source
#   are therefore the same thing here.
# - **nih** (RSNA): all COVID−, adults with ages.
# - **montgomery**, **shenzhen** (tuberculosis sets): COVID−, without ages (unknown). No
#   classifier here was trained or tested on them, but our lung U-Net was trained on their
#   masks.
#
# So over all images the COVID label is largely confounded with source: COVID+ lives only in
# cohen and hannover.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the images drawn per source, label and age group", "code_prompt_hide": "Hide the images drawn"}
splits = global_splits(data_root, seed=seed)
rows = L.landscape_rows(splits, per_source=per_source, seed=seed)
display(report.styled(rows.groupby(["source", "label", "age_group"]).size().unstack("age_group", fill_value=0)
                      .rename_axis(columns=None)))

# %%
t0 = time.time()
raw, kept = rl.encoder_features(records, rows, data_root=data_root, device=dev)
features = {n: embed.prepare_features(f, n_components) for n, f in raw.items()}
print(f"{len(features)} encoder(s), {len(kept)} images kept by the chain of {len(rows)} drawn, "
      f"{time.time() - t0:.0f} s")
if not features:
    print("no encoder checkpoint yet: nothing to map")

# %% [markdown]
# ## Method
#
# The features are each encoder's penultimate activations; each encoder gets its own self-organising
# map (SOM), read by its purity against a permutation chance, with patient-cluster intervals. How,
# in detail:
#
# :::{dropdown} Features, SOM, purity, chance and intervals
# **Features.** Each run's own chain and normalisation feed its encoder. The features are its
# global-pooled penultimate activations (512 for a ResNet-18), standardised and projected on at
# most `n_components` principal components (`embed.prepare_features`, shared with the features
# chapter).
#
# **SOM.** MiniSom is used with a rectangular grid of about 5√N nodes (Vesanto's rule;
# {glue:text}`som-grid` for {glue:text}`som-images` images). It has a Gaussian neighbourhood of
# initial radius a quarter of the longer side, learning rate 0.5 and MiniSom's asymptotic decay of
# both, PCA-initialised weights and 20 passes over the images in random order, seeded. Each encoder
# gets its own map, with the same settings and seed. The **quantisation error** is the mean distance
# of an image to its node's weights. The **topographic error** is the share of images whose two
# closest nodes are not neighbours. The **U-matrix** is the mean distance between neighbouring
# nodes' weights (dark: a ridge between regions).
#
# **Purity** is the share of images that belong to their node's majority class, which is the
# same as node purity averaged with weights equal to the hits. **Chance:** the target column
# is permuted across the images `n_perm` times, with every image kept in its node, and the
# purity is recomputed. The mean of these purities is the chance level. The 95th percentile
# and a one-sided permutation p are shown beside it. Chance is well above 1/classes, because a
# node with one or two hits is pure or half pure whatever the labels, and a large class fills
# many nodes. **Excess purity** (purity − chance) / (1 − chance) is 0 at chance and 1 when
# every node is pure, so it can be compared across targets. **Intervals** come from a
# patient-cluster bootstrap (patients resampled with all their images; the maps and the nodes
# held fixed). A node's majority share can only rise when a resample duplicates its few hits,
# so the replicates are centred on the estimate before the percentiles are taken (bootstrap
# bias correction). The change from the first encoder is paired: the same resamples are used
# for every encoder.
# :::

# %% tags=["hide-output"] mystnb={"code_prompt_show": "Show the quality of each map", "code_prompt_hide": "Hide the map quality"}
fits = {n: L.fit_som(x, seed=seed) for n, x in features.items()}
table = L.purity_table(fits, kept, n_boot=n_boot, n_perm=n_perm, seed=seed) if fits else pd.DataFrame()
if fits:
    display(report.styled(rl.map_quality(table), digits=3))

# %% [markdown]
# ## The maps
#
# For each encoder there is one row. It holds the U-matrix, then the same map coloured by the
# node's majority source, COVID label and age group. A square's area is proportional to the
# node's hits and its opacity to the node's purity. Below each row are the hits of each source.

# %% tags=["hide-input"]
for name, fit in fits.items():
    fig = rl.plot_som(fit, kept, name)
    plt.show()
    fig = rl.plot_hits(fit, kept, f"{name}: hits per source")
    plt.show()

# %% [markdown]
# ## The t-SNE, coloured three ways
#
# The same images, seed and perplexity are used for each encoder.

# %% tags=["hide-input"]
embeddings = {n: embed.tsne_embedding(x, seed=seed, perplexity=perplexity) for n, x in features.items()}
if embeddings:
    fig = rl.plot_tsne(embeddings, kept)
    plt.show()

# %% [markdown]
# ## Organised by what? Purity with intervals and chance
#
# Each row gives one encoder and one target. The change column is the change in excess purity
# from the first encoder listed (before fine-tuning), paired over patients.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the purities as a table", "code_prompt_hide": "Hide the table"}
if not table.empty:
    display(report.styled(rl.format_purity(table)))

# %% tags=["hide-input"]
if not table.empty:
    print(f"intervals: {table['interval'].iloc[0]}, bias-centred; chance: {n_perm} permutations across images")
    fig = rl.plot_purity(table)
    plt.show()

# %% [markdown]
# **How to read it.** Over all images the label is close to a function of the source
# (COVID+ only in cohen and hannover). A map that is organised by source is therefore also
# partly organised by label, and by age group, since Kermany's children are a source of their
# own. The label can rise above the source only if the map groups cohen's COVID+ with
# hannover's and keeps cohen's COVID− images apart from them. Excess purity by source well
# above excess purity by label says that the encoder mostly encodes where an image came from.
#
# ## Departures from the KTH report
#
# Each bears on how far these maps can stand for the report's:
#
# :::{dropdown} Departures: pre-training, architecture, sources and colours, SOM schedule, numbers
# - **No ImageNet or ChestX-ray14 pre-training.** The "before" encoder is our ResNet-18
#   pre-trained from random weights on the Kermany (ChestXRay) subset at the profile's size,
#   with no ImageNet or ChestX-ray14 weights. The report's "before" map (Fig. 7a) is the input
#   images, or a network not yet trained on X-rays. Here "before" means before COVID
#   fine-tuning, and no map of raw pixels is drawn.
# - **ResNet-18 instead of DenseNet-121 / ResNet-50**, at the `cpu` profile's small images and
#   few epochs.
# - **Our sources instead of ChestX-ray14's 14 pathologies and the COVID-19 set.** We map six
#   public sources and colour by source, COVID label and age group. We do not colour by the
#   14 pathologies.
# - **The SOM schedule:** MiniSom's asymptotic decay of the radius, not the report's
#   σ_0 exp(−t² log(4σ_0)/T²). The report gives no grid size, σ_0, learning rate, epochs or
#   t-SNE perplexity. Ours are stated above and in the parameters.
# - **Numbers, not only pictures:** purity, permutation chance, intervals, and the two errors
#   of the map. The report has none of these.
# :::

# %% [markdown]
# ## Conclusion

# %% tags=["remove-input", "hide-output"] mystnb={"code_prompt_show": "Show the conclusion in words (the takeaway below quotes it) and the encoder from scratch", "code_prompt_hide": "Hide the conclusion"}
roles = records.set_index("role")["encoder"]
som_rows, som_cols = L.som_shape(len(kept))  # the grid of the maps above (Vesanto's rule)
report.glue_value("som-grid", f"{som_rows} × {som_cols}")
report.glue_value("som-images", len(kept))
after_name, before_name, scratch_name = roles["after"], roles["before"], roles["scratch"]
landscape_answer = rl.conclusion(table, after_name, before_name if before_name in fits else None)
print(landscape_answer)
if scratch_name in fits:
    s = table.set_index(["encoder", "target"])
    print(f"For comparison, from scratch ({scratch_name}): excess purity by source "
          f"{s.loc[(scratch_name, 'source'), 'excess']:.2f}, by label {s.loc[(scratch_name, 'label'), 'excess']:.2f}, "
          f"by age group {s.loc[(scratch_name, 'age_group'), 'excess']:.2f}.")

# %% [markdown]
# The book's finding F5 is decided by the rule below (protocol version 2): the change with
# fine-tuning of (excess purity by COVID label minus excess purity by source), seed 0, the
# ChestXRay encoder before and after fine-tuning on CORDA&ChestXRay, paired over one bootstrap of
# patients. It is judged by `python -m covid_lib book judge` from an analysis record of these maps'
# nodes and read here:

# %% tags=["remove-input", "hide-output"] mystnb={"code_prompt_show": "Show the protocol's rule for finding F5 and its verdict", "code_prompt_hide": "Hide the rule"}
from covid_lib.report import judge

judge.show_claim("F5")

# %% [markdown]
# The deciding number is the fine-tuned encoder's **excess purity by COVID label against by
# source**, read together with its paired change from before fine-tuning. The KTH report saw
# its fine-tuned map "better cluster the diseases". That would show here as a label excess
# purity that rises with fine-tuning and approaches or passes the source's. If the source's
# interval stays above the label's, fine-tuning on CORDA&ChestXRay left a map organised by
# where the images came from. In that composition, the source is the label.
#
# ## Takeaway

# %% tags=["hide-input"]
report.show_verdict_answer(
    "After fine-tuning on COVID-19, is the encoder's latent map organised by disease or by where the images came from?",
    judge.protocol_verdict("F5"),
    answer=landscape_answer,
    how_sure="Intervals resample patients; excess purity is measured against a permutation of the same map. One "
    f"composition, a ResNet-18 at the {profile} profile's size, no ImageNet or ChestX-ray14 weights, and our "
    "SOM schedule, not the report's.")

# %% [markdown]
# ## Provenance

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show what produced this chapter", "code_prompt_hide": "Hide the provenance"}
parameters = dict(data_root=data_root, device=device, profile=profile, seed=seed, per_source=per_source,
                  composition=composition, pretrain=pretrain, n_components=n_components, perplexity=perplexity,
                  n_boot=n_boot, n_perm=n_perm)
report.provenance(profile=profile, parameters=parameters, started=started, data_root=data_root)
