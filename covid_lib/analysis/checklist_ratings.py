"""How each paper answers each item of :mod:`covid_lib.analysis.checklist`: judgements from reading.

These are not metrics. Each :class:`~covid_lib.analysis.checklist.Rating` cites the section it rests on
and, for the papers, a short verbatim quote of their text (``/work/shared/papers/``; the code's
ratings quote ``papers/README.md``, which summarises what the repository's code does, and the
code's own README). Tests check that every quote is in the text it is attributed to. Our own
study is rated by what its chapters do, with its shortfalls (:data:`covid_lib.analysis.checklist.OUR_SHORTFALLS`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The levels of a rating.
LEVELS: tuple[str, ...] = ("yes", "partly", "no", "not reported")


@dataclass(frozen=True)
class Rating:
    """One paper's answer to one item: a level of :data:`LEVELS` and a one-line justification.

    Attributes:
        where: the section, table or figure the rating rests on.
        quote: a short verbatim quote of the rated text (empty only where the text says nothing,
            and for this book, whose evidence is its chapters).
        note: the one-line justification.
    """

    paper: str
    item: str
    level: str
    where: str
    note: str
    quote: str = ""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        if not self.note.strip():
            raise ValueError(f"{self.paper}/{self.item}: a rating needs a justification")


R = Rating

_TARTAGLIONE = (
    R("tartaglione2020", "patient_split", "partly", "Sec. III-C, Sec. IV",
      "states the principle; the text never says how patients were split (70/30 of the data), and the code "
      "splits by image",
      "Excluding from the test-set exams taken from patients already present in the training-set is important"),
    R("tartaglione2020", "one_source_per_class", "partly", "Sec. II, Table I",
      "names the hazard; CORDA has both classes from one hospital, but the &ChestXRay and &RSNA compositions "
      "take every borrowed COVID- image from one other dataset",
      "if all the negative examples are sampled from the same dataset, the deep model could learn to recognize "
      "such feature"),
    R("tartaglione2020", "metadata_baseline", "not reported", "Sec. II",
      "no classifier on metadata; the paper notes the public sets carry little metadata",
      "contain little or even no metadata on age, gender, different pathologies"),
    R("tartaglione2020", "test_size", "partly", "Sec. II, Sec. IV, Tables II-IV",
      "warns that small tests give no certainty, yet reports every metric without an interval, Table IV on "
      "15 images",
      "test set sizes are extremely small and they do not provide any statistical certainty on learning"),
    R("tartaglione2020", "source_probe", "partly", "Sec. IV-C, Fig. 3",
      "a t-SNE of the trained encoder's features shows the sources separate, by eye; no measure on the "
      "pre-processed images",
      "CORDA samples, regardless the COVID+ or COVID- label, are clearly separable from ChestXRay data"),
    R("tartaglione2020", "saliency", "not reported", "whole text",
      "no saliency map; lung masking is argued to remove biases outside the lungs (Fig. 2)",
      "Many possible bias sources like all the writings and medical equipment is naturally removed"),
    R("tartaglione2020", "unseen_source", "partly", "Sec. IV-E, Table IV",
      "only the COVID-ChestXRay models (theirs and COVID-Net) are tested on a source they never saw, CORDA; "
      "every Table II test set contains the training sources",
      "both models have been trained using COVID-ChestXRy, and tested on both CODA and COVID-ChestXRy"),
    R("tartaglione2020", "cross_dataset", "yes", "Sec. IV-C, Tables II-III",
      "every model is tested on the test sets of all four compositions",
      "For each and every simulation, performance on different test-sets is evaluated"),
    R("tartaglione2020", "seeds", "not reported", "Sec. IV",
      "one number per cell; no repeated runs or seeds are mentioned",
      ""),
    R("tartaglione2020", "preprocessing_ablation", "partly", "Sec. IV-C",
      "the runs without pre-processing are summarised by one example, tested on CORDA and set against the "
      "chained model on its own test set (a different test set)",
      "We ran the same experiments without that pre-processing and performance on different datasets than the "
      "one used at training time gets even worse"),
)

_CODE = (
    R("code", "patient_split", "no", "papers/README.md",
      "the code splits by image with a stratified train_test_split",
      "It splits by image, not by patient"),
    R("code", "one_source_per_class", "not reported", "papers/README.md",
      "the code reads pre-processed folders; how the compositions were assembled is not in it",
      "it reads pre-processed folders"),
    R("code", "metadata_baseline", "not reported", "papers/README.md",
      "training and benchmark scripts only; no baseline on metadata",
      "it holds training and benchmark scripts only"),
    R("code", "test_size", "no", "papers/README.md",
      "no interval is computed; the DOR has no zero-cell correction, so a perfect score gives an infinite DOR",
      "computes DOR from rates without a zero-cell correction"),
    R("code", "source_probe", "not reported", "code README",
      "the README shows the paper's t-SNE figure; no probe of the source is described",
      "![scatter](res/tsne.webp)"),
    R("code", "saliency", "not reported", "papers/README.md",
      "no saliency code is described",
      "it holds training and benchmark scripts only"),
    R("code", "unseen_source", "not reported", "papers/README.md",
      "nothing in the README or the code summary about testing on an unseen source",
      ""),
    R("code", "cross_dataset", "not reported", "papers/README.md",
      "benchmark scripts exist, but which test sets they score is not described",
      "it holds training and benchmark scripts only"),
    R("code", "seeds", "not reported", "papers/README.md",
      "one fixed split seed; no repeated training seeds are described",
      "stratified, seed 42"),
    R("code", "preprocessing_ablation", "no", "papers/README.md",
      "the chain cannot be re-run or switched off from the code: it is not there",
      "no equalisation, U-Net or mask code"),
)

_BENAHMED = (
    R("benahmed2021", "patient_split", "partly", "Materials and Methods, Datasets",
      "one session per COVID-19 patient, which keeps a patient on one side; for the pneumonia sources the "
      "text does not say",
      "only one session per patient was chosen based on the disease stage"),
    R("benahmed2021", "one_source_per_class", "partly", "Experimental Results, Fig. 4",
      "no source holds both classes (COVID-19 sources against pre-2020 pneumonia sources); data split 2 takes "
      "both classes from one regional health system, the closest they come",
      "These two sources come from the same regional healthcare system (Valencia, Spain)"),
    R("benahmed2021", "metadata_baseline", "not reported", "Introduction",
      "age is discussed as a confounder of other studies; no classifier on metadata",
      "These studies were likely using age-related features"),
    R("benahmed2021", "test_size", "partly", "Experimental Results, Table 3",
      "a test of 79 COVID-19 and 303 pneumonia images, but accuracies and AUCs without intervals",
      "79 Covid-19 (30 from BIMCV Covid-19+ (Spain), 10 from Covid-19-AR (USA) and 39 from V2-COV19-NII "
      "(Germany) source) cases and 303 pneumonia"),
    R("benahmed2021", "source_probe", "not reported", "Experimental Results",
      "the source is inferred from the seen/unseen gap; it is not read from the cropped images directly",
      "the model is relying on confounding information related to the data sources"),
    R("benahmed2021", "saliency", "partly", "Experimental Results, Grad-CAM",
      "Grad-CAM maps were looked at, not measured, and called inconclusive",
      "The results were inconclusive"),
    R("benahmed2021", "unseen_source", "yes", "Experimental Results, Fig. 4",
      "trained on one source per class and tested on unseen sources: AUC 0.38 (split 1) and 0.63 (split 2)",
      "testing data from unseen sources"),
    R("benahmed2021", "cross_dataset", "yes", "Experimental Results, Fig. 4, Table 4",
      "held-out images of the seen sources against images of the unseen ones, for two data splits",
      "randomly held-out subset from the seen sources"),
    R("benahmed2021", "seeds", "not reported", "Experimental Results",
      "one model per setting; no repeated runs or seeds are mentioned",
      ""),
    R("benahmed2021", "preprocessing_ablation", "not reported", "Data Pre-processing",
      "every image is lung-cropped; no model without the crop is reported",
      "automatically segmenting the lung field and cropping the lung area based on a generated mask"),
)

_KTH = (
    R("kth2020", "patient_split", "not reported", "Sec. 5.1, Sec. 5.2",
      "ChestX-ray14 follows its guidelines; how the COVID-19 images were split, by patient or by image, is not "
      "said",
      "the dataset was split into sets according to the included guidelines"),
    R("kth2020", "one_source_per_class", "partly", "Sec. 3.2, Sec. 5.3",
      "the binary task takes both classes from the one COVID-19 collection; the 15-class task takes COVID-19 "
      "from it and the 14 other classes from ChestX-ray14",
      "our data set consisted of 232 COVID-19 images and 63 non-COVID images"),
    R("kth2020", "metadata_baseline", "not reported", "Sec. 6",
      "age and sex are proposed as future input features, not as a baseline",
      "exploit further features provided by many of the medical data sets (e.g. age and gender)"),
    R("kth2020", "test_size", "no", "Sec. 5.2, Table 2",
      "the COVID-19 AUC is given without the test set's size or an interval",
      "our model was able to reach a ROC score of 0.88 on the test set"),
    R("kth2020", "source_probe", "partly", "Sec. 5.4, Fig. 7",
      "t-SNE and SOM maps read by eye: before training the representation separated the two datasets",
      "initially the model was focused on differentiating two data sets"),
    R("kth2020", "saliency", "partly", "Sec. 5.1, Sec. 5.2, Fig. 5",
      "CAMs are judged by eye, and the ImageNet model's read as shortcuts; no share inside the lungs is measured",
      "the heatmaps indicate that it may have found shortcuts"),
    R("kth2020", "unseen_source", "not reported", "Sec. 5.2",
      "the COVID-19 model is scored on its own collection only",
      ""),
    R("kth2020", "cross_dataset", "not reported", "Sec. 5.2, Sec. 5.3",
      "no model is scored on a dataset other than the one it was trained on",
      ""),
    R("kth2020", "seeds", "not reported", "Sec. 5",
      "one run per model; the best epoch is picked on validation, no seeds are mentioned",
      "picking the one with the best ROC validation curve"),
    R("kth2020", "preprocessing_ablation", "partly", "Sec. 5.1, Fig. 4",
      "augmentation is compared through ChestX-ray14 loss curves only; nothing on the COVID-19 task",
      "To battle this issue, we applied Color Jitter, Random Rotations"),
)

_OURS = (
    R("ours", "patient_split", "yes", "01_data",
      "every split is by patient, patients sharing an identical image are joined, and the audit runs on the "
      "result; one radiograph published under two Cohen ids is joined by rule (composition v3)"),
    R("ours", "one_source_per_class", "partly", "01_data, 03_confounders",
      "we rebuild the paper's compositions, so &ChestXRay and &RSNA still take COVID- from another source: we "
      "measure the confound instead of avoiding it; our CORDA stand-in has both labels from the Cohen "
      "collection, but its COVID- images are mostly teaching cases dated before 2020"),
    R("ours", "metadata_baseline", "yes", "03_confounders, 05_cross_dataset",
      "a metadata-only classifier, never shown a pixel, is scored with patient-cluster intervals beside every "
      "cell of Table II"),
    R("ours", "test_size", "partly", "05_cross_dataset, 07_small_test",
      "every metric has an interval (patient-cluster bootstrap, Wilson, DeLong), but the test sets are small "
      "(under 150 images, 15 for COVID-ChestXRay), so the intervals are wide"),
    R("ours", "source_probe", "yes", "10_shortcuts",
      "a linear probe names the source at each step of the chain, a lower bound on what a CNN can read; on "
      "few images per source (a busy CPU), so its intervals are wide"),
    R("ours", "saliency", "partly", "12_saliency",
      "CAM, Grad-CAM and HiResCAM; the share of each map inside the lung mask is measured against the lung's "
      "area share with patient-cluster intervals, with and without the chain, on seen and unseen sources; "
      "but on 40 images per source and eight models, so most intervals straddle the baseline"),
    R("ours", "unseen_source", "yes", "01_data, 11_unseen",
      "Hannover is kept out of every composition by location; three source splits train on one source per "
      "class and test on sources never seen, with the interval of the drop, a frozen-encoder variant and an "
      "adaptation curve; an all-COVID+ source alone measures sensitivity only, and the chapter says so"),
    R("ours", "cross_dataset", "yes", "05_cross_dataset",
      "every model scores every composition's test set with intervals; but our CORDA is a stand-in, not the "
      "hospital set, and our test sets are nested"),
    R("ours", "seeds", "partly", "05_cross_dataset, 07_small_test",
      "seeds 0, 1 and 2 for the headline cells only; every other cell is one seed"),
    R("ours", "preprocessing_ablation", "yes", "09_ablation",
      "no pre-processing against the chain, paired DeLong on the same images; but encoders from random "
      "weights, without ImageNet, and only the ablation grid's cells"),
)

RATINGS: tuple[Rating, ...] = _TARTAGLIONE + _CODE + _BENAHMED + _KTH + _OURS
