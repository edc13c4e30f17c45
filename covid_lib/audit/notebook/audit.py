# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Shortcut audit
#
# The checks of the Hurdles book, run on one chest X-ray dataset: can the label be predicted from
# something other than the disease — the metadata, the file, the image statistics, the lung mask's
# shape — and do patients or images cross the splits? Every score comes with a 95% interval that
# resamples whole patients. A measure is **flagged** when the lower end of its interval lies more
# than 0.05 above chance (a leakage share: when it is above zero); see
# `covid_lib.audit.findings` for the rule and its false-alarm rate. With a model (`--model`), its
# AUC per group, its scores by source within each class and where its saliency falls are measured
# too (section 6).

# %% tags=["parameters"]
manifest = ""  # the CSV manifest (path, label, optional patient_id, source, view, age, sex, date, split)
out = ""  # the output folder: the tables are written there, nothing elsewhere
model = ""  # a two-class model to audit too: run id, record or checkpoint folder, or model.pt; empty: none
device = "auto"  # the U-Net of the chain runs there
profile = "cpu"  # smoke | cpu | paper: images of the pixel probes, their size, bootstrap resamples
seed = 0  # folds, subsampling and bootstrap
data_root = None  # unused: the manifest names the images (kept for the runner's chapter contract)

# %% tags=["hide-input"]
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto in a kernel without ipywidgets
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from covid_lib.audit import figures, get_settings, load_manifest, rank_findings, run_audit, tables, validation_note
from covid_lib.profiles import resolve_device
from covid_lib.report.common import styled

warnings.filterwarnings("ignore", category=FutureWarning)
pd.set_option("display.max_rows", 200, "display.width", 160)
t0 = time.perf_counter()
settings = get_settings(profile)
data = load_manifest(manifest)
results = run_audit(data, settings=settings, seed=seed, device=resolve_device(device))
classifier = None
if model:
    from covid_lib.audit.model import model_audit, resolve_model

    classifier = resolve_model(model, device=resolve_device(device))
    section6 = model_audit(data, classifier, settings=settings, seed=seed, device=resolve_device(device))
    results["measures"] = pd.concat([results["measures"], section6["measures"]], ignore_index=True)
    results.update({f"model_{k}": v for k, v in section6.items() if k != "measures"})
findings = rank_findings(results["measures"])
out_dir = Path(out)
findings.to_csv(out_dir / "findings.csv", index=False)
results["counts"].to_csv(out_dir / "counts.csv", index=False)
results["duplicates"].to_csv(out_dir / "duplicates.csv", index=False)
if classifier is not None:
    results["model_groups"].to_csv(out_dir / "model_groups.csv", index=False)
    results["model_scores"].to_csv(out_dir / "model_scores.csv", index=False)
display(Markdown(
    f"**{data.path.name}**: {len(data.rows)} readable images of {data.rows['patient_id'].nunique()} patients, "
    f"classes {', '.join(f'{c} ({n})' for c, n in data.rows['label_name'].value_counts().sort_index().items())}; "
    f"{len(data.unreadable)} unreadable; scores "
    + ("fitted on train + val, measured on test." if data.has_test_split
       else "out-of-fold, 5 folds grouped by patient (no test split given).")
    + "".join(f"\n\n*Note*: {n}" for n in data.notes)))

# %% [markdown]
# ## Findings, worst first

# %% tags=["hide-input"]
flagged = findings[findings["flag"]]
display(Markdown("\n".join(f"{i}. {s}" for i, s in enumerate(flagged["sentence"], 1))
                 if len(flagged) else "Nothing flagged: no measure clears chance by the margin."))
figures.forest(findings)
plt.show()

# %% [markdown]
# ## 1. The label and each metadata column
#
# Images per level and class, and how well the column alone (one-hot, the book's linear probe)
# predicts the label.

# %% tags=["hide-input"]
display(tables.measures(findings, ["1 metadata"], ["measure", "metric", tables.ESTIMATE, "flag", "note"]))
figures.counts(results["counts"])
plt.show()
display(styled(results["counts"]))

# %% [markdown]
# ## 2. A metadata-only baseline
#
# The book's baseline (logistic regression on view, age, sex, file format and original size;
# never a pixel), and the same with the study year and missing-value flags, which the book treats
# as label proxies by construction (a missing date or age can name the source).

# %% tags=["hide-input"]
display(tables.measures(findings, ["2 metadata baseline"], ["measure", "metric", tables.ESTIMATE, "flag", "note"]))

# %% [markdown]
# ## 3. Patients and duplicates across splits
#
# Exact duplicates have identical pixels; near duplicates differ by at most 4 of 64 pHash bits.
# In thousands of similar images the pHash also links different X-rays of the same framing (the
# closing note's validation): look at the pairs below before reading a near-duplicate flag as leakage.

# %% tags=["hide-input"]
display(tables.measures(findings, ["3 leakage"], ["measure", tables.ESTIMATE, "flag", "note"]))
display(tables.duplicate_pairs(results["duplicates"], n=30))

# %% [markdown]
# ## 4, 5. Image statistics and the lung mask's shape
#
# A linear probe on a thumbnail and a grey-level histogram, on the raw image and after the
# paper's chain (equalise, U-Net lung mask, blur), predicting the label and the source; and the
# U-Net's lung mask alone predicting the label.

# %% tags=["hide-input"]
display(tables.measures(findings, ["4 image statistics", "5 lung-mask baseline"],
                        ["measure", "target", "metric", tables.ESTIMATE, "chance", "flag", "n_images"]))
if len(results["rejections"]):
    display(Markdown(f"The chain rejected {results['rejections']['image_id'].nunique()} image(s):"))
    display(results["rejections"])
if len(data.unreadable):
    display(Markdown(f"{len(data.unreadable)} image(s) could not be read and were left out:"))
    display(data.unreadable)

# %% [markdown]
# ## 6. The model
#
# With `--model` only: the model's scores on the test split (every image without one), per level
# of each metadata column (AUC with its patient interval, mean score per class), whether its score
# follows the source within a class, and the share of its Grad-CAM map (COVID+ log-odds) inside
# the U-Net lung mask against the lung's share of the image (what an even map would place there).

# %% tags=["hide-input"]
if classifier is None:
    display(Markdown("No model given (`--model`): nothing measured here."))
else:
    scored = results["model_scores"]
    display(Markdown(
        f"Model: {classifier.describe()}; {len(scored)} images of {scored['patient_id'].nunique()} patients scored "
        f"({'the test split' if data.has_test_split else 'every image: no test split given'}), "
        f"{int(scored['share'].notna().sum())} saliency maps measured (Grad-CAM at {results['model_layer']})."
        + "".join(f"\n\n*Note*: {n}" for n in classifier.notes)))
    display(tables.measures(findings, ["6 model"], ["measure", "metric", tables.ESTIMATE, "chance", "flag", "note"]))
    display(results["model_groups"].round(3))
    figures.model_scores(scored)
    plt.show()
    if len(results["model_rejections"]):
        display(Markdown(f"The model's chain rejected {len(results['model_rejections'])} image(s)."))

# %% [markdown]
# ## Closing note

# %% tags=["hide-input"]
display(Markdown(
    f"Profile `{profile}`: at most {settings.max_images} images (whole patients) in the pixel probes at "
    f"{settings.image_size} px, {settings.n_boot} bootstrap resamples; seed {seed}. "
    + (f"The model scored at most {settings.model_images} images, {settings.saliency_images} with a saliency map. "
       if classifier is not None else "")
    + f"Audit computed in {time.perf_counter() - t0:.0f} s. Tables: `findings.csv`, `counts.csv`, `duplicates.csv`"
    + (", `model_groups.csv`, `model_scores.csv`." if classifier is not None else ".")))
display(Markdown(validation_note()))
