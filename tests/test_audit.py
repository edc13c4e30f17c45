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


def test_leakage_silent_when_split_by_patient_and_flags_planted_leaks(tmp_path):
    """Section 3 on smooth synthetic images split by patient: nothing flagged, with the hashes
    computed once and reused (``hashes=``) as fresh hashing gives; then a patient moved into two
    splits, an exact copy under the other label and a near copy are each flagged, by their own
    measure only (``scripts/audit_validation.py --sections leakage-null`` measures both on Kermany)."""
    from covid_lib.data.dedup import image_hashes

    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(24):
        coarse = rng.integers(0, 255, (6, 6)).astype(np.uint8)  # smooth: a stable, distinct pHash per image
        Image.fromarray(coarse).resize((48, 48), Image.BILINEAR).save(tmp_path / "img" / f"{i}.png")
        rows.append({"path": f"img/{i}.png", "label": (i // 2) % 2, "patient_id": f"p{i // 2}",
                     "split": ["train", "train", "val", "test"][(i // 2) % 4]})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    m = load_manifest(tmp_path / "m.csv")
    hashes = image_hashes(list(m.rows["image_path"]), progress=False)
    table, pairs = leakage(m, hashes=hashes)
    fresh, _ = leakage(m)
    pd.testing.assert_frame_equal(table, fresh)
    assert len(pairs) == 0 and not is_flagged(table).any()

    def flags(frame: pd.DataFrame) -> dict:
        frame.to_csv(tmp_path / "m.csv", index=False)
        t = leakage(load_manifest(tmp_path / "m.csv"))[0]
        return dict(zip(t["measure"], is_flagged(t)))

    frame = pd.DataFrame(rows)
    frame.loc[0, "split"] = "test"  # patient p0's first image moved to test, its second stays in train
    assert flags(frame) == {"test images whose patient is also in train/val": True,
                            "test images with an exact duplicate in train/val": False,
                            "test images with a near duplicate in train/val": False,
                            "images with a duplicate of another label": False}
    frame = pd.DataFrame(rows + [{"path": "img/0.png", "label": 1, "patient_id": "new", "split": "test"}])
    assert flags(frame) == {"test images whose patient is also in train/val": False,
                            "test images with an exact duplicate in train/val": True,
                            "test images with a near duplicate in train/val": False,
                            "images with a duplicate of another label": True}
    near = np.asarray(Image.open(tmp_path / "img" / "1.png")).copy()
    near[24, 24] = 255 - near[24, 24]  # one pixel changed: not identical, the same pHash
    Image.fromarray(near).save(tmp_path / "img" / "copy.png")
    frame = pd.DataFrame(rows + [{"path": "img/copy.png", "label": 0, "patient_id": "new", "split": "test"}])
    assert flags(frame) == {"test images whose patient is also in train/val": False,
                            "test images with an exact duplicate in train/val": False,
                            "test images with a near duplicate in train/val": True,
                            "images with a duplicate of another label": False}


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
    assert html.count("<summary>parameters</summary>") == 1 and "# Parameters" not in html  # injected cell hidden
    import nbformat

    record = nbformat.read(out / "audit.ipynb", as_version=4).metadata["hurdles"]
    assert record["chapter"] == "audit" and record["profile"] == "smoke" and len(record["data_version"]) == 16


def test_report_html_shows_the_parameters_once():
    """Papermill's injected-parameters cell is left out of the page as the book leaves it out; the
    parameters cell is shown once, folded, with the values the run used."""
    import nbformat

    from covid_lib.audit.html import notebook_html

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Shortcut audit"),
                nbformat.v4.new_code_cell('manifest = ""\nseed = 0', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('# Parameters\nmanifest = "/data/m.csv"\n',
                                          metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["hide-input"]})]
    nb.metadata["papermill"] = {"parameters": {"manifest": "/data/m.csv", "seed": 0}}
    page = notebook_html(nb)
    assert page.count("<summary>parameters</summary>") == 1 and page.count("<details>") == 1
    assert "# Parameters" not in page and "manifest = &#x27;/data/m.csv&#x27;" in page
    assert "x = 1" not in page and "remove-cell" not in nb.cells[2].metadata["tags"]  # the notebook is left as is


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


# ------------------------------------------------------------------------------------ --model (item 6)
from covid_lib.audit import model as audit_model  # noqa: E402

RUN = "covid-CORDA+ChestXRay-resnet18-kermany_full-cpu-s0-9b18846ae0"
#: The cache as the session found it (the autouse fixture points each test at an empty one).
REAL_CACHE = Path(os.environ.get("COVID_LIB_CACHE", Path(__file__).resolve().parents[1] / ".cache"))


def _scored(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Synthetic scored images (two per patient, labels alternate by patient) in the manifest schema."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    t = pd.DataFrame({"image_id": i.astype(str), "patient_id": [f"p{k // 2}" for k in i]})
    t["group_id"] = t["patient_id"]
    t["y"] = (i // 2) % 2
    t["view"] = np.where((i // 4) % 3 == 0, "AP", "PA")
    t["source"] = np.where((i // 2) % 5 == 0, "b", "a")
    for col, value in {"sex": "F", "age": np.nan, "date": np.nan, "orig_width": 100, "orig_height": 100,
                       "orig_format": "PNG", "orig_mode": "L"}.items():
        t[col] = value
    t["score"] = 1 / (1 + np.exp(-(2.0 * t["y"] + rng.normal(0, 0.7, n))))
    return t


def test_model_auc_gap_flags_the_group_at_chance():
    t = _scored()
    ap = (t["view"] == "AP").to_numpy()
    t.loc[ap, "score"] = np.random.default_rng(1).random(ap.sum())  # the model knows nothing on AP
    f = rank_findings(audit_model.group_gaps(t, n_boot=300)).set_index("measure")
    assert f.loc["model AUC, view = AP", "flag"] and not f.loc["model AUC, view = PA", "flag"]
    assert f.loc["model AUC, view = AP", "metric"] == "AUC gap (rest - group)"
    assert f.loc["model AUC, view = AP", "sentence"].startswith("the model is worse on view = AP: AUC gap")
    assert not f.loc["model AUC, source = a", "flag"]  # the same model on both sources


def test_model_auc_gap_against_all_when_the_rest_lacks_a_class():
    t = _scored()
    t = t[(t["source"] == "a") | (t["y"] == 0)].reset_index(drop=True)  # source b: negatives only
    gaps = audit_model.group_gaps(t, n_boot=100).set_index("measure")
    assert gaps.loc["model AUC, source = a", "metric"] == "AUC gap (all - group)"
    assert "model AUC, source = b" not in gaps.index  # one class: no AUC


def test_model_source_within_a_class():
    t = _scored()
    assert audit_model.source_separation(t, ("neg", "pos"), n_boot=100).empty  # equal shares: nothing to learn
    t = t[(t["source"] == "a") | (t["y"] == 0)].reset_index(drop=True)  # b: negatives only, a: both
    honest = audit_model.source_separation(t, ("neg", "pos"), n_boot=300)
    assert list(honest["measure"]) == ["model score within neg: a vs b"]  # positives: one source only
    assert not rank_findings(honest)["flag"][0]
    t.loc[t["source"] == "a", "score"] += 0.3  # the model scores source a higher, whatever the label
    f = rank_findings(audit_model.source_separation(t, ("neg", "pos"), n_boot=300))
    assert f["flag"][0] and f["sentence"][0].startswith("within neg, the model scores a above b at AUC")


def test_model_lung_shortfall():
    t = _scored(60)
    t["mapped"] = True
    t["baseline"] = 0.3
    t["share"] = np.clip(0.1 + np.random.default_rng(2).normal(0, 0.05, 60), 0, 1)
    t.loc[:3, "share"] = np.nan  # maps without mass: counted, not measured
    f = rank_findings(audit_model.lung_shortfall(t, ("neg", "pos"), n_boot=200)).set_index("measure")
    row = f.loc["saliency in the lungs, all images"]
    assert row["flag"] and row["value"] == pytest.approx(0.3 - t["share"].mean()) and row["n_images"] == 56
    assert "4 not measurable" in row["note"]
    t["share"] = 0.5
    assert not rank_findings(audit_model.lung_shortfall(t, ("neg", "pos"), n_boot=100))["flag"].any()


def test_model_positive_class(tmp_path):
    m = load_manifest(_write(tmp_path))
    assert list(audit_model.positive_labels(m)) == list(m.rows["label"])
    names = pd.Series(["COVID-19", "normal", "non-COVID pneumonia"] * 8)
    m = load_manifest(_write(tmp_path, label=names))
    assert list(audit_model.positive_labels(m)) == list((m.rows["label_name"] == "COVID-19").astype(int))
    m = load_manifest(_write(tmp_path, label=["viral", "bacterial"] * 12))
    with pytest.raises(audit_model.ModelError, match="positive"):
        audit_model.positive_labels(m)


def test_model_errors_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COVID_LIB_RESULTS", str(tmp_path / "results"))
    with pytest.raises(audit_model.ModelError, match="no such file or folder, and no run of that id"):
        audit_model.resolve_model("covid-nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(audit_model.ModelError, match="neither model.pt nor a run record"):
        audit_model.resolve_model(str(tmp_path / "empty"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(audit_model.ModelError, match="cannot read .* as a covid_lib checkpoint"):
        audit_model.resolve_model(str(tmp_path / "junk.pt"))
    record = tmp_path / "results" / "covid-x"
    record.mkdir(parents=True)
    (record / "spec.json").write_text('{"run_id": "covid-x"}')
    (record / "metrics.json").write_text("{}")
    with pytest.raises(audit_model.ModelError, match="recorded but its checkpoint is not cached"):
        audit_model.resolve_model("covid-x")
    with pytest.raises(audit_model.ModelError, match="has no cached checkpoint"):
        audit_model.resolve_model(str(record))
    path = _write(tmp_path / "m")
    assert main(["audit", str(path), "--out", str(tmp_path / "out"), "--model", "covid-nope", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --model covid-nope") and "\n" not in err and not (tmp_path / "out").exists()


@pytest.mark.data
def test_model_audit_reproduces_the_records_scores(tmp_path, data_root):
    """A committed CORDA&ChestXRay ResNet-18 on 26 of its own test images: the audit's scores equal
    the record's (same chain, crop, normalisation), and every section-6 measure has an interval."""
    ckpt = REAL_CACHE / "runs" / RUN / "model.pt"
    if not ckpt.is_file():
        pytest.skip(f"checkpoint of {RUN} not cached at {ckpt}")
    from covid_lib.audit import AuditSettings
    from covid_lib.runs import Record

    scores = Record.of(RUN).scores("CORDA&ChestXRay").astype({"image_id": str})
    if scores.empty:
        pytest.skip(f"no record of {RUN}")
    kermany, cohen = scores["source"] == "kermany", scores["source"] == "cohen"
    s = pd.concat([scores[kermany].head(10), scores[cohen & (scores["label"] == 0)].head(10),
                   scores[scores["label"] == 1].head(6)]).reset_index(drop=True)
    frame = pd.DataFrame({"path": [str(data_root / src / "images" / f"{i}.png") for src, i in zip(s["source"], s["image_id"])],
                          "label": s["label"], "patient_id": s["group_id"], "source": s["source"]})
    frame.to_csv(tmp_path / "m.csv", index=False)
    m = load_manifest(tmp_path / "m.csv")
    am = audit_model.resolve_model(str(ckpt))
    assert am.pipeline == "paper" and am.run_id == RUN
    settings = AuditSettings(image_size=64, side=16, bins=16, max_images=26, n_boot=100, model_images=26,
                             saliency_images=6)
    r = audit_model.model_audit(m, am, settings=settings)
    got = r["scores"].assign(record=r["scores"]["image_id"].map(dict(zip(m.rows["image_id"], s["score"]))))
    assert len(got) >= 24
    np.testing.assert_allclose(got["score"], got["record"], atol=1e-5)
    assert (r["scores"]["share"].notna() | r["scores"]["baseline"].notna()).sum() == 6
    measures = r["measures"]
    assert "model score within negative (0): cohen vs kermany" in set(measures["measure"])
    assert measures[["value", "low", "high"]].notna().all().all()
    assert r["groups"].iloc[0]["level"] == "all images" and r["groups"].iloc[0]["n_images"] == len(r["scores"])
    # keep_maps: the maps and masks the shares were measured on (the validation's shift null moves them)
    from covid_lib.analysis.saliency import in_lung_share

    rows = m.rows.head(8).assign(y=audit_model.positive_labels(m)[:8])
    kept = audit_model.score_model(am, rows, rows["y"].to_numpy(), saliency_images=4, keep_maps=True)
    mapped = kept.table["mapped"].to_numpy()
    side = int(am.meta["input_size"])
    assert kept.maps.shape == kept.masks.shape == (int(mapped.sum()), side, side) and mapped.sum() >= 1
    share = kept.table.loc[mapped, "share"].to_numpy(float)
    np.testing.assert_allclose(in_lung_share(kept.maps, kept.masks)[np.isfinite(share)], share[np.isfinite(share)])

def test_validation_note_with_intervals(tmp_path):
    import json

    from covid_lib.audit import validation_note

    v = {"permutations": {"runs": 100, "false_alarms": 9, "measures": 500, "false_alarm_rate_per_measure": 0.018,
                          "false_alarm_rate_per_measure_interval": [0.0095, 0.0338], "audits_with_a_false_alarm": 8,
                          "false_alarm_rate_per_audit_interval": [0.041, 0.150]}}
    (tmp_path / "v.json").write_text(json.dumps(v))
    note = validation_note(tmp_path / "v.json")
    assert "(1.8% per measure, 95% interval 0.9%-3.4%; 8 of 100 audits with at least one, 95% interval 4.1%-15.0%)" in note


def test_validation_note_compositions_and_nulls(tmp_path):
    """The closing note counts the numbers equal to the chapters', names those that differ, and
    gives each null's false alarms with Wilson intervals."""
    import json

    from covid_lib.audit import validation_note

    same = {"audit": [0.9, 0.8, 1.0], "chapter": [0.9, 0.8, 1.0], "equal": True, "max_diff": 0.0}
    delong = {"audit": [0.94, 0.78, 1.0], "chapter": [0.94, 0.67, 0.99], "equal": False, "max_diff": 0.11}
    null = {"runs": 10, "audits_with_a_false_alarm": 1, "false_alarms": 1, "measures": 30}
    v = {"compositions": {"A": {"flagged factors": ["era"], "counts": same, "lung-mask shape -> label": delong},
                          "B": {"flagged factors": [], "counts": {**same, "equal": False}}},
         "metadata_null": {"test split": {**null, "composition": "A"}}, "source_null": null,
         "model_nulls": {"run": "r", "set": {"nulls": {"source within a class, 2 random sources": null,
                                                       "lung shortfall, maps shifted at random": null}}}}
    (tmp_path / "v.json").write_text(json.dumps(v))
    note = validation_note(tmp_path / "v.json")
    assert "1 of the 3 numbers compared equal the chapters'" in note
    assert "unequal: A: lung-mask shape -> label; B: counts" in note and "Flagged factors: A: era; B: none." in note
    assert "(test split): 1 in 30 (3.3%, 0.6%-16.7%; 1 of 10 audits, 1.8%-40.4%)" in note
    assert "the model's saliency lung shortfall (maps shifted at random, 1 nulls pooled): 1 in 30" in note


def test_validation_note_leakage_and_shortfall_checks(tmp_path):
    """The closing note reports the leakage measures under random patient splits (audits flagged,
    the hash's pairs of two patients), the planted leaks found, and the lung shortfall's positive
    check with the audit's maps and input-gradient maps."""
    import json

    from covid_lib.audit import validation_note
    from covid_lib.audit.findings import GRADCAM

    def shortfall(value, low, high, flag):
        return {"measures": [{"measure": "saliency in the lungs, all images", "value": 0, "low": 0, "high": 0,
                              "flag": False},
                             {"measure": "saliency in the lungs, positive (1)", "value": value, "low": low,
                              "high": high, "flag": flag}]}

    v = {"leakage_null": {"K": {"images": 100, "patients": 40, "null": {
            "runs": 20, "audits_with_a_false_alarm": 3,
            "false_alarms_by_measure": {"test images with a near duplicate in train/val -> split": 3}},
            "pairs": {"exact, two patients": 0, "near, two patients": 2},
            "pairs of two patients": [{"correlation": 0.7}, {"correlation": 0.9}],
            "planted": {"patient overlap": {"detected": 5, "planted": 5}}}},
         "shortfall_positive": {"mark detector": {"marked": {"model AUC": {"value": 0.99},
                                                             GRADCAM: shortfall(0.05, 0.03, 0.08, False),
                                                             "input gradient": shortfall(0.15, 0.14, 0.16, True)}}}}
    (tmp_path / "v.json").write_text(json.dumps(v))
    note = validation_note(tmp_path / "v.json")
    assert ("split by patient at random 20 times (labels permuted between patients): 3 of 20 audits flagged (test "
            "images with a near duplicate in train/val 3)") in note
    assert "links 0 exact and 2 near pair(s) of two patients (pixel correlation 0.70-0.90)" in note
    assert "Planted leaks flagged: patient overlap 5/5." in note
    assert ("the same network fine-tuned to detect the mark (AUC 0.99): Grad-CAM 0.05 [0.03, 0.08] not flagged, "
            "input gradient 0.15 [0.14, 0.16] flagged") in note


@pytest.mark.data
def test_cli_audit_with_a_model(tmp_path, data_root):
    """``--model model.pt`` end to end (profile smoke): section 6 in the findings, its tables
    written, the page rendered."""
    ckpt = REAL_CACHE / "runs" / RUN / "model.pt"
    if not ckpt.is_file():
        pytest.skip(f"checkpoint of {RUN} not cached")
    from covid_lib.runs import Record

    s = Record.of(RUN).scores("CORDA&ChestXRay").astype({"image_id": str})
    s = pd.concat([s[s["source"] == "kermany"].head(10), s[(s["source"] == "cohen") & (s["label"] == 0)].head(10),
                   s[s["label"] == 1].head(10)])
    pd.DataFrame({"path": [str(data_root / src / "images" / f"{i}.png") for src, i in zip(s["source"], s["image_id"])],
                  "label": s["label"], "patient_id": s["group_id"], "source": s["source"]}).to_csv(tmp_path / "m.csv",
                                                                                                 index=False)
    out = tmp_path / "out"
    assert main(["audit", str(tmp_path / "m.csv"), "--out", str(out), "--profile", "smoke", "-q", "--device", "cpu",
                 "--model", str(ckpt)]) == 0
    assert {"model_groups.csv", "model_scores.csv", "audit.html"} <= {p.name for p in out.iterdir()}
    findings = pd.read_csv(out / "findings.csv")
    assert (findings["section"] == "6 model").sum() >= 2
    assert "6. The model" in (out / "audit.html").read_text()
