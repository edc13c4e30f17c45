"""What each source is made of: its files, URLs, license and citation, and its manifest columns."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """One file a source needs.

    Attributes:
        key: short name, unique within the source (``"repo"``, ``"masks"``, ``"labels"``).
        filename: name of the downloaded file.
        urls: tried in order (original first, then mirrors); empty when it must be fetched by hand.
        manual: how to get it by hand (shown when no URL works or none exists).
        kind: ``"archive"`` (extracted) or ``"file"`` (copied as is).
        optional: the source can be built without it (a message says what is then missing).
        group: resources of one group are alternatives/parts: when any of them is given with
            ``--archive``, the others are not downloaded (e.g. the 12 NIH image parts).
        requires: key of another resource without which this one is useless.
        accept: glob patterns (case-insensitive) of names of user-supplied files or folders that
            are this resource.
        include: glob patterns of archive members to extract (default: all).
        sha256: expected checksum of the download, when known.
    """

    key: str
    filename: str
    urls: tuple[str, ...] = ()
    manual: str = ""
    kind: str = "archive"
    optional: bool = False
    group: str = ""
    requires: str = ""
    accept: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    sha256: str | None = None

    def matches(self, name: str) -> bool:
        patterns = (self.filename, *self.accept)
        return any(fnmatch.fnmatch(name.lower(), p.lower()) for p in patterns)


@dataclass(frozen=True)
class SourceInfo:
    """What :func:`download_source` needs to know about a source, and what the book shows."""

    name: str
    title: str
    url: str
    license: str
    citation: str
    notes: str
    resources: tuple[Resource, ...]

    def resource(self, key: str) -> Resource:
        return next(r for r in self.resources if r.key == key)


_NIH_PARTS = (
    "vfk49d74nhbxq3nqjg0900w5nvkorp5c", "i28rlmbvmfjbl8p2n3ril0pptcmcu9d1",
    "f1t00wrtdk94satdfb9olcolqx20z2jp", "0aowwzs5lhjrceb3qp67ahp0rd1l1etg",
    "v5e3goj22zr6h8tzualxfsqlqaygfbsn", "asi7ikud9jwnkrnkj99jnpfkjdes7l6l",
    "jn1b4mw4n6lnh74ovmcjb8y48h8xj07n", "tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j",
    "upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj", "l6nilvfa9cg3s28tqv1qc1olm3gnz54p",
    "hhq8fkdgvcari67vfhs7ppg2w6ni4jze", "ioqwiy20ihqwyr8pf4c24eazhh281pbu",
)
_NIH_BOX = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
_NLM_TB = "https://data.lhncbc.nlm.nih.gov/public/Tuberculosis-Chest-X-ray-Datasets"
_JAEGER = ("S. Jaeger, S. Candemir, S. Antani, Y.-X. J. Wang, P.-X. Lu, G. Thoma. Two public chest "
           "X-ray datasets for computer-aided screening of pulmonary diseases. Quant Imaging Med Surg "
           "4(6):475-477, 2014.")

#: The Kermany archive and citation, shared by ``kermany`` and ``kermany_full`` (one archive, two builds).
_KERMANY_ARCHIVE = Resource(
    "archive", "ChestXRay2017.zip",
    ("https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
     "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded",),
    manual="ChestXRay2017.zip from https://data.mendeley.com/datasets/rscbjbr9sj/2 "
    "('Download All' or the file itself)",
    accept=("ChestXRay2017*", "chest_xray*", "ZhangLabData*", "chest-xray-pneumonia*"),
)
_KERMANY_CITATION = ("D. S. Kermany, M. Goldbaum, W. Cai, et al. Identifying medical diagnoses and treatable "
                     "diseases by image-based deep learning. Cell 172(5):1122-1131, 2018. Data: D. Kermany, "
                     "K. Zhang, M. Goldbaum, Mendeley Data v2, doi:10.17632/rscbjbr9sj.2.")

REGISTRY: dict[str, SourceInfo] = {
    info.name: info
    for info in (
        SourceInfo(
            "cohen", "COVID-19 image data collection (Cohen, Morrison, Dao 2020)",
            "https://github.com/ieee8023/covid-chestxray-dataset",
            "per image (metadata.csv `license` column); V7 lung masks CC BY 4.0",
            "J. P. Cohen, P. Morrison, L. Dao. COVID-19 image data collection. arXiv:2003.11597, 2020. "
            "Lung masks: V7 Labs, COVID-19 X-ray dataset, https://github.com/v7labs/covid-19-xray-dataset.",
            "Repository archive of the master branch (metadata.csv + images/; metadata alone: "
            "https://raw.githubusercontent.com/ieee8023/covid-chestxray-dataset/master/metadata.csv). "
            "X-ray rows only (CT dropped); covid = 'COVID-19' in finding; patient_id = cohen:<patientid>. "
            "master has grown since the paper (early April 2020) and since the working copy "
            "(2020-06-27): to pin a version pass the zip of a commit or a git clone with --archive. "
            "first_seen (date of the commit that added the image) needs the git history: pass a full "
            "`git clone` with --archive, or run fill_first_seen() on the manifest; from a zip it stays "
            "empty. Masks: torchxrayvision's copy of the V7 masks (keyed by file name), else V7's "
            "Darwin JSON polygons.",
            (
                Resource(
                    "repo", "covid-chestxray-dataset-master.zip",
                    ("https://github.com/ieee8023/covid-chestxray-dataset/archive/refs/heads/master.zip",),
                    manual="`git clone https://github.com/ieee8023/covid-chestxray-dataset` (full "
                    "history, for first_seen) or the repository zip from GitHub",
                    accept=("covid-chestxray-dataset*",),
                ),
                Resource(
                    "masks", "semantic_masks_v7labs_lungs.zip",
                    ("https://github.com/mlmed/torchxrayvision/raw/master/torchxrayvision/data/"
                     "semantic_masks_v7labs_lungs.zip",
                     "https://github.com/v7labs/covid-19-xray-dataset/raw/master/annotations/all-images.zip"),
                    manual="semantic_masks_v7labs_lungs.zip from the torchxrayvision repository "
                    "(torchxrayvision/data/) or annotations/all-images.zip from "
                    "https://github.com/v7labs/covid-19-xray-dataset",
                    optional=True, accept=("semantic_masks_v7labs_lungs*", "all-images*"),
                ),
            ),
        ),
        SourceInfo(
            "hannover", "COVID-19 image repository, Hannover Medical School (Winther et al. 2020)",
            "https://github.com/ml-workgroup/covid-19-image-repository", "CC BY 3.0",
            "H. B. Winther, H. Laser, S. Gerbel, et al. COVID-19 image repository. Hannover Medical "
            "School, 2020. https://github.com/ml-workgroup/covid-19-image-repository",
            "data.csv + png/ (downscaled from the Nifti originals by the authors). Every patient is "
            "COVID+ (covid=1); view from `projection`; many intensive-care AP images.",
            (
                Resource(
                    "repo", "covid-19-image-repository-master.zip",
                    ("https://github.com/ml-workgroup/covid-19-image-repository/archive/refs/heads/master.zip",),
                    manual="`git clone https://github.com/ml-workgroup/covid-19-image-repository`",
                    accept=("covid-19-image-repository*",),
                ),
            ),
        ),
        SourceInfo(
            "kermany", "Pediatric pneumonia, Guangzhou (Kermany et al. 2018)",
            "https://data.mendeley.com/datasets/rscbjbr9sj/2", "CC BY 4.0",
            _KERMANY_CITATION,
            "ChestXRay2017.zip (about 1.2 GB, 5,856 images; the working copy holds 960). Class from "
            "the folder (NORMAL / PNEUMONIA, bacteria or virus from the file name), split from the "
            "train/test folder, patient from the file name (personNNN; IM-NNNN for normals). The "
            "Kaggle copy (paultimothymooney/chest-xray-pneumonia) also works; its val/ folder is "
            "counted as train.",
            (
                _KERMANY_ARCHIVE,
            ),
        ),
        SourceInfo(
            "kermany_full", "Pediatric pneumonia, Guangzhou, the whole set (Kermany et al. 2018)",
            "https://data.mendeley.com/datasets/rscbjbr9sj/2", "CC BY 4.0",
            _KERMANY_CITATION,
            "The same archive as kermany (ChestXRay2017.zip, 5,856 images), every image kept: the "
            "pre-training source at the paper's scale (issue 17). Same patient ids as kermany, so the "
            "two copies are split together by patient (covid_lib.data.full_copy). Built here from the "
            "originals (shorter side 256 px, PNG); the working copy under ../shared/data came from a "
            "redistribution squashed to 224x224 JPEG.",
            (
                _KERMANY_ARCHIVE,
            ),
        ),
        SourceInfo(
            "nih", "NIH ChestX-ray14 with RSNA Pneumonia Challenge labels",
            _NIH_BOX, "CC0 (NIH Clinical Center); RSNA labels: Kaggle competition rules",
            "X. Wang, Y. Peng, L. Lu, Z. Lu, M. Bagheri, R. M. Summers. ChestX-ray8: hospital-scale "
            "chest X-ray database and benchmarks. CVPR 2017. G. Shih, C. C. Wu, S. S. Halabi, et al. "
            "Augmenting the National Institutes of Health chest radiograph dataset with expert "
            "annotations of possible pneumonia. Radiology: AI 1(1):e180041, 2019.",
            "112,120 PNGs in 12 tar.gz parts (about 42 GB) from the direct links of NIH's "
            "batch_download_zips.py (the Box folder page itself needs a browser); labels from "
            "Data_Entry_2017_v2020.csv (mirrored in torchxrayvision). Pass only the parts you have "
            "with --archive to skip the others; --ids-from <manifest> rebuilds a subset such as the "
            "working copy's 1000 images. RSNA labels (rsna_*) need Kaggle credentials: pass the "
            "competition zip or its two CSVs with --archive; the NIH<->RSNA id map is RSNA's public "
            "pneumonia-challenge-dataset-mappings_2018.json.",
            (
                *(
                    Resource(
                        f"images_{i:03d}", f"images_{i:03d}.tar.gz",
                        (f"https://nihcc.box.com/shared/static/{code}.gz",),
                        manual=f"images/images_{i:03d}.tar.gz from the Box folder {_NIH_BOX}",
                        group="images",
                        accept=(f"images_{i:03d}*",) + (("images",) if i == 1 else ()),
                    )
                    for i, code in enumerate(_NIH_PARTS, start=1)
                ),
                Resource(
                    "labels", "Data_Entry_2017_v2020.csv.gz",
                    ("https://github.com/mlmed/torchxrayvision/raw/master/torchxrayvision/data/"
                     "Data_Entry_2017_v2020.csv.gz",),
                    manual=f"Data_Entry_2017_v2020.csv from the Box folder {_NIH_BOX}",
                    kind="file", accept=("Data_Entry*",),
                ),
                Resource(
                    "rsna", "rsna-pneumonia-detection-challenge.zip", (),
                    manual="the RSNA Pneumonia Detection Challenge is on Kaggle and needs an account: "
                    "accept the rules at https://www.kaggle.com/c/rsna-pneumonia-detection-challenge, "
                    "put your API token in ~/.kaggle/kaggle.json, run `kaggle competitions download -c "
                    "rsna-pneumonia-detection-challenge` and pass the zip (or stage_2_train_labels.csv "
                    "and stage_2_detailed_class_info.csv) with --archive; without it the rsna_* "
                    "columns stay empty",
                    optional=True, include=("*.csv",),
                    accept=("rsna-pneumonia-detection-challenge*", "stage_2_train_labels*",
                            "stage_2_detailed_class_info*", "rsna*"),
                ),
                Resource(
                    "rsna_mapping", "pneumonia-challenge-dataset-mappings_2018.json",
                    ("https://s3.amazonaws.com/east1.public.rsna.org/AI/2018/"
                     "pneumonia-challenge-dataset-mappings_2018.json",),
                    manual="pneumonia-challenge-dataset-mappings_2018.json (RSNA, public)",
                    kind="file", optional=True, requires="rsna",
                    accept=("pneumonia-challenge-dataset-mappings*",),
                ),
            ),
        ),
        SourceInfo(
            "montgomery", "Montgomery County TB set (Jaeger et al. 2014)",
            f"{_NLM_TB}/Montgomery-County-CXR-Set/MontgomerySet/index.html",
            "public (US National Library of Medicine)", _JAEGER,
            "NLM-MontgomeryCXRSet.zip: 138 PNGs (80 normal, 58 TB; tb from the _0/_1 file-name "
            "suffix) with manual left and right lung masks, merged into one mask. The paper's URL "
            "(openi.nlm.nih.gov) is tried first, then archive.org mirrors; NLM now serves the files "
            "one by one (download CXR_png/ and ManualMask/ into a folder and pass it with --archive). "
            "Originals keep their 4020x4892 aspect; the working copy came from a 512x512 "
            "redistribution, so a rebuild differs in width/height.",
            (
                Resource(
                    "archive", "NLM-MontgomeryCXRSet.zip",
                    ("https://openi.nlm.nih.gov/imgs/collections/NLM-MontgomeryCXRSet.zip",
                     "https://archive.org/download/NLMMontgomeryCXRSet/NLM-MontgomeryCXRSet.zip",
                     "https://archive.org/download/academictorrents_ac786f74878a5775c81d490b23842fd4736bfe33/"
                     "NLM-MontgomeryCXRSet.zip"),
                    manual=f"the files of {_NLM_TB}/Montgomery-County-CXR-Set/MontgomerySet/index.html "
                    "(CXR_png/ and ManualMask/) in one folder",
                    accept=("NLM-MontgomeryCXRSet*", "MontgomerySet*"),
                ),
            ),
        ),
        SourceInfo(
            "shenzhen", "Shenzhen No.3 Hospital TB set (Jaeger et al. 2014; masks Stirenko et al. 2018)",
            f"{_NLM_TB}/Shenzhen-Hospital-CXR-Set/index.html",
            "public (US National Library of Medicine); masks CC BY-NC-SA 4.0",
            _JAEGER + " Masks: S. Stirenko, Y. Kochura, O. Alienin, et al. Chest X-ray analysis of "
            "tuberculosis by deep learning with segmentation and augmentation. IEEE ELNANO 2018.",
            "ChinaSet_AllFiles.zip: 662 PNGs (326 normal, 336 TB; tb from the _0/_1 suffix). The lung "
            "masks (566 images) are on Kaggle (yoctoman/shcxr-lung-mask) and need an account: pass "
            "them with --archive; images without a mask keep an empty mask_path. The paper's URL "
            "(openi.nlm.nih.gov) is tried first, then an archive.org mirror.",
            (
                Resource(
                    "archive", "ChinaSet_AllFiles.zip",
                    ("https://openi.nlm.nih.gov/imgs/collections/ChinaSet_AllFiles.zip",
                     "https://archive.org/download/academictorrents_462728e890bd37c05e9439c885df7afc36209cc8/"
                     "ChinaSet_AllFiles.zip"),
                    manual=f"the files of {_NLM_TB}/Shenzhen-Hospital-CXR-Set/index.html (CXR_png/) "
                    "in one folder",
                    accept=("ChinaSet*",),
                ),
                Resource(
                    "masks", "shcxr-lung-mask.zip", (),
                    manual="the Shenzhen lung masks are on Kaggle and need an account: put your API "
                    "token in ~/.kaggle/kaggle.json, run `kaggle datasets download -d "
                    "yoctoman/shcxr-lung-mask` (https://www.kaggle.com/datasets/yoctoman/shcxr-lung-mask) "
                    "and pass shcxr-lung-mask.zip with --archive",
                    optional=True, accept=("shcxr-lung-mask*", "*mask*"),
                ),
            ),
        ),
    )
}


def _needs_account(info: SourceInfo) -> str:
    manual_only = [r.filename for r in info.resources if not r.urls]
    return ", ".join(manual_only)


def _download_urls(info: SourceInfo) -> list[str]:
    """First URL of each resource, one per group (NIH's 12 image parts show as the first)."""
    urls, groups = [], set()
    for r in info.resources:
        if r.urls and not (r.group and r.group in groups):
            urls.append(r.urls[0] + (f" (+{sum(x.group == r.group for x in info.resources) - 1} parts)"
                                     if r.group else ""))
            groups.add(r.group)
    return urls


#: name -> {title, url, license, citation, notes, downloads, manual_parts}; for the book's table.
#: ``manual_parts``: files that need an account (Kaggle) and must be passed with ``--archive``.
SOURCES_INFO: dict[str, dict[str, object]] = {
    name: {
        "title": info.title,
        "url": info.url,
        "license": info.license,
        "citation": info.citation,
        "notes": info.notes,
        "downloads": _download_urls(info),
        "manual_parts": _needs_account(info),
    }
    for name, info in REGISTRY.items()
}


def sources_table():
    """:data:`SOURCES_INFO` as a DataFrame (one row per source) for the book."""
    import pandas as pd

    rows = [{"source": name, **{k: (", ".join(v) if isinstance(v, list) else v) for k, v in d.items()}}
            for name, d in SOURCES_INFO.items()]
    return pd.DataFrame(rows)


_HEAD = ("image_id", "path", "mask_path", "patient_id", "source")
_TAIL = ("license", "origin", "orig_width", "orig_height", "orig_mode", "orig_format", "width", "height")

#: Column order of each source's manifest, as in the working copy under ``../shared/data``.
MANIFEST_COLUMNS: dict[str, tuple[str, ...]] = {
    "cohen": _HEAD + ("covid", "finding", "view", "sex", "age", "date", "location", "first_seen") + _TAIL,
    "hannover": _HEAD + ("covid", "finding", "view", "sex", "age", "modality", "admission_offset") + _TAIL,
    "kermany": _HEAD + ("covid", "kermany_class", "pneumonia", "kermany_split", "view") + _TAIL,
    "kermany_full": _HEAD + ("covid", "kermany_class", "pneumonia", "kermany_split", "view") + _TAIL,
    "nih": _HEAD + ("covid", "finding", "pneumonia", "view", "sex", "age", "rsna_patient_id",
                    "rsna_class", "rsna_target") + _TAIL,
    "montgomery": _HEAD + ("tb", "view") + _TAIL,
    "shenzhen": _HEAD + ("tb", "view") + _TAIL,
}
