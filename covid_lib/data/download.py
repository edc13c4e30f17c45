"""Fetch the original public sources and rebuild the data layout from them.

For users on a connected machine: ``python -m covid_lib data download SOURCE|all --root PATH``
downloads each source from its original URL (or a listed mirror), extracts it and writes the
layout :mod:`covid_lib.data.sources` reads: ``<root>/<source>/manifest.csv``, ``images/`` and,
where lung masks exist, ``masks/``. Nothing here runs during the tests or the book: they use a
local HTTP server and the working copy of the data.

Layers, each usable on its own:

- :func:`fetch` streams one URL to a file (``.part`` first, resumed with an HTTP ``Range`` when
  the server allows it, restarted cleanly otherwise), checks a SHA-256 when one is given, and
  turns HTTP errors and timeouts into :class:`DownloadError` messages that say what to do.
- :func:`extract` unpacks zip, tar(.gz/.bz2/.xz) and single-file gzip, refusing members that
  would land outside the destination (absolute paths, ``..``, links pointing out).
- :func:`encode_image` / :func:`encode_mask` implement the encoding of the data README: 8-bit
  grayscale (alpha composited on black; 16-bit and other high-bit-depth images scaled by their
  own min/max), Lanczos resize so that the shorter side is 256 px (never upscaled); masks binary
  0/255 at the size of their image (bilinear resize, threshold 127).
- ``build_<source>(raw_dir, out_root)`` turn the extracted original files (searched recursively
  under ``raw_dir``) into ``<out_root>/<source>/`` with the manifest columns of the working copy
  (:data:`MANIFEST_COLUMNS`).
- :func:`download_source` ties them together per source; :data:`SOURCES_INFO` describes every
  source (URL, license, citation, notes) for the book; :func:`add_download_arguments` and
  :func:`run_download` are the CLI hooks.

Sources that cannot be fetched anonymously (Kaggle: RSNA labels, Shenzhen masks; the NIH Box
folder's web page) take a pre-downloaded file or folder with ``archive=`` / ``--archive PATH``;
the error message for a missing part says where to get it.

A rebuilt copy is not byte-identical to the working copy under ``../shared/data``: that copy was
taken from redistributions (Montgomery/Shenzhen at 512x512, Kermany and NIH subsets, Cohen as of
2020-06-27), while this module encodes the originals as they are served today. Use
``--ids-from <manifest.csv>`` to restrict a build to the image ids of a reference manifest.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import gzip
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError
from tqdm import tqdm

log = logging.getLogger(__name__)

#: Shorter side of an encoded image, in pixels (never upscaled).
TARGET_SHORT_SIDE = 256
#: A resized mask pixel is lung when its bilinear value is above this.
MASK_THRESHOLD = 127
#: Folder under the data root that holds downloads and extracted files while a source is built.
RAW_DIRNAME = ".raw"
USER_AGENT = "covid_lib-download/0.1 (+https://github.com; python urllib)"
_CHUNK = 1 << 20
_RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_HIGH_BIT_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


# --------------------------------------------------------------------------------------- errors


class DownloadError(OSError):
    """A download failed; the message names the URL, the reason and what to do."""


class ChecksumError(DownloadError):
    """A downloaded file does not have the expected SHA-256."""


class ManualDownloadRequired(DownloadError):
    """A part of a source cannot be fetched anonymously; the message explains how to get it."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the destination folder."""


class BuildError(ValueError):
    """The extracted files do not look like the expected source (missing table or images)."""


# ------------------------------------------------------------------------------------- registry


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
            "D. S. Kermany, M. Goldbaum, W. Cai, et al. Identifying medical diagnoses and treatable "
            "diseases by image-based deep learning. Cell 172(5):1122-1131, 2018. Data: D. Kermany, "
            "K. Zhang, M. Goldbaum, Mendeley Data v2, doi:10.17632/rscbjbr9sj.2.",
            "ChestXRay2017.zip (about 1.2 GB, 5,856 images; the working copy holds 960). Class from "
            "the folder (NORMAL / PNEUMONIA, bacteria or virus from the file name), split from the "
            "train/test folder, patient from the file name (personNNN; IM-NNNN for normals). The "
            "Kaggle copy (paultimothymooney/chest-xray-pneumonia) also works; its val/ folder is "
            "counted as train.",
            (
                Resource(
                    "archive", "ChestXRay2017.zip",
                    ("https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
                     "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded",),
                    manual="ChestXRay2017.zip from https://data.mendeley.com/datasets/rscbjbr9sj/2 "
                    "('Download All' or the file itself)",
                    accept=("ChestXRay2017*", "chest_xray*", "ZhangLabData*", "chest-xray-pneumonia*"),
                ),
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
    "nih": _HEAD + ("covid", "finding", "pneumonia", "view", "sex", "age", "rsna_patient_id",
                    "rsna_class", "rsna_target") + _TAIL,
    "montgomery": _HEAD + ("tb", "view") + _TAIL,
    "shenzhen": _HEAD + ("tb", "view") + _TAIL,
}


# ---------------------------------------------------------------------------------------- fetch


def _urlopen(request: urllib.request.Request, timeout: float):
    """The one place that opens a URL (tests replace it to forbid anything but localhost)."""
    return urllib.request.urlopen(request, timeout=timeout)


class _Transient(Exception):
    """A failure worth retrying (timeout, dropped connection, 5xx)."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _http_hint(code: int) -> str:
    if code in (401, 403):
        return " (the server wants a login: download the file in a browser and pass it with --archive)"
    if code == 404:
        return " (the file has moved or is gone: see the source's notes for mirrors, or pass a copy with --archive)"
    return ""


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) of a ``Content-Range`` header; None where absent or ``*``."""
    m = re.match(r"bytes\s+(\d+|\*)(?:-\d+)?/(\d+|\*)", value or "")
    if not m:
        return None, None
    first = int(m.group(1)) if m.group(1) != "*" else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return first, total


def _fetch_once(url: str, part: Path, *, timeout: float, progress: bool, reject_html: bool,
                desc: str, allow_resume: bool = True) -> None:
    offset = part.stat().st_size if (allow_resume and part.exists()) else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = _urlopen(request, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            _, total = _content_range(err.headers.get("Content-Range") if err.headers else None)
            if total == offset:
                return  # the .part already holds the whole file
            part.unlink()
            return _fetch_once(url, part, timeout=timeout, progress=progress, reject_html=reject_html,
                               desc=desc, allow_resume=False)
        if err.code in _RETRYABLE_HTTP:
            raise _Transient(f"HTTP {err.code} {err.reason} for {url}") from None
        raise DownloadError(f"HTTP {err.code} {err.reason} for {url}{_http_hint(err.code)}") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise _Transient(f"timed out after {timeout:g} s connecting to {url}") from None
        raise _Transient(f"cannot reach {url}: {err.reason}") from None
    except TimeoutError:
        raise _Transient(f"timed out after {timeout:g} s waiting for {url}") from None
    except (ConnectionError, http.client.HTTPException, OSError) as err:
        raise _Transient(f"connection to {url} failed: {type(err).__name__}: {err}") from None

    with response:
        content_type = response.headers.get("Content-Type", "")
        if reject_html and content_type.lower().startswith("text/html"):
            raise DownloadError(
                f"{url} answered with a web page instead of a file: the link may need a login or a "
                "click-through; download the file in a browser and pass it with --archive")
        start = 0
        if offset and response.status == 206:
            first, _ = _content_range(response.headers.get("Content-Range"))
            if first == offset:
                start = offset
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        mode = "ab" if start else "wb"
        try:
            with open(part, mode) as fh, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                              unit_divisor=1024, desc=desc, disable=not progress,
                                              leave=False) as bar:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    bar.update(len(chunk))
        except TimeoutError:
            raise _Transient(f"timed out after {timeout:g} s reading {url}") from None
        except (ConnectionError, http.client.HTTPException) as err:
            raise _Transient(f"connection to {url} dropped: {type(err).__name__}: {err}") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Transient(f"connection to {url} closed after {size} of {total} bytes")


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
    reject_html: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    The bytes go to ``dest + ".part"`` first and are renamed only when complete (and, if
    ``sha256`` is given, verified). An existing ``.part`` from an earlier attempt at the same URL
    is resumed with an HTTP ``Range`` request; a server that ignores the range restarts the
    file from zero. An existing ``dest`` is returned as is (after a checksum check when given).

    Args:
        url: http(s) URL.
        dest: destination file; its folder is created.
        sha256: expected hex SHA-256; a mismatch deletes the download and raises :class:`ChecksumError`.
        progress: show a tqdm progress bar.
        timeout: seconds to wait for the connection and for each read.
        retries: extra attempts after a timeout, a dropped connection or an HTTP 5xx/429.
        reject_html: treat a ``text/html`` answer as a failure (a login page instead of a file).

    Raises:
        DownloadError: HTTP error (with status and URL), timeout or connection failure after the retries.
        ChecksumError: the completed file does not have ``sha256``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = sha256.lower() if sha256 else None
    if dest.exists():
        if expected is None or file_sha256(dest) == expected:
            return dest
        log.info("%s exists with another checksum; downloading it again", dest)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    marker = dest.with_name(dest.name + ".part.url")
    if part.exists() and (not marker.exists() or marker.read_text().strip() != url):
        part.unlink()  # a .part from another URL cannot be resumed safely
    marker.write_text(url)
    attempt = 0
    while True:
        try:
            _fetch_once(url, part, timeout=timeout, progress=progress, reject_html=reject_html,
                        desc=dest.name)
            break
        except DownloadError:
            if not part.exists():
                marker.unlink(missing_ok=True)
            raise
        except _Transient as err:
            attempt += 1
            if attempt > retries:
                kept = f"; {part.stat().st_size} bytes kept in {part}, run again to resume" if part.exists() else ""
                raise DownloadError(f"{err} (after {attempt} attempt{'s' * (attempt > 1)}){kept}") from None
            wait = min(2 ** attempt, 30)
            log.warning("%s; retrying in %d s", err, wait)
            time.sleep(wait)
    if expected is not None:
        actual = file_sha256(part)
        if actual != expected:
            part.unlink()
            marker.unlink(missing_ok=True)
            raise ChecksumError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}; the download "
                "was deleted (a changed upstream file or a broken transfer; try again or check the source)")
    os.replace(part, dest)
    marker.unlink(missing_ok=True)
    return dest


# -------------------------------------------------------------------------------------- extract


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def is_archive(path: str | os.PathLike) -> bool:
    """Whether :func:`extract` can unpack ``path`` (zip, tar, gzip), judged by content."""
    path = Path(path)
    return path.is_file() and (zipfile.is_zipfile(path) or tarfile.is_tarfile(path) or _is_gzip(path))


def _skip_member(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return any(p == "__MACOSX" for p in parts) or (bool(parts) and parts[-1].startswith("._"))


def _safe_target(name: str, dest: Path, archive: Path) -> Path:
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", clean) or ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: it would be written outside {dest}")
    target = (dest / path).resolve()
    if not target.is_relative_to(dest):
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: it resolves outside {dest}")
    return target


def _wanted(name: str, include: Sequence[str] | None) -> bool:
    if not include:
        return True
    base = PurePosixPath(name.replace("\\", "/")).name
    return any(fnmatch.fnmatch(base.lower(), p.lower()) or fnmatch.fnmatch(name.lower(), p.lower())
               for p in include)


def extract(archive: str | os.PathLike, dest: str | os.PathLike, *,
            include: Sequence[str] | None = None) -> Path:
    """Unpack a zip, tar (plain, gz, bz2, xz) or single-file gzip ``archive`` into ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` components and
    links that point outside ``dest`` raise :class:`UnsafeArchiveError`. macOS ``__MACOSX/`` and
    ``._*`` entries are skipped. ``include`` (glob patterns on the member name or its base name)
    extracts only matching files. Returns ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not _skip_member(m.filename)]
            targets = [(m, _safe_target(m.filename, dest, archive)) for m in members]
            for member, target in targets:
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not _wanted(member.filename, include):
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
        return dest
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            chosen = []
            for member in tf.getmembers():
                if _skip_member(member.name):
                    continue
                target = _safe_target(member.name, dest, archive)
                if member.issym() or member.islnk():
                    link = PurePosixPath(member.linkname.replace("\\", "/"))
                    base = target.parent if member.issym() else dest
                    if link.is_absolute() or not (base / link).resolve().is_relative_to(dest):
                        raise UnsafeArchiveError(
                            f"{archive}: refusing link {member.name!r} -> {member.linkname!r}: it points outside {dest}")
                elif not (member.isfile() or member.isdir()):
                    raise UnsafeArchiveError(f"{archive}: refusing special member {member.name!r} (device or fifo)")
                if member.isdir() or _wanted(member.name, include):
                    chosen.append(member)
            tf.extractall(dest, members=chosen, filter="data")
        return dest
    if _is_gzip(archive):
        name = archive.name[:-3] if archive.name.lower().endswith(".gz") else archive.name + ".out"
        with gzip.open(archive, "rb") as src, open(dest / name, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
        return dest
    raise ValueError(f"{archive}: not a zip, tar or gzip archive")


# ------------------------------------------------------------------------------------- encoding


def target_size(width: int, height: int, short_side: int = TARGET_SHORT_SIDE) -> tuple[int, int]:
    """Size with the shorter side ``short_side`` and the aspect kept; unchanged when already smaller."""
    if min(width, height) <= short_side:
        return width, height
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def to_gray8(img: Image.Image) -> Image.Image:
    """Convert a decoded image to 8-bit grayscale (``L``) as the data README specifies.

    High-bit-depth images (16-bit, 32-bit integer, float) are scaled by their own min/max to
    0..255 (rounded; a constant image becomes 0). Images with transparency are composited on
    black first. Colour images use PIL's ITU-R 601-2 luma.
    """
    mode = img.mode
    if mode in _HIGH_BIT_MODES or mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("L")
    if mode == "L":
        return img.copy()
    if mode in ("1", "P"):
        return img.convert("L")
    return img.convert("RGB").convert("L")


def encode_image(src_path: str | os.PathLike) -> tuple[Image.Image, dict[str, object]]:
    """Decode an original image and encode it as the data layout stores it.

    Returns:
        ``(image, info)``: an 8-bit ``L`` image whose shorter side is 256 px (or the original size
        when smaller: never upscaled), and ``{"orig_width", "orig_height", "orig_mode",
        "orig_format"}`` of the file as decoded. EXIF orientation is not applied (pixels as
        stored), and only the first frame of a multi-frame file is used.

    Raises:
        BuildError: the file is missing or cannot be decoded.
    """
    try:
        with Image.open(src_path) as img:
            img.seek(0)
            img.load()
            width, height = img.size
            info = {"orig_width": width, "orig_height": height, "orig_mode": img.mode,
                    "orig_format": img.format or ""}
            gray = to_gray8(img)
    except (FileNotFoundError, UnidentifiedImageError, OSError, ValueError) as err:
        raise BuildError(f"cannot decode {src_path}: {type(err).__name__}: {err}") from None
    size = target_size(width, height)
    if size != (width, height):
        gray = gray.resize(size, Image.Resampling.LANCZOS)
    return gray, info


def _foreground(img: Image.Image) -> np.ndarray:
    """Boolean lung mask at the mask's own size (0/1, 0/255 and 16-bit masks alike)."""
    if img.mode in _HIGH_BIT_MODES or img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)
    else:
        arr = np.asarray(img.convert("L"), dtype=np.float64)
    top = float(arr.max()) if arr.size else 0.0
    if top <= 1.0:
        return arr > 0
    return arr > (MASK_THRESHOLD if top <= 255 else top / 2)


def encode_mask(src: str | os.PathLike | Image.Image | Sequence, size: tuple[int, int]) -> Image.Image:
    """Encode a lung mask (or the union of several, e.g. left + right lung) at ``size``.

    Each mask is binarised at its own size, the masks are merged, resized bilinearly to ``size``
    (the encoded image's ``(width, height)``) and thresholded at 127: the result is an ``L``
    image holding only 0 and 255.
    """
    sources = list(src) if isinstance(src, (list, tuple)) else [src]
    if not sources:
        raise ValueError("encode_mask needs at least one mask")
    union: np.ndarray | None = None
    for item in sources:
        if isinstance(item, Image.Image):
            fg = _foreground(item)
        else:
            try:
                with Image.open(item) as img:
                    img.load()
                    fg = _foreground(img)
            except (FileNotFoundError, UnidentifiedImageError, OSError) as err:
                raise BuildError(f"cannot decode mask {item}: {type(err).__name__}: {err}") from None
        if union is None:
            union = fg
        else:
            if fg.shape != union.shape:
                fg = np.asarray(Image.fromarray(fg).resize(union.shape[::-1], Image.Resampling.NEAREST))
            union = union | fg
    mask = Image.fromarray(union.astype(np.uint8) * 255, mode="L")
    if mask.size != tuple(size):
        mask = mask.resize(tuple(size), Image.Resampling.BILINEAR)
    return mask.point(lambda v: 255 if v > MASK_THRESHOLD else 0)


# ------------------------------------------------------------------------------------- builders


_SKIP_DIRS = {"__MACOSX", ".git", ".svn", ".hg"}


def _walk(root: Path) -> Iterator[Path]:
    """Every file under ``root`` (following links), sorted, without VCS and macOS metadata."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if not name.startswith("._"):
                yield Path(dirpath) / name


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in _IMAGE_SUFFIXES


def _in_mask_folder(path: Path, root: Path) -> bool:
    return any("mask" in part.lower() for part in path.relative_to(root).parent.parts)


def _tail(path: Path, anchors: Iterable[str]) -> str:
    """The path from its first component named like one of ``anchors`` (else the file name)."""
    parts = path.parts
    wanted = {a.lower() for a in anchors}
    for i in range(len(parts) - 1):
        if parts[i].lower() in wanted:
            return "/".join(parts[i:])
    return path.name


def _safe_id(text: str) -> str:
    return re.sub(r"[\\/\x00]", "_", text).strip()


def _norm_int(value: str) -> str:
    """``'-3.0'`` -> ``'-3'``; other strings unchanged."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value or ""
    return str(int(number)) if number.is_integer() else value


def _read_table(path: Path) -> list[dict[str, str]]:
    """A CSV (optionally .gz) as dicts with stripped, lower-case keys and stripped values."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        return [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k}
                for row in reader]


def _header(path: Path) -> list[str]:
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            return [c.strip().lower() for c in next(csv.reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


class _ManifestWriter:
    """Encodes images (and masks) into ``<out_root>/<source>/`` and writes the manifest."""

    def __init__(self, out_root: str | os.PathLike, source: str, image_ids: Iterable[str] | None = None):
        self.source = source
        self.columns = MANIFEST_COLUMNS[source]
        self.folder = Path(out_root) / source
        (self.folder / "images").mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, object]] = []
        self.done: dict[str, dict[str, object]] = {}
        self.skipped: list[str] = []
        self.image_ids = set(image_ids) if image_ids is not None else None

    def wanted(self, image_id: str) -> bool:
        return self.image_ids is None or image_id in self.image_ids

    def add(self, image_id: str, src: Path, *, masks=None, **fields) -> bool:
        """Encode ``src`` (once per image_id) and its masks; add a manifest row. False if skipped."""
        if image_id not in self.done:
            try:
                img, info = encode_image(src)
            except BuildError as err:
                self.skipped.append(str(err))
                log.warning("%s: skipping %s", self.source, err)
                return False
            img.save(self.folder / "images" / f"{image_id}.png", format="PNG")
            files = {"path": f"images/{image_id}.png", "mask_path": "", **info,
                     "width": img.size[0], "height": img.size[1]}
            if masks:
                try:
                    mask = encode_mask(masks, img.size)
                except BuildError as err:
                    log.warning("%s: no mask for %s: %s", self.source, image_id, err)
                else:
                    (self.folder / "masks").mkdir(exist_ok=True)
                    mask.save(self.folder / "masks" / f"{image_id}.png", format="PNG")
                    files["mask_path"] = f"masks/{image_id}.png"
            self.done[image_id] = files
        row = {column: "" for column in self.columns}
        row.update({k: v for k, v in fields.items() if k in row})
        row.update(self.done[image_id])
        row.update({"image_id": image_id, "source": self.source})
        self.rows.append(row)
        return True

    def write(self) -> Path:
        if not self.rows:
            raise BuildError(f"{self.source}: no image could be built"
                             + (f" ({len(self.skipped)} unreadable)" if self.skipped else "")
                             + (" (none of the requested image ids was found)" if self.image_ids is not None else ""))
        tmp = self.folder / "manifest.csv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(self.columns), lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.folder / "manifest.csv")
        masks = sum(bool(r["mask_path"]) for r in self.rows)
        log.info("%s: %d rows, %d images, %d with masks, %d skipped -> %s", self.source, len(self.rows),
                 len(self.done), masks, len(self.skipped), self.folder)
        return self.folder


def _progress(items, source: str, progress: bool):
    return tqdm(items, desc=f"building {source}", unit="img", disable=not progress, leave=False)


# cohen ------------------------------------------------------------------------------------------


def _find_tables(raw_dir: Path, name_pattern: str, needed: set[str]) -> list[Path]:
    """Tables under ``raw_dir`` named like ``name_pattern`` whose header has ``needed``, shallowest first."""
    hits = [p for p in _walk(raw_dir) if fnmatch.fnmatch(p.name.lower(), name_pattern.lower())
            and needed <= set(_header(p))]
    return sorted(hits, key=lambda p: (len(p.parts), str(p)))


def _is_xray(row: dict[str, str]) -> bool:
    modality = row.get("modality", "").lower().replace("-", "").replace(" ", "")
    if modality:
        return modality.startswith("xray") or modality in {"cr", "dx", "radiograph"}
    return (row.get("view", "").upper() not in {"CT", "AXIAL", "CORONAL"}
            and row.get("folder", "images").lower() != "volumes")


def _darwin_mask(path: Path) -> tuple[str, Callable[[], Image.Image]] | None:
    """(image file name, mask renderer) of a V7 Darwin JSON annotation file, else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "annotations" not in data:
        return None
    image = data.get("image") or {}
    item = data.get("item") or {}
    slot = (item.get("slots") or [{}])[0]
    name = image.get("original_filename") or image.get("filename") or item.get("name")
    width = image.get("width") or slot.get("width")
    height = image.get("height") or slot.get("height")
    if not (name and width and height):
        return None

    def render() -> Image.Image:
        mask = Image.new("L", (int(width), int(height)), 0)
        draw = ImageDraw.Draw(mask)
        for ann in data.get("annotations", []):
            if "lung" not in str(ann.get("name", "")).lower():
                continue
            shape = ann.get("polygon") or ann.get("complex_polygon") or {}
            paths = shape.get("paths") or shape.get("path") or []
            if paths and isinstance(paths[0], dict):
                paths = [paths]
            for points in paths:
                xy = [(float(p["x"]), float(p["y"])) for p in points]
                if len(xy) >= 3:
                    draw.polygon(xy, fill=255)
        return mask

    return str(name), render


def _cohen_masks(raw_dir: Path, repo_dir: Path, masks_dir: Path | None) -> dict[str, object]:
    """Mask per Cohen file name (and stem): PNG masks named after the image, or Darwin JSON."""
    root = Path(masks_dir) if masks_dir else raw_dir
    index: dict[str, object] = {}
    for path in _walk(root):
        if repo_dir == path or repo_dir in path.parents:
            continue  # the repository's own files are not V7 masks
        if path.suffix.lower() == ".json":
            found = _darwin_mask(path)
            if found:
                name, render = found
                index.setdefault(name, render)
                index.setdefault(Path(name).stem, render)
        elif _is_image(path) and (masks_dir or _in_mask_folder(path, root)):
            index.setdefault(path.name, path)
            index.setdefault(path.stem, path)
    return index


def _git_available() -> bool:
    return shutil.which("git") is not None


def git_first_seen(repo_dir: str | os.PathLike, relpath: str) -> str:
    """Date (YYYY-MM-DD) of the oldest commit that added ``relpath`` in a git clone; '' if none.

    Runs ``git log --diff-filter=A --format=%as -- <relpath>``. Needs the full history (a
    shallow clone dates everything to its cut-off commit).
    """
    result = subprocess.run(
        ["git", "-C", str(repo_dir), "log", "--diff-filter=A", "--format=%as", "--", relpath],
        capture_output=True, text=True, check=True)
    dates = result.stdout.split()
    return dates[-1] if dates else ""


def cohen_first_seen(repo_dir: str | os.PathLike, folder: str = "images") -> dict[str, str]:
    """``{file name: first_seen}`` for every file ever added under ``folder`` of a Cohen clone.

    One ``git log --diff-filter=A`` over the folder (the per-file equivalent is
    :func:`git_first_seen`). Raises :class:`BuildError` without git, outside a work tree or on a
    shallow clone (whose dates would all be the cut-off date).
    """
    if not _git_available():
        raise BuildError("git is not installed: first_seen needs `git log` on a clone of the repository")
    repo_dir = str(repo_dir)
    try:
        shallow = subprocess.run(["git", "-C", repo_dir, "rev-parse", "--is-shallow-repository"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError as err:
        raise BuildError(f"{repo_dir} is not a git work tree: {err.stderr.strip()}") from None
    if shallow == "true":
        raise BuildError(f"{repo_dir} is a shallow clone: run `git fetch --unshallow` there first")
    out = subprocess.run(
        ["git", "-C", repo_dir, "-c", "core.quotePath=false", "log", "--diff-filter=A",
         "--format=@%as", "--name-only", "--", f"{folder}/"],
        capture_output=True, text=True, check=True).stdout
    seen: dict[str, str] = {}
    date = ""
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("@"):
            date = line[1:]
        elif line:
            seen[PurePosixPath(line).name] = date  # newest first: the last write is the oldest add
    return seen


def fill_first_seen(manifest: str | os.PathLike, repo_dir: str | os.PathLike) -> int:
    """Fill the ``first_seen`` column of a Cohen manifest from a full git clone; returns rows filled.

    The original file name is taken from the ``origin`` column (``...:images/<file>``), else the
    image id is matched on the file stem.
    """
    manifest = Path(manifest)
    seen = cohen_first_seen(repo_dir)
    by_stem = {Path(name).stem: date for name, date in seen.items()}
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        rows = list(reader)
    if "first_seen" not in columns:
        raise BuildError(f"{manifest} has no first_seen column (not a Cohen manifest?)")
    filled = 0
    for row in rows:
        name = PurePosixPath(row.get("origin", "").rsplit(":", 1)[-1]).name
        date = seen.get(name) or by_stem.get(row["image_id"], "")
        if date:
            row["first_seen"] = date
            filled += 1
    tmp = manifest.with_name(manifest.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, manifest)
    return filled


def build_cohen(raw_dir: str | os.PathLike, out_root: str | os.PathLike, *, progress: bool = True,
                image_ids: Iterable[str] | None = None, masks_dir: str | os.PathLike | None = None) -> Path:
    """Cohen COVID-19 image data collection -> ``<out_root>/cohen/``.

    ``raw_dir`` holds the extracted repository (``metadata.csv`` + ``images/``) and, optionally,
    the V7 lung masks (PNG files named after the images, in a folder whose path says "mask", or
    V7 Darwin JSON files). Only X-ray rows are kept; ``covid`` is 1 when ``finding`` contains
    "COVID-19"; ``patient_id`` is ``cohen:<patientid>``. ``first_seen`` is filled when the
    repository is a full git clone and git is available, else left empty.
    """
    raw_dir = Path(raw_dir)
    tables = _find_tables(raw_dir, "metadata.csv", {"filename", "finding"})
    if not tables:
        raise BuildError(f"no Cohen metadata.csv (with filename and finding columns) under {raw_dir}")
    table = tables[0]
    repo = table.parent
    rows = _read_table(table)
    masks = _cohen_masks(raw_dir, repo, Path(masks_dir) if masks_dir else None)
    ref = re.match(r"covid-chestxray-dataset-(.+)$", repo.name)
    label = "github ieee8023/covid-chestxray-dataset" + (f"@{ref.group(1)}" if ref else "")
    first_seen: dict[str, str] = {}
    if (repo / ".git").exists():
        try:
            first_seen = cohen_first_seen(repo)
        except (BuildError, subprocess.CalledProcessError) as err:
            log.warning("cohen: first_seen left empty: %s", err)
    else:
        log.info("cohen: first_seen left empty (no git history in an archive; see fill_first_seen)")
    writer = _ManifestWriter(out_root, "cohen", image_ids)
    missing = 0
    for row in _progress(rows, "cohen", progress):
        filename = row.get("filename", "")
        if not filename or not _is_xray(row) or Path(filename).suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        image_id = _safe_id(Path(filename).stem)
        if not writer.wanted(image_id):
            continue
        folder = row.get("folder") or "images"
        src = repo / folder / filename
        if not src.is_file():
            src = repo / "images" / filename
        if not src.is_file():
            missing += 1
            continue
        mask = masks.get(filename) or masks.get(Path(filename).stem)
        finding = row.get("finding", "")
        writer.add(
            image_id, src, masks=[mask() if callable(mask) else mask] if mask else None,
            patient_id=f"cohen:{row.get('patientid', '')}",
            covid="1" if "covid-19" in finding.lower() else "0", finding=finding,
            view=row.get("view", ""), sex=row.get("sex", ""), age=row.get("age", ""),
            date=row.get("date", ""), location=row.get("location", ""),
            first_seen=first_seen.get(filename, ""), license=row.get("license", ""),
            origin=f"{label}:{src.relative_to(repo).as_posix()}",
        )
    if missing:
        log.warning("cohen: %d X-ray rows of metadata.csv have no image file; left out", missing)
    return writer.write()


# hannover ---------------------------------------------------------------------------------------


def build_hannover(raw_dir: str | os.PathLike, out_root: str | os.PathLike, *, progress: bool = True,
                   image_ids: Iterable[str] | None = None) -> Path:
    """Hannover COVID-19 image repository (``data.csv`` + ``png/``) -> ``<out_root>/hannover/``.

    Every image is COVID+ (``covid`` = 1, ``finding`` = COVID-19); ``view`` from ``projection``.
    """
    raw_dir = Path(raw_dir)
    tables = _find_tables(raw_dir, "data.csv", {"patient_id", "image_id", "projection"})
    if not tables:
        raise BuildError(f"no Hannover data.csv (patient_id, image_id, projection) under {raw_dir}")
    repo = tables[0].parent
    ref = re.match(r"covid-19-image-repository-(.+)$", repo.name)
    label = "github ml-workgroup/covid-19-image-repository" + (f"@{ref.group(1)}" if ref else "")
    writer = _ManifestWriter(out_root, "hannover", image_ids)
    license_ = "CC BY 3.0 (Hannover Medical School, COVID-19 image repository)"
    for row in _progress(_read_table(tables[0]), "hannover", progress):
        image_id = _safe_id(row.get("image_id", ""))
        if not image_id or not writer.wanted(image_id):
            continue
        src = repo / "png" / f"{image_id}.png"
        if not src.is_file():
            log.warning("hannover: no png/%s.png; left out", image_id)
            continue
        writer.add(
            image_id, src, patient_id=f"hannover:{row.get('patient_id', '')}", covid="1",
            finding="COVID-19", view=row.get("projection", "").upper(), sex=row.get("sex", ""),
            age=row.get("age", ""), modality=row.get("modality", ""),
            admission_offset=_norm_int(row.get("admission_offset", "")), license=license_,
            origin=f"{label}:{src.relative_to(repo).as_posix()}",
        )
    return writer.write()


# kermany ----------------------------------------------------------------------------------------


def _kermany_patient(stem: str) -> str:
    m = re.match(r"(person\d+)_", stem, re.IGNORECASE)
    if m:
        return m.group(1)
    m = re.match(r"^(.*)-\d+$", stem)
    return m.group(1) if m else stem


def build_kermany(raw_dir: str | os.PathLike, out_root: str | os.PathLike, *, progress: bool = True,
                  image_ids: Iterable[str] | None = None) -> Path:
    """Kermany pediatric chest X-rays (``chest_xray/{train,test}/{NORMAL,PNEUMONIA}``) -> ``kermany/``.

    Class from the folder (PNEUMONIA split into bacteria / virus by the file name), split from
    the train/test folder (Kaggle's val/ counts as train), patient from the file name,
    ``image_id`` = ``<split>-<file stem>``.
    """
    raw_dir = Path(raw_dir)
    files = [p for p in _walk(raw_dir) if _is_image(p) and p.parent.name.upper() in {"NORMAL", "PNEUMONIA"}]
    if any("chest_xray" in (part.lower() for part in p.relative_to(raw_dir).parts) for p in files):
        files = [p for p in files if "chest_xray" in (part.lower() for part in p.relative_to(raw_dir).parts)]
    if not files:
        raise BuildError(f"no Kermany images (.../train|test/NORMAL|PNEUMONIA/*.jpeg) under {raw_dir}")
    writer = _ManifestWriter(out_root, "kermany", image_ids)
    license_ = "CC BY 4.0 (Kermany et al., Mendeley Data)"
    for src in _progress(files, "kermany", progress):
        parts = [p.lower() for p in src.relative_to(raw_dir).parts[:-1]]
        split = "test" if "test" in parts else "train"
        if src.parent.name.upper() == "NORMAL":
            klass = "normal"
        elif "bacteria" in src.name.lower():
            klass = "bacteria"
        elif "virus" in src.name.lower():
            klass = "virus"
        else:
            log.warning("kermany: cannot tell bacteria from virus in %s; left out", src.name)
            continue
        image_id = _safe_id(f"{split}-{src.stem}")
        if image_id in writer.done or not writer.wanted(image_id):
            continue  # Kaggle's copy holds some files twice
        writer.add(
            image_id, src, patient_id=f"kermany:{_kermany_patient(src.stem)}", covid="0",
            kermany_class=klass, pneumonia="0" if klass == "normal" else "1", kermany_split=split,
            view="AP", license=license_,
            origin=f"mendeley rscbjbr9sj:{_tail(src.relative_to(raw_dir), ['chest_xray'])}",
        )
    return writer.write()


# nih --------------------------------------------------------------------------------------------


def _nih_rsna(raw_dir: Path) -> dict[str, dict[str, str]]:
    """NIH image id -> {rsna_patient_id, rsna_class, rsna_target}, when the RSNA files are there."""
    files = {p.name.lower(): p for p in _walk(raw_dir)}
    labels = files.get("stage_2_train_labels.csv")
    classes = files.get("stage_2_detailed_class_info.csv")
    mapping = next((p for n, p in files.items() if n.startswith("pneumonia-challenge-dataset-mappings")
                    and n.endswith(".json")), None)
    if not (labels or classes):
        return {}
    if mapping is None:
        log.warning("nih: RSNA labels found but not pneumonia-challenge-dataset-mappings_2018.json: "
                    "cannot link them to NIH images; rsna_* left empty")
        return {}
    target: dict[str, str] = {}
    for row in _read_table(labels) if labels else []:
        pid = row.get("patientid", "")
        target[pid] = max(target.get(pid, "0"), row.get("target", "0") or "0")
    klass: dict[str, str] = {}
    for row in _read_table(classes) if classes else []:
        klass.setdefault(row.get("patientid", ""), row.get("class", ""))
    out: dict[str, dict[str, str]] = {}
    for entry in json.loads(mapping.read_text(encoding="utf-8")):
        nih_id = Path(str(entry.get("img_id", ""))).stem
        rsna_id = str(entry.get("subset_img_id", ""))
        if nih_id and (rsna_id in target or rsna_id in klass):
            out[nih_id] = {"rsna_patient_id": rsna_id, "rsna_class": klass.get(rsna_id, ""),
                           "rsna_target": target.get(rsna_id, "")}
    return out


def build_nih(raw_dir: str | os.PathLike, out_root: str | os.PathLike, *, progress: bool = True,
              image_ids: Iterable[str] | None = None) -> Path:
    """NIH ChestX-ray14 images present under ``raw_dir`` + ``Data_Entry*.csv(.gz)`` -> ``nih/``.

    ``finding`` = NIH ``Finding Labels``; ``pneumonia`` = 1 when they include Pneumonia;
    ``patient_id`` = ``nih:<Patient ID>``. RSNA columns are filled when
    ``stage_2_train_labels.csv`` / ``stage_2_detailed_class_info.csv`` and RSNA's
    ``pneumonia-challenge-dataset-mappings_2018.json`` are under ``raw_dir``.
    """
    raw_dir = Path(raw_dir)
    tables = _find_tables(raw_dir, "data_entry*.csv*", {"image index", "finding labels"})
    if not tables:
        raise BuildError(f"no NIH Data_Entry*.csv (Image Index, Finding Labels) under {raw_dir}")
    labels = {row["image index"]: row for row in _read_table(tables[0])}
    images = {p.stem: p for p in _walk(raw_dir) if re.match(r"^\d{8}_\d{3}\.png$", p.name)}
    if not images:
        raise BuildError(f"no NIH images (NNNNNNNN_NNN.png) under {raw_dir}")
    rsna = _nih_rsna(raw_dir)
    writer = _ManifestWriter(out_root, "nih", image_ids)
    unlabelled = 0
    for image_id in _progress(sorted(images), "nih", progress):
        if not writer.wanted(image_id):
            continue
        row = labels.get(f"{image_id}.png")
        if row is None:
            unlabelled += 1
            continue
        findings = row.get("finding labels", "")
        patient = row.get("patient id", "")
        age = row.get("patient age", "").rstrip("Yy")
        src = images[image_id]
        writer.add(
            image_id, src, patient_id=f"nih:{int(patient) if patient.isdigit() else patient}", covid="0",
            finding=findings, pneumonia="1" if "Pneumonia" in findings.split("|") else "0",
            view=row.get("view position", ""), sex=row.get("patient gender", ""),
            age=str(int(age)) if age.isdigit() else age, **rsna.get(image_id, {}),
            license="CC0 (NIH Clinical Center ChestX-ray14)",
            origin=f"nih ChestX-ray14:{_tail(src.relative_to(raw_dir), ['images'])}",
        )
    if unlabelled:
        log.warning("nih: %d images are not in %s; left out", unlabelled, tables[0].name)
    return writer.write()


# montgomery, shenzhen ---------------------------------------------------------------------------


def _build_nlm(source: str, prefix: str, license_: str, label: str, raw_dir: Path, out_root,
               progress: bool, image_ids) -> Path:
    pattern = re.compile(rf"^{prefix}_(\d{{4}})_([01])\.png$", re.IGNORECASE)
    images: dict[str, Path] = {}
    masks: dict[str, list[Path]] = {}
    for path in _walk(raw_dir):
        if not _is_image(path):
            continue
        if _in_mask_folder(path, raw_dir):
            stem = re.sub(r"_mask$", "", path.stem, flags=re.IGNORECASE)
            masks.setdefault(stem.upper(), []).append(path)
        elif pattern.match(path.name):
            images.setdefault(path.stem, path)
    if not images:
        raise BuildError(f"no {source} images ({prefix}_NNNN_0|1.png) under {raw_dir}")
    writer = _ManifestWriter(out_root, source, image_ids)
    for image_id in _progress(sorted(images), source, progress):
        if not writer.wanted(image_id):
            continue
        src = images[image_id]
        number, tb = pattern.match(src.name).groups()
        writer.add(
            image_id, src, masks=masks.get(image_id.upper()), patient_id=f"{source}:{number}", tb=tb,
            view="PA", license=license_,
            origin=f"{label}:{_tail(src.relative_to(raw_dir), ['MontgomerySet', 'ChinaSet_AllFiles', 'CXR_png'])}",
        )
    without = sum(1 for r in writer.rows if not r["mask_path"])
    if without:
        log.info("%s: %d of %d images have no lung mask", source, without, len(writer.rows))
    return writer.write()


def build_montgomery(raw_dir: str | os.PathLike, out_root: str | os.PathLike, *, progress: bool = True,
                     image_ids: Iterable[str] | None = None) -> Path:
    """Montgomery County set (``CXR_png/MCUCXR_NNNN_t.png``; left + right masks merged) -> ``montgomery/``.

    ``tb`` from the ``_0``/``_1`` suffix, ``patient_id`` = ``montgomery:NNNN``; masks are every
    same-named file in a folder whose path says "mask" (``ManualMask/leftMask`` + ``rightMask``).
    """
    return _build_nlm("montgomery", "MCUCXR", "public (US National Library of Medicine)",
                      "nlm NLM-MontgomeryCXRSet", Path(raw_dir), out_root, progress, image_ids)


def build_shenzhen(raw_dir: str | os.PathLike, out_root: str | os.PathLike, *, progress: bool = True,
                   image_ids: Iterable[str] | None = None) -> Path:
    """Shenzhen set (``CXR_png/CHNCXR_NNNN_t.png``; masks ``CHNCXR_NNNN_t_mask.png``) -> ``shenzhen/``."""
    return _build_nlm("shenzhen", "CHNCXR",
                      "public (US National Library of Medicine); masks CC BY-NC-SA 4.0 (Stirenko et al. 2018)",
                      "nlm ChinaSet_AllFiles", Path(raw_dir), out_root, progress, image_ids)


BUILDERS: dict[str, Callable[..., Path]] = {
    "cohen": build_cohen, "hannover": build_hannover, "kermany": build_kermany, "nih": build_nih,
    "montgomery": build_montgomery, "shenzhen": build_shenzhen,
}


# ----------------------------------------------------------------------------- download_source


def _as_paths(archive) -> list[Path]:
    if archive is None:
        return []
    if isinstance(archive, (str, os.PathLike)):
        return [Path(archive).expanduser()]
    return [Path(a).expanduser() for a in archive]


def _recognised(info: SourceInfo, path: Path) -> str | None:
    """Key of the resource ``path`` (a file or folder given by the user) is, judged by its name."""
    return next((r.key for r in info.resources if r.matches(path.name)), None)


_DOWNLOAD_SUFFIXES = {".zip", ".gz", ".tgz", ".tar", ".xz", ".bz2", ".csv", ".json"}


def _looks_downloaded(path: Path) -> bool:
    """A file in a user's folder that may be one of the downloads (not a ReadMe or an image)."""
    return path.is_file() and path.suffix.lower() in _DOWNLOAD_SUFFIXES


def _assign_archives(info: SourceInfo, archives: Sequence[Path], *, strict: bool = False) -> dict[str, list[Path]]:
    """Which resource each user-supplied file or folder stands for.

    A folder holding files named like resources gives those files; otherwise a file or folder is
    matched by name (:attr:`Resource.accept`). Anything unrecognised is taken, in order, as the
    first resource not yet given (the main archive first) unless ``strict``.
    """
    assigned: dict[str, list[Path]] = {}
    leftovers: list[Path] = []
    for path in archives:
        if not path.exists():
            raise FileNotFoundError(f"--archive {path}: no such file or folder")
        if path.is_dir():
            inside = [(r.key, child) for child in sorted(path.iterdir()) if _looks_downloaded(child)
                      for r in info.resources if r.matches(child.name)]
            if inside:
                for key, child in inside:
                    assigned.setdefault(key, []).append(child)
                continue
        key = _recognised(info, path)
        if key:
            assigned.setdefault(key, []).append(path)
        elif not strict:
            leftovers.append(path)
    for path in leftovers:
        satisfied = {r.group for r in info.resources if r.group and r.key in assigned}
        target = next((r for r in info.resources if r.key not in assigned and not (r.group and r.group in satisfied)),
                      None)
        if target is None:
            names = ", ".join(r.filename for r in info.resources)
            raise ValueError(f"{info.name}: cannot tell what {path} is; expected one of: {names}")
        log.info("%s: taking %s as %s", info.name, path, target.filename)
        assigned[target.key] = [path]
    return assigned


def _materialise(resource: Resource, path: Path, dest: Path) -> None:
    """Put one obtained file or folder under ``dest`` (extract, copy or link)."""
    dest.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        link = dest / path.name
        try:
            os.symlink(path.resolve(), link, target_is_directory=True)
        except OSError:
            shutil.copytree(path, link)
    elif resource.kind == "archive" and is_archive(path):
        extract(path, dest, include=resource.include or None)
    else:
        shutil.copy2(path, dest / path.name)


def _obtain(info: SourceInfo, resource: Resource, downloads: Path, progress: bool) -> Path | None:
    """Download ``resource`` from its URLs in turn; None (with a message) when optional and impossible."""
    failures = []
    for url in resource.urls:
        log.info("%s: downloading %s from %s", info.name, resource.filename, url)
        try:
            return fetch(url, downloads / resource.filename, sha256=resource.sha256, progress=progress,
                         reject_html=resource.kind == "archive")
        except DownloadError as err:
            failures.append(f"  {url}: {err}")
            log.warning("%s: %s", info.name, err)
    how = f"Get {resource.manual}." if resource.manual else ""
    if resource.optional:
        log.warning("%s: %s not available (optional)%s %s Pass it with --archive PATH to include it.",
                    info.name, resource.filename, ":\n" + "\n".join(failures) if failures else ".", how)
        return None
    if not failures:
        raise ManualDownloadRequired(
            f"{info.name}: {resource.filename} cannot be downloaded automatically. {how} "
            f"Then run again with --archive PATH (archive=PATH).")
    raise DownloadError(f"{info.name}: could not download {resource.filename}:\n" + "\n".join(failures)
                        + f"\n{how} Then run again with --archive PATH (archive=PATH).")


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def download_source(
    name: str,
    root: str | os.PathLike,
    *,
    archive: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    keep_raw: bool = False,
    force: bool = False,
    progress: bool = True,
    image_ids: Iterable[str] | None = None,
    strict_archives: bool = False,
) -> Path:
    """Download (or take from ``archive``), extract and build one source under ``root``.

    Args:
        name: a key of :data:`REGISTRY` (``cohen``, ``hannover``, ``kermany``, ``nih``,
            ``montgomery``, ``shenzhen``).
        root: data root; the source is written to ``<root>/<name>/`` and downloads go to
            ``<root>/.raw/<name>/`` meanwhile.
        archive: pre-downloaded file(s) or folder(s) to use instead of downloading: needed for the
            parts that cannot be fetched anonymously (Kaggle), and useful offline. Matched to the
            source's parts by name (see :data:`REGISTRY`); a git clone of the Cohen repository
            gives ``first_seen``. They are read, never moved or deleted.
        keep_raw: keep ``<root>/.raw/<name>/`` (downloads and extracted files) after the build.
        force: rebuild even when ``<root>/<name>/manifest.csv`` exists (the old folder is replaced
            only once the new one is complete).
        progress: progress bars for downloads and encoding.
        image_ids: build only these image ids (e.g. those of a reference manifest).
        strict_archives: ignore ``archive`` entries this source does not recognise by name
            (used by ``all``) instead of guessing.

    Returns:
        ``<root>/<name>``.

    Raises:
        ManualDownloadRequired: a required part has no anonymous URL and was not given.
        DownloadError: every URL of a required part failed (the message lists them and says how
            to get the file by hand).
        BuildError: the files do not contain what the source needs.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(REGISTRY)}")
    info = REGISTRY[name]
    root = Path(root).expanduser().resolve()
    out = root / name
    if (out / "manifest.csv").is_file() and not force:
        log.info("%s: %s already exists; pass force=True (--force) to rebuild it", name, out / "manifest.csv")
        return out
    if out.exists() and not force and any(out.iterdir()):
        raise FileExistsError(f"{out} exists without manifest.csv; pass force=True (--force) to replace it")
    assigned = _assign_archives(info, _as_paths(archive), strict=strict_archives)
    raw = root / RAW_DIRNAME / name
    downloads, extracted, staging = raw / "downloads", raw / "extracted", raw / "build"

    obtained: dict[str, list[Path]] = {}
    groups_given = {r.group for r in info.resources if r.group and r.key in assigned}
    for resource in info.resources:
        if resource.key in assigned:
            obtained[resource.key] = assigned[resource.key]
        elif resource.group and resource.group in groups_given:
            continue
        elif resource.requires and resource.requires not in obtained:
            continue
        else:
            path = _obtain(info, resource, downloads, progress)
            if path is not None:
                obtained[resource.key] = [path]

    for path in (extracted, staging):
        _remove_tree(path)
    for key, paths in obtained.items():
        for path in paths:
            log.info("%s: unpacking %s", name, path)
            _materialise(info.resource(key), path, extracted / key)

    built = BUILDERS[name](extracted, staging, progress=progress, image_ids=image_ids)
    if out.exists():
        _remove_tree(out)
    shutil.move(str(built), str(out))
    if keep_raw:
        _remove_tree(staging)
    else:
        for path in (downloads, extracted, staging):
            _remove_tree(path)
        for folder in (raw, raw.parent):
            try:
                folder.rmdir()
            except OSError:
                pass
    return out


# ------------------------------------------------------------------------------------------- CLI


def add_download_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``python -m covid_lib data download SOURCE|all --root PATH [--archive PATH]``."""
    parser.description = ("Download the original public sources and build the data layout "
                          "(<root>/<source>/manifest.csv, images/, masks/).")
    parser.add_argument("source", choices=[*REGISTRY, "all"], metavar="SOURCE",
                        help=f"one of {', '.join(REGISTRY)}, or all")
    parser.add_argument("--root", required=True, type=Path, metavar="PATH",
                        help="data root to write <root>/<source>/ into")
    parser.add_argument("--archive", action="append", default=[], type=Path, metavar="PATH",
                        help="a pre-downloaded archive, file or folder to use instead of downloading "
                        "(repeatable); required for parts behind a login (Kaggle: RSNA labels, "
                        "Shenzhen masks)")
    parser.add_argument("--force", action="store_true", help="rebuild sources that already exist")
    parser.add_argument("--keep-raw", action="store_true", help="keep downloads and extracted files in <root>/.raw/")
    parser.add_argument("--ids-from", type=Path, metavar="MANIFEST",
                        help="build only the image ids listed in this manifest.csv (e.g. a reference copy)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=run_download)
    return parser


def _read_ids(manifest: Path) -> set[str]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "image_id" not in (reader.fieldnames or []):
            raise ValueError(f"{manifest}: no image_id column")
        return {row["image_id"] for row in reader}


def run_download(args: argparse.Namespace) -> int:
    """Run the download command; returns the exit status (1 when any source failed)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.setLevel(logging.INFO)
    names = list(REGISTRY) if args.source == "all" else [args.source]
    archives = [Path(a).expanduser() for a in (getattr(args, "archive", None) or [])]
    ids = _read_ids(args.ids_from) if getattr(args, "ids_from", None) else None
    missing = [a for a in archives if not a.exists()]
    if missing:
        print(f"error: --archive: no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    if len(names) > 1:
        unknown = [a for a in archives if not any(_assign_archives(REGISTRY[n], [a], strict=True)
                                                  for n in names)]
        if unknown:
            print(f"error: with 'all', each --archive must be named like a source's file; "
                  f"unrecognised: {', '.join(map(str, unknown))}", file=sys.stderr)
            return 2
    failed = []
    for name in names:
        try:
            out = download_source(name, args.root, archive=archives, keep_raw=args.keep_raw, force=args.force,
                                  progress=getattr(args, "progress", True), image_ids=ids,
                                  strict_archives=len(names) > 1)
        except (DownloadError, BuildError, UnsafeArchiveError, ValueError, FileNotFoundError,
                FileExistsError) as err:
            failed.append(name)
            print(f"error: {name}: {err}", file=sys.stderr)
            continue
        print(f"{name}: {out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


__all__ = [
    "BUILDERS", "MANIFEST_COLUMNS", "REGISTRY", "SOURCES_INFO", "BuildError", "ChecksumError",
    "DownloadError", "ManualDownloadRequired", "Resource", "SourceInfo", "UnsafeArchiveError",
    "add_download_arguments", "build_cohen", "build_hannover", "build_kermany", "build_montgomery",
    "build_nih", "build_shenzhen", "cohen_first_seen", "download_source", "encode_image",
    "encode_mask", "extract", "fetch", "file_sha256", "fill_first_seen", "git_first_seen",
    "is_archive", "run_download", "sources_table", "target_size", "to_gray8",
]
