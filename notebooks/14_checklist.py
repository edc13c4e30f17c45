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
# # A critical-reading checklist
#
# ```{glue:md} chapter-answer
# :format: myst
# ```
#
# The chapters before this one each take down one hurdle of {cite:t}`tartaglione2020unveiling`.
# This chapter turns them into questions a reader can put to any paper that detects COVID-19 on
# chest X-rays, and puts them to the three papers behind this book: the main paper, the README and
# code of its repository, {cite:t}`benahmed2021deep` and the KTH report
# {cite:p}`panagiotakopoulos2020transfer`. Then it puts them to this book.
#
# Each question has its evidence in the book: the chapter that shows the hurdle, and a number
# computed here, by `covid_lib.report.checklist`, from the data or the run records (the functions
# the chapters themselves call). Where the records are not there yet, the table says "not yet
# measured". The ratings of the papers are judgements from reading. They are kept, with a quote of
# the text each rests on, in `covid_lib.analysis.checklist_ratings`, and are not metrics.

# %% tags=["parameters"]
data_root = None  # None: $COVID_LIB_DATA, else ../shared/data
device = "auto"  # where the lung U-Net runs for probe images the pre-processing cache lacks
profile = "cpu"  # smoke | cpu | paper: whose run records are read (nothing is trained here)
seed = 0  # splits, sampling and bootstrap seed
n_boot = 1000  # bootstrap resamples over patients
results = None  # None: $COVID_LIB_RESULTS, else the repository's results/
images_per_source = 40  # source probe (as in 10_shortcuts): images per source; 0: not computed here
probe_C = 0.01  # inverse L2 strength of the source probe (as in 10_shortcuts)
saliency_csv = "book/audit/saliency_by_seen.csv"  # the table 12_saliency writes at the cpu profile; None: not read

# %% tags=["hide-input"]
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")

import pandas as pd
from IPython.display import Markdown, display

from covid_lib.analysis import checklist as cl
from covid_lib import data
from covid_lib.report import common as report
from covid_lib.report import checklist as rc
from covid_lib.report import depth as rd
from covid_lib.report import records as rr
from covid_lib.grid import COMPOSITION_ORDER, grid_specs
from covid_lib.analysis.metadata_baseline import baseline_scores, table_from_scores
from covid_lib.profiles import get_profile

started = time.time()
settings = get_profile(profile)
pd.set_option("display.max_colwidth", None)
pd.set_option("display.width", 250)
if device == "auto":
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
checklist = cl.Checklist()
measured: dict[str, rc.Measurement] = {}

# %% [markdown]
# ## The questions, and where the book answers them
#
# 1. **Patient-level splits.** {doc}`01_data`, "What splitting by image would have done" and the
#    leakage audit.
# 2. **Both classes from the same sources.** {doc}`03_confounders`, what each composition's labels
#    travel with (and the sources in {doc}`01_data`).
# 3. **A metadata-only baseline.** {doc}`03_confounders`, the classifier that never sees a pixel,
#    also beside every cell of {doc}`05_cross_dataset`.
# 4. **Test-set size and intervals.** {doc}`07_small_test`, how wide a perfect score on 15 images is.
# 5. **Is the source still readable after pre-processing?** {doc}`10_shortcuts`, the
#    source-identification probe (and the t-SNE of {doc}`08_features`).
# 6. **Saliency inside the lungs, measured.** {doc}`12_saliency`.
# 7. **A test on an unseen source.** {doc}`11_unseen`.
# 8. **Cross-dataset testing.** {doc}`05_cross_dataset`, the Table II heatmaps and claim C1.
# 9. **Repeated seeds beside intervals.** {doc}`05_cross_dataset` ("Seeds"), {doc}`06_depth` and
#    {doc}`07_small_test`.
# 10. **A pre-processing ablation.** {doc}`09_ablation`, the chain against none on the same images.
#
# ## The numbers behind each question
#
# Each number is computed below, behind a toggle, and shown in the checklist's last column.
#
# ### From the data
#
# Splitting by image, as the paper's code does, against splitting by patient; the share of each
# composition's images whose source holds one label only; the metadata-only baseline on each
# composition's own test set; and the intervals of a perfect score on the paper's 15 images.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the code and the numbers it prints", "code_prompt_hide": "Hide the code and the numbers"}
splits = data.global_splits(data_root, seed=seed)
cohen = data.load_source("cohen", data_root, views="all").manifest
measured["patient_split"] = rc.patient_split_leakage(cohen, splits)
composed = {name: data.compose(name, data_root, seed=seed) for name in COMPOSITION_ORDER}
measured["one_source_per_class"] = rc.source_label_confounding(composed)
baseline = table_from_scores(baseline_scores(data_root, seed=seed, composed=composed), n_boot=n_boot, seed=seed)
measured["metadata_baseline"] = rc.metadata_baseline_auc(baseline)
measured["test_size"] = rc.perfect_score_interval(10, 5)
for key in ("patient_split", "one_source_per_class", "metadata_baseline", "test_size"):
    print(f"{cl.item(key).short}: {measured[key].text}\n")

# %% [markdown]
# ### The source probe
#
# The probe of {doc}`10_shortcuts`, with its parameters and seed, on the same images: a linear
# model that sees a 32×32 thumbnail and a grey-level histogram of each image after the paper's
# chain and names its source. Chance is one in four.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the code and the numbers it prints", "code_prompt_hide": "Hide the code and the numbers"}
probe_table = None
if images_per_source:
    from covid_lib.analysis import shortcuts as sc

    probe_rows = sc.probe_rows(splits, per_source=images_per_source, seed=seed)
    arrays = sc.chain_arrays(probe_rows, sc.PROBE_STEPS, image_size=settings.resize_size, data_root=data_root,
                             device=device)
    probe_table = sc.source_probe(arrays, n_boot=n_boot, seed=seed, Cs=(probe_C,)).table
measured["source_probe"] = rc.source_probe_accuracy(probe_table)
print(measured["source_probe"].text)

# %% [markdown]
# ### From the run records
#
# Claim C1 from the `table2` grid, the spread over seeds of the headline models (the `seeds`
# grid) and claim C6 from the `ablation` grid, by the functions of {doc}`05_cross_dataset` and
# {doc}`09_ablation`. A record still missing is counted as missing, and a model that did not learn
# is named, never averaged in.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the code and the numbers it prints", "code_prompt_hide": "Hide the code and the numbers"}
version = data.data_version(data_root)
table2 = rr.spec_records(grid_specs("table2", profile, data_root=data_root, data_version=version), results)
seed_runs = rr.spec_records(grid_specs("seeds", profile, data_root=data_root, data_version=version), results)
without = rr.spec_records(grid_specs("ablation", profile, data_root=data_root, data_version=version), results)
print("records, table2:", table2["status"].value_counts().to_dict(), "| seeds:",
      seed_runs["status"].value_counts().to_dict(), "| ablation:", without["status"].value_counts().to_dict())
measured["cross_dataset"] = rc.cross_dataset_gap(table2, n_boot=n_boot)
headline = pd.concat([table2[table2["composition"].isin(seed_runs["composition"])], seed_runs],
                     ignore_index=True).drop_duplicates("run_id")
measured["seeds"] = rc.seed_spread(rr.matrix_long(headline) if len(headline) else None, seeds=settings.seeds)
with_chain = table2.merge(without[["arch", "pretrain", "composition", "seed"]], how="inner")
measured["preprocessing_ablation"] = rc.ablation_verdict(
    rd.ablation_cells(without, with_chain, n_boot=n_boot) if len(without) and len(with_chain) else None)
for key in ("cross_dataset", "seeds", "preprocessing_ablation"):
    print(f"{cl.item(key).short}: {measured[key].text}\n")

# %% [markdown]
# ### From the chapters on unseen sources and saliency
#
# The test on unseen sources ({doc}`11_unseen`) is computed here from its run records; saliency
# inside the lungs ({doc}`12_saliency`) is read from the table that chapter writes
# (`saliency_csv`), since its maps take minutes to compute.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the code and the numbers it prints", "code_prompt_hide": "Hide the code and the numbers"}
from pathlib import Path

from covid_lib.report import unseen as ru

saliency_table = pd.read_csv(saliency_csv) if saliency_csv and Path(saliency_csv).is_file() else None
measured["saliency"] = rc.saliency_inside_lungs(saliency_table if profile != "smoke" else None)
unseen_records = ru.unseen_records(grid_specs("unseen", profile, data_root=data_root, data_version=version), results)
unseen_done = unseen_records[unseen_records["status"].isin(["done", "did not learn"])]
measured["unseen_source"] = rc.unseen_source_gap(
    ru.seen_unseen_table(unseen_records, n_boot=n_boot, seed=seed) if len(unseen_done) else None)
for key in ("saliency", "unseen_source"):
    print(f"{cl.item(key).short}: {measured[key].text}")

# %% [markdown]
# ## The checklist
#
# Each question and what the book measured (or that it has not yet); why each question matters and
# where the book shows it are behind the toggle below:

# %%
display(report.styled(rc.checklist_summary(measured), nowrap=["#"]))
n_missing = sum(not m.measured for m in measured.values())
print(f"{len(measured) - n_missing} of {len(cl.ITEMS)} items measured here; {n_missing} not yet measured")

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show why each question matters and where the book shows it", "code_prompt_hide": "Hide the reasons"}
display(report.styled(rc.checklist_reasons(), nowrap=["#"]))

# %% [markdown]
# ## The papers, item by item
#
# Each paper is rated on each item: **yes** (it does it), **partly**, **no** (the text shows it
# absent or done the other way) or **not reported** (the text does not say). "Their code" is the
# main paper's repository: its README and what its scripts do (they split by image, for example).
# The last column rates this book by the same questions, shortfalls included.

# %%
matrix = rc.ratings_matrix(checklist)
fig = rc.plot_ratings(matrix)
display(fig)
counts = rc.level_counts(checklist)
display(report.styled(counts.rename_axis("paper"), index=False))

# %% [markdown]
# Every rating with the section it rests on, a one-line justification and a short quote of the
# rated text (this book's ratings rest on its chapters, so they carry no quote), item by item:

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show every rating with its justification and quote", "code_prompt_hide": "Hide the ratings"}
for n, it in enumerate(checklist.items, 1):
    display(Markdown(f"**{n}. {it.short}.** {it.question}"))
    display(report.styled(rc.justification_table(it.key, checklist)))

# %% [markdown]
# Where this book falls short, across items:

# %% tags=["hide-input"]
display(Markdown("\n".join(f"- {s}" for s in cl.OUR_SHORTFALLS)))

# %% [markdown]
# ## How to use it
#
# Read a paper's methods with the ten questions beside it and mark each one as the text answers
# it, quoting the sentence. A "not reported" is not a "no", but it leaves the claim resting on
# trust. The items are not of equal weight. A split by image, or a class drawn from a source of
# its own without a test on other sources, can explain a near-perfect score by itself. A missing
# interval says only how far to trust the score. Where a paper answers "yes", look for the number
# that shows it. This book's own ratings point to the chapter, and to the number computed above,
# that a reader can check. Where that number says "not yet measured", the question is still open
# for this book too.

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show what produced this chapter", "code_prompt_hide": "Hide the provenance"}
parameters = dict(data_root=data_root, device=device, profile=profile, seed=seed, n_boot=n_boot, results=results,
                  images_per_source=images_per_source, probe_C=probe_C, saliency_csv=saliency_csv)
report.provenance(profile=profile, parameters=parameters, started=started, data_root=data_root)

# %% [markdown]
# ## Takeaway

# %% tags=["hide-input"]
n_items = len(checklist.items)
paper_counts = {name: ", ".join(f"{int(row[level])} {level}" for level in counts.columns if row[level])
                for name, row in counts.iterrows()}
report.show_answer(
    "Which questions should a reader put to a paper that detects COVID-19 on chest X-rays, and how do these papers "
    "answer them?",
    f"The {n_items} questions above. On them, " + "; ".join(f"{name}: {text}" for name, text in paper_counts.items())
    + ".",
    "Each rating rests on a quoted sentence (this book's on its chapters); \"not reported\" is not \"no\", and "
    "the items are not of equal weight.")
