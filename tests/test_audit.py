"""``covid_lib audit`` (issue 20): manifest checks, the measures, the flag rule and a smoke audit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from covid_lib.audit import ManifestError, get_settings, is_flagged, load_manifest, parse_labels, rank_findings
from covid_lib.audit.measures import factor_associations, factor_counts, leakage, metadata_baseline
from covid_lib.cli import main

SMOKE = get_settings("smoke")


def _write(folder: Path, n: int = 24, *, fmt_by_label: bool = False, seed: int = 0, **columns) -> Path:
    """``n`` small grey images and a manifest (two images per patient, labels alternate by patient)."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = (i // 2) % 2
        ext = ("png" if label else "jpg") if fmt_by_label else "png"
        img = rng.integers(0, 255, (40, 40), dtype=np.uint8)
        Image.fromarray(img).save(folder / "img" / f"{i}.{ext}")
        rows.append({"path": f"img/{i}.{ext}", "label": label, "patient_id": f"p{i // 2}",
                     "sex": rng.choice(["F", "M"])})
    frame = pd.DataFrame(rows)
    for name, values in columns.items():
        frame[name] = values
    frame.to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


# ------------------------------------------------------------------------------------ bad manifests
@pytest.mark.parametrize("edit, message", [
    (lambda f: f.drop(columns=["label"]), "lacks the column(s) label"),
    (lambda f: f.drop(columns=["path", "label"]), "lacks the column(s) path, label"),
    (lambda f: f.assign(label=0), "the audit needs at least two classes"),
    (lambda f: f.assign(label=[0, 1, 2] * 8), "labels must be 0/1 or class names"),
    (lambda f: f.assign(label=[0.5, 1] * 12), "labels must be 0/1 or class names"),
    (lambda f: f.assign(label=["1", "viral"] * 12), "labels mix numbers"),
    (lambda f: f.assign(label=[""] + ["a", "b"] * 11 + ["a"]), "have no label"),
    (lambda f: f.assign(split=["train", "tset"] * 12), "unknown split value(s) 'tset'"),
    (lambda f: f.iloc[:0], "has no rows"),
    (lambda f: f.assign(path="missing.png"), "none of the 24 images could be read"),
])
def test_bad_manifest_one_line_error(tmp_path, edit, message):
    path = _write(tmp_path)
    edit(pd.read_csv(path)).to_csv(path, index=False)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_manifest_cli_exit_2_writes_nothing(tmp_path, capsys):
    path = _write(tmp_path)
    pd.read_csv(path).assign(label=1).to_csv(path, index=False)
    assert main(["audit", str(path), "--out", str(tmp_path / "out"), "--profile", "smoke", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "two classes" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
    assert main(["audit", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "out"), "-q"]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_unreadable_images_listed_not_fatal(tmp_path):
    path = _write(tmp_path)
    (tmp_path / "img" / "3.png").write_bytes(b"not an image")
    (tmp_path / "img" / "5.png").unlink()
    m = load_manifest(path)
    assert len(m.rows) == 22
    assert sorted(m.unreadable["path"]) == ["img/3.png", "img/5.png"]
    assert m.unreadable.set_index("path").loc["img/5.png", "reason"] == "file missing"


def test_labels_and_schema(tmp_path):
    codes, classes = parse_labels(pd.Series(["viral", "bacterial", "normal", "viral"]))
    assert classes == ["bacterial", "normal", "viral"] and list(codes) == [2, 0, 1, 2]
    codes, classes = parse_labels(pd.Series(["True", "false", "1"]))
    assert classes == ["0", "1"] and list(codes) == [1, 0, 1]
    m = load_manifest(_write(tmp_path, site=["h1", "h2"] * 12, split=["Train", "test", "val", "test"] * 6))
    assert set(m.rows["source"]) == {"h1", "h2"} and set(m.rows["split"]) == {"train", "val", "test"}
    assert m.has_test_split and m.rows["orig_width"].eq(40).all() and m.rows["orig_format"].eq("PNG").all()
    assert Path(m.rows["image_path"][0]).is_absolute()


def test_no_patient_id_is_noted(tmp_path):
    path = _write(tmp_path)
    pd.read_csv(path).drop(columns=["patient_id"]).to_csv(path, index=False)
    m = load_manifest(path)
    assert m.rows["patient_id"].nunique() == 24 and "own patient" in m.notes[0]


# ------------------------------------------------------------------------------------ the measures
def test_file_format_shortcut_is_flagged_sex_is_not(tmp_path):
    m = load_manifest(_write(tmp_path, n=40, fmt_by_label=True))
    table = factor_associations(m, settings=SMOKE).set_index("measure")
    assert table.loc["file format", "value"] == 1.0 and table.loc["file format", "low"] > 0.9
    flags = is_flagged(table.reset_index()).to_numpy()
    assert flags[list(table.index).index("file format")] and not flags[list(table.index).index("sex")]
    counts = factor_counts(m)
    fmt = counts[counts["factor"] == "file format"].set_index("level")
    assert fmt.loc["JPEG L", "0"] == 20 and fmt.loc["JPEG L", "1"] == 0 and fmt["total"].sum() == 40
    base = metadata_baseline(m, settings=SMOKE).set_index("measure")
    assert base.loc["metadata baseline", "low"] > 0.9


def test_patient_and_duplicate_leakage(tmp_path):
    path = _write(tmp_path, split=["train", "test"] * 12)  # each patient's two images in two splits
    frame = pd.read_csv(path)
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "patient_id": "other", "label": 1, "split": "test"}
    frame.to_csv(path, index=False)  # the same file again: an exact duplicate, other label, across splits
    table, pairs = leakage(load_manifest(path))
    t = table.set_index("measure")
    assert t.loc["test images whose patient is also in train/val", "value"] == pytest.approx(12 / 13)
    assert t.loc["test images with an exact duplicate in train/val", "value"] == pytest.approx(1 / 13)
    assert t.loc["images with a duplicate of another label", "value"] == pytest.approx(2 / 25)
    assert (pairs["kind"] == "exact").sum() == 1
    assert list(is_flagged(table)) == [True, True, False, True]  # no near duplicate: not flagged


def test_flag_rule_and_ranking():
    m = pd.DataFrame({
        "section": ["1", "1", "3", "4"], "measure": ["size", "sex", "leak", "source"],
        "target": ["label", "label", "split", "source"], "metric": ["AUC", "AUC", "share", "balanced accuracy"],
        "value": [0.97, 0.6, 0.0, 0.9], "low": [0.94, 0.54, 0.0, 0.5], "high": [0.99, 0.66, 0.1, 0.95],
        "chance": [0.5, 0.5, 0.0, 0.25], "note": ["", "", "0 pairs", ""]})
    assert list(is_flagged(m)) == [True, False, False, True]  # sex: 0.54 < 0.5 + 0.05
    f = rank_findings(m)
    assert list(f["measure"]) == ["size", "source", "sex", "leak"]  # clearance 0.39 > 0.20
    assert f["sentence"][0] == "the label is predictable from size at AUC 0.97 [0.94, 0.99] (chance 0.50)"


# ------------------------------------------------------------------------------------- smoke audit
@pytest.mark.data
def test_smoke_audit_of_a_small_composition(tmp_path, data_root):
    """Adult COVID+ (Cohen) against pediatric COVID- (Kermany): the audit must flag age and source
    proxies, in one command, writing only under --out."""
    parts = []
    for source, label in (("cohen", 1), ("kermany", 0)):
        m = pd.read_csv(data_root / source / "manifest.csv", dtype=str, keep_default_na=False)
        if source == "cohen":
            m = m[(m["covid"] == "1") & m["view"].isin(["PA", "AP"]) & (m["age"] != "")]
        m = m.drop_duplicates("patient_id").sort_values("image_id").head(12)
        parts.append(pd.DataFrame({"path": [str(data_root / source / p) for p in m["path"]], "label": label,
                                   "patient_id": m["patient_id"], "source": source, "age": m.get("age", "")}))
    manifest = tmp_path / "in" / "manifest.csv"
    manifest.parent.mkdir()
    pd.concat(parts).to_csv(manifest, index=False)
    cache = Path(os.environ["COVID_LIB_CACHE"])
    before = sorted(cache.rglob("*")) if cache.exists() else []
    out = tmp_path / "out"
    assert main(["audit", str(manifest), "--out", str(out), "--profile", "smoke", "-q", "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.ipynb", "counts.csv", "duplicates.csv",
                                                     "findings.csv"]
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["manifest.csv"]
    assert (sorted(cache.rglob("*")) if cache.exists() else []) == before  # no cache written
    findings = pd.read_csv(out / "findings.csv")
    flagged = set(findings.loc[findings["flag"], "measure"])
    assert {"age group", "source"} <= flagged
    assert {"image statistics, raw", "lung-mask shape"} <= set(findings["measure"])
    html = (out / "audit.html").read_text()
    assert "Findings, worst first" in html and "data:image/png" in html
    import nbformat

    record = nbformat.read(out / "audit.ipynb", as_version=4).metadata["hurdles"]
    assert record["chapter"] == "audit" and record["profile"] == "smoke" and len(record["data_version"]) == 16


def test_validation_note(tmp_path):
    import json

    from covid_lib.audit import validation_note

    assert "has not been run" in validation_note(tmp_path / "none.json")
    v = {"permutations": {"runs": 10, "false_alarms": 1, "measures": 80, "false_alarm_rate_per_measure": 1 / 80,
                          "audits_with_a_false_alarm": 1},
         "planted": {"corner": {"flagged": ["image statistics, raw -> label"]}}}
    (tmp_path / "v.json").write_text(json.dumps(v))
    note = validation_note(tmp_path / "v.json")
    assert "1 false alarm(s) in 80 measures (1.2% per measure" in note
    assert "planted corner mark on one class it flagged: image statistics, raw -> label" in note
