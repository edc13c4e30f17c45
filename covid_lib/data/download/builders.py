"""Builders of the other five sources, and :data:`BUILDERS` (source name -> builder)."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Callable, Iterable

from covid_lib.data.download.cohen import build_cohen
from covid_lib.data.download.errors import BuildError
from covid_lib.data.download.manifest import (
    ManifestWriter, find_tables, in_mask_folder, is_image, norm_int, build_progress, read_table, safe_id,
    path_tail, walk_files,
)

log = logging.getLogger(__name__)


# hannover ---------------------------------------------------------------------------------------


def build_hannover(raw_dir: str | os.PathLike, out_root: str | os.PathLike, *, progress: bool = True,
                   image_ids: Iterable[str] | None = None) -> Path:
    """Hannover COVID-19 image repository (``data.csv`` + ``png/``) -> ``<out_root>/hannover/``.

    Every image is COVID+ (``covid`` = 1, ``finding`` = COVID-19); ``view`` from ``projection``.
    """
    raw_dir = Path(raw_dir)
    tables = find_tables(raw_dir, "data.csv", {"patient_id", "image_id", "projection"})
    if not tables:
        raise BuildError(f"no Hannover data.csv (patient_id, image_id, projection) under {raw_dir}")
    repo = tables[0].parent
    ref = re.match(r"covid-19-image-repository-(.+)$", repo.name)
    label = "github ml-workgroup/covid-19-image-repository" + (f"@{ref.group(1)}" if ref else "")
    writer = ManifestWriter(out_root, "hannover", image_ids)
    license_ = "CC BY 3.0 (Hannover Medical School, COVID-19 image repository)"
    for row in build_progress(read_table(tables[0]), "hannover", progress):
        image_id = safe_id(row.get("image_id", ""))
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
            admission_offset=norm_int(row.get("admission_offset", "")), license=license_,
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
                  image_ids: Iterable[str] | None = None, name: str = "kermany") -> Path:
    """Kermany pediatric chest X-rays (``chest_xray/{train,test}/{NORMAL,PNEUMONIA}``) -> ``kermany/``.

    Class from the folder (PNEUMONIA split into bacteria / virus by the file name), split from
    the train/test folder (Kaggle's val/ counts as train), patient from the file name,
    ``image_id`` = ``<split>-<file stem>``.
    """
    raw_dir = Path(raw_dir)
    files = [p for p in walk_files(raw_dir) if is_image(p) and p.parent.name.upper() in {"NORMAL", "PNEUMONIA"}]
    if any("chest_xray" in (part.lower() for part in p.relative_to(raw_dir).parts) for p in files):
        files = [p for p in files if "chest_xray" in (part.lower() for part in p.relative_to(raw_dir).parts)]
    if not files:
        raise BuildError(f"no Kermany images (.../train|test/NORMAL|PNEUMONIA/*.jpeg) under {raw_dir}")
    writer = ManifestWriter(out_root, name, image_ids)
    license_ = "CC BY 4.0 (Kermany et al., Mendeley Data)"
    for src in build_progress(files, name, progress):
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
        image_id = safe_id(f"{split}-{src.stem}")
        if image_id in writer.done or not writer.wanted(image_id):
            continue  # Kaggle's copy holds some files twice
        writer.add(
            image_id, src, patient_id=f"kermany:{_kermany_patient(src.stem)}", covid="0",
            kermany_class=klass, pneumonia="0" if klass == "normal" else "1", kermany_split=split,
            view="AP", license=license_,
            origin=f"mendeley rscbjbr9sj:{path_tail(src.relative_to(raw_dir), ['chest_xray'])}",
        )
    return writer.write()


def build_kermany_full(raw_dir: str | os.PathLike, out_root: str | os.PathLike, *, progress: bool = True,
                       image_ids: Iterable[str] | None = None) -> Path:
    """The whole Kermany set -> ``kermany_full/``: :func:`build_kermany` keeping every image (the
    pre-training source at the paper's scale; same patient ids as ``kermany``)."""
    return build_kermany(raw_dir, out_root, progress=progress, image_ids=image_ids, name="kermany_full")

# nih --------------------------------------------------------------------------------------------


def _nih_rsna(raw_dir: Path) -> dict[str, dict[str, str]]:
    """NIH image id -> {rsna_patient_id, rsna_class, rsna_target}, when the RSNA files are there."""
    files = {p.name.lower(): p for p in walk_files(raw_dir)}
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
    for row in read_table(labels) if labels else []:
        pid = row.get("patientid", "")
        target[pid] = max(target.get(pid, "0"), row.get("target", "0") or "0")
    klass: dict[str, str] = {}
    for row in read_table(classes) if classes else []:
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
    tables = find_tables(raw_dir, "data_entry*.csv*", {"image index", "finding labels"})
    if not tables:
        raise BuildError(f"no NIH Data_Entry*.csv (Image Index, Finding Labels) under {raw_dir}")
    labels = {row["image index"]: row for row in read_table(tables[0])}
    images = {p.stem: p for p in walk_files(raw_dir) if re.match(r"^\d{8}_\d{3}\.png$", p.name)}
    if not images:
        raise BuildError(f"no NIH images (NNNNNNNN_NNN.png) under {raw_dir}")
    rsna = _nih_rsna(raw_dir)
    writer = ManifestWriter(out_root, "nih", image_ids)
    unlabelled = 0
    for image_id in build_progress(sorted(images), "nih", progress):
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
            origin=f"nih ChestX-ray14:{path_tail(src.relative_to(raw_dir), ['images'])}",
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
    for path in walk_files(raw_dir):
        if not is_image(path):
            continue
        if in_mask_folder(path, raw_dir):
            stem = re.sub(r"_mask$", "", path.stem, flags=re.IGNORECASE)
            masks.setdefault(stem.upper(), []).append(path)
        elif pattern.match(path.name):
            images.setdefault(path.stem, path)
    if not images:
        raise BuildError(f"no {source} images ({prefix}_NNNN_0|1.png) under {raw_dir}")
    writer = ManifestWriter(out_root, source, image_ids)
    for image_id in build_progress(sorted(images), source, progress):
        if not writer.wanted(image_id):
            continue
        src = images[image_id]
        number, tb = pattern.match(src.name).groups()
        writer.add(
            image_id, src, masks=masks.get(image_id.upper()), patient_id=f"{source}:{number}", tb=tb,
            view="PA", license=license_,
            origin=f"{label}:{path_tail(src.relative_to(raw_dir), ['MontgomerySet', 'ChinaSet_AllFiles', 'CXR_png'])}",
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
    "cohen": build_cohen, "hannover": build_hannover, "kermany": build_kermany, "kermany_full": build_kermany_full,
    "nih": build_nih,
    "montgomery": build_montgomery, "shenzhen": build_shenzhen,
}
