"""Every bad input is caught where the data is loaded: a clear DataError naming the file and column,
or an exclusion with its reason, and nothing else lost. Synthetic data roots, built per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from covid_lib.data import DataError, data_version, load_source
from covid_lib.data.integrity import check_files
from covid_lib.data.sources import COMMON_COLUMNS, SOURCES


def _png(path: Path, seed: int, size=(40, 32)) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)).save(path)


def write_source(root: Path, name: str, n: int = 4, *, masks: bool = False, **overrides) -> Path:
    """A valid ``<root>/<name>/`` with ``n`` images (the spec's first allowed label values);
    ``overrides`` maps a column to a list of per-row values."""
    spec = SOURCES[name]
    folder = root / name
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        _png(folder / "images" / f"img{i}.png", seed=i)
        mask = ""
        if masks:
            (folder / "masks").mkdir(exist_ok=True)
            mask = f"masks/img{i}.png"
            Image.fromarray(np.zeros((32, 40), np.uint8)).save(folder / mask)
        row = {c: "" for c in COMMON_COLUMNS}
        row.update(image_id=f"img{i}", path=f"images/img{i}.png", mask_path=mask, patient_id=f"{name}:{i}",
                   source=name, view="PA", width="40", height="32")
        row.update({label: sorted(allowed)[0] for label, allowed in spec.labels.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    for column, values in overrides.items():
        df[column] = values
    df.to_csv(folder / "manifest.csv", index=False)
    return folder


def truncate(path: Path) -> None:
    """Cut a PNG in half: the header still reads, the pixels do not."""
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _reasons(loaded) -> dict[str, str]:
    return dict(zip(loaded.exclusions["image_id"], loaded.exclusions["reason"]))


# --- per-image problems: excluded with their reason, the other images kept ----------------------

def test_truncated_image_is_excluded_though_its_header_reads(tmp_path):
    folder = write_source(tmp_path, "montgomery")
    truncate(folder / "images" / "img1.png")
    with Image.open(folder / "images" / "img1.png") as img:
        assert img.size == (40, 32)  # a header-only check would pass it
    loaded = load_source("montgomery", tmp_path)
    assert loaded.manifest["image_id"].tolist() == ["img0", "img2", "img3"]
    assert _reasons(loaded) == {"img1": _reasons(loaded)["img1"]}
    reason = _reasons(loaded)["img1"]
    assert reason.startswith("unreadable image images/img1.png: OSError") and "truncated" in reason
    with pytest.raises(DataError, match="(?s)1 unusable file.*img1.*truncated"):
        load_source("montgomery", tmp_path, strict=True)


def test_corrupt_image_is_excluded(tmp_path):
    folder = write_source(tmp_path, "nih")
    (folder / "images" / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    loaded = load_source("nih", tmp_path)
    assert loaded.manifest["image_id"].tolist() == ["img0", "img1", "img3"]
    assert _reasons(loaded)["img2"].startswith("unreadable image images/img2.png: ")


def test_truncated_mask_is_excluded(tmp_path):
    folder = write_source(tmp_path, "shenzhen", masks=True)
    truncate(folder / "masks" / "img0.png")
    loaded = load_source("shenzhen", tmp_path)
    assert loaded.manifest["image_id"].tolist() == ["img1", "img2", "img3"]
    assert _reasons(loaded)["img0"].startswith("unreadable mask masks/img0.png: ")


def test_unknown_view_is_excluded_in_every_mode(tmp_path):
    write_source(tmp_path, "hannover", view=["PA", "AP", "XYZ", ""])
    for views in ("all", "frontal"):
        loaded = load_source("hannover", tmp_path, views=views)
        assert loaded.manifest["image_id"].tolist() == ["img0", "img1"]
        assert _reasons(loaded)["img2"].startswith("unknown view 'XYZ' (known: AP, AP Supine, L, PA)")
        assert _reasons(loaded)["img3"].startswith("unknown view ''")
    with pytest.raises(DataError, match="views must be one of"):
        load_source("hannover", tmp_path, views="lateral")


def test_a_file_broken_after_a_cached_check_is_caught(tmp_path):
    folder = write_source(tmp_path, "montgomery")
    assert len(load_source("montgomery", tmp_path).manifest) == 4  # verdicts now cached
    truncate(folder / "images" / "img3.png")  # new size: the cached verdict no longer applies
    loaded = load_source("montgomery", tmp_path)
    assert loaded.manifest["image_id"].tolist() == ["img0", "img1", "img2"]
    assert "truncated" in _reasons(loaded)["img3"]


def test_missing_file_has_no_verdict(tmp_path):
    folder = write_source(tmp_path, "montgomery", n=1)
    assert check_files(folder, ["images/img0.png", "images/none.png"], progress=False)["images/none.png"] is None


# --- structural problems: DataError naming the file and the column -------------------------------

def test_label_out_of_range_names_file_and_column(tmp_path):
    write_source(tmp_path, "cohen", covid=["0", "1", "2", "1"])
    with pytest.raises(DataError, match=r"cohen/manifest\.csv: 1 row\(s\) with 'covid' outside \['0', '1'\].*img2"):
        load_source("cohen", tmp_path)


def test_missing_manifest_column_names_file_and_column(tmp_path):
    folder = write_source(tmp_path, "kermany")
    pd.read_csv(folder / "manifest.csv", dtype=str).drop(columns=["pneumonia"]).to_csv(
        folder / "manifest.csv", index=False)
    with pytest.raises(DataError, match=r"kermany/manifest\.csv: missing column\(s\) \['pneumonia'\]"):
        load_source("kermany", tmp_path)


def test_unparsable_manifest_names_the_file(tmp_path):
    folder = write_source(tmp_path, "nih")
    (folder / "manifest.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match=r"cannot parse .*nih/manifest\.csv"):
        load_source("nih", tmp_path)


# --- the data version ------------------------------------------------------------------------------

def test_data_version_follows_image_content_not_paths_or_mtimes(tmp_path):
    folder = write_source(tmp_path / "a", "montgomery")
    version = data_version(tmp_path / "a")
    assert len(version) == 12 and int(version, 16) >= 0
    # the same data elsewhere (new paths, new modification times) keeps its version
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copyfile)
    assert data_version(tmp_path / "b") == version
    # an image replaced, its manifest untouched: a new version
    _png(folder / "images" / "img2.png", seed=99)
    changed = data_version(tmp_path / "a")
    assert changed != version
    # a removed image: yet another
    (folder / "images" / "img3.png").unlink()
    assert data_version(tmp_path / "a") not in (version, changed)
