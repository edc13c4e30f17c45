"""Validate ``covid_lib audit`` (issue 20) on a planted shortcut and on a control without one.

- Control: Kermany bacterial vs viral pneumonia (one hospital, children aged 1-5), out-of-fold by
  patient. The audit is run on the true labels, then on ``--permutations`` label permutations
  (labels shuffled between patients, so a patient keeps one label): every flag on a permuted
  audit is a false alarm. The chain's images are computed once and reused.
- Planted: the same images under permuted labels (no signal: permutation 0 of the control), with
  a corner mark or a gamma shift (:func:`covid_lib.preprocess.plant.apply_mark`) burnt into the raw
  images of one class (written to a temporary folder, never the repository): the audit must flag
  the raw image-statistics probe, and only the mark can make it.
- With ``--model RUN``: the model's AUC-gap measures (section 6) on its own composition's test
  set under ``--model-permutations`` patient-level label permutations (the model's scores
  computed once): with labels that mean nothing, no group's AUC differs from the rest's, so every
  flag is a false alarm.
- The book's compositions, exported as manifests: the audit's metadata baselines must equal the
  chapter's, and on CORDA&ChestXRay it must flag age and source.

Writes a JSON summary (``--out``, default ``bench/audit_validation.json``) and prints it; with
``--update`` the sections measured replace those of the existing file and the others are kept.
The false-alarm rates come with Wilson 95% intervals: per audit (permutations are independent)
and per measure (which treats an audit's correlated measures as independent: indicative only).

    python scripts/audit_validation.py --per-class 120 --permutations 10
    python scripts/audit_validation.py --skip-compositions --marks --permutations 100 --update
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.std import tqdm

from covid_lib.analysis.shortcuts import chain_arrays
from covid_lib.audit import AuditSettings, load_manifest, rank_findings, run_audit
from covid_lib.audit.measures import PROBE_STEPS, probe_rows
from covid_lib.data import read_image
from covid_lib.paths import REPO_ROOT, resolve_data_root
from covid_lib.preprocess.plant import apply_mark
from covid_lib.stats import wilson_interval


def control_manifest(folder: Path, per_class: int, seed: int) -> Path:
    """Kermany bacterial (0) vs viral (1): at most ``per_class`` images per class, whole patients."""
    root = resolve_data_root()
    m = pd.read_csv(root / "kermany" / "manifest.csv", dtype=str, keep_default_na=False)
    m = m[m["kermany_class"].isin(["bacteria", "virus"])]
    parts = []
    for cls, g in m.groupby("kermany_class"):
        patients = g["patient_id"].drop_duplicates().sample(frac=1.0, random_state=seed)
        counts = g.groupby("patient_id").size()[patients]
        keep = set(patients[(counts.cumsum() <= per_class).to_numpy()])
        parts.append(g[g["patient_id"].isin(keep)])
    m = pd.concat(parts)
    out = pd.DataFrame({"path": [str(root / "kermany" / p) for p in m["path"]],
                        "label": (m["kermany_class"] == "virus").astype(int).to_numpy(),
                        "patient_id": m["patient_id"].to_numpy(), "view": m["view"].to_numpy()})
    path = folder / "control.csv"
    out.to_csv(path, index=False)
    return path


def planted_manifest(control, folder: Path, mark: str) -> Path:
    """The control's images with ``mark`` planted on every label-1 image (PNG copies in ``folder``).

    ``control``: an :class:`~covid_lib.audit.AuditManifest`, whose labels may be permuted (a null
    control: then only the mark can make the label predictable)."""
    m = control.rows[["image_path", "label", "patient_id", "view"]].rename(columns={"image_path": "path"})
    (folder / mark).mkdir(exist_ok=True)
    paths = []
    for i, (p, label) in enumerate(tqdm(list(zip(m["path"], m["label"])), desc=f"planting {mark}", leave=False)):
        img = read_image(p)
        if label == 1:
            img = apply_mark(img, mark)
        dest = folder / mark / f"{i}.png"
        Image.fromarray(img).save(dest)
        paths.append(str(dest))
    out = folder / f"planted_{mark}.csv"
    m.assign(path=paths).to_csv(out, index=False)
    return out


def permuted(manifest, seed: int):
    """The manifest with labels shuffled between patients (each patient keeps one label)."""
    rows = manifest.rows.copy()
    per_patient = rows.groupby("patient_id")["label"].first()
    shuffled = pd.Series(np.random.default_rng(seed).permutation(per_patient.to_numpy()), index=per_patient.index)
    rows["label"] = rows["patient_id"].map(shuffled).astype(int)
    rows["label_name"] = rows["label"].map(dict(enumerate(manifest.classes)))
    return type(manifest)(rows, manifest.classes, manifest.unreadable, manifest.given, manifest.path, manifest.notes)


#: The label permutation the marks are planted on (permutation 0 of the control: no flag).
PLANT_PERMUTATION = 1000


def flagged(findings: pd.DataFrame) -> list[str]:
    return [f"{m} -> {t}" for m, t in zip(findings.loc[findings["flag"], "measure"], findings.loc[findings["flag"], "target"])]


def composition_checks(folder: Path, *, n_boot: int, seed: int) -> dict:
    """On each of the book's compositions exported as a manifest (patient = the book's patient
    group; original sizes and formats from the manifest): the audit's metadata baselines against
    the chapter's (:func:`covid_lib.analysis.metadata_baseline.baseline_table`, own test set), and
    which metadata factors the audit flags."""
    from covid_lib.analysis.metadata_baseline import baseline_table
    from covid_lib.audit.measures import factor_associations, metadata_baseline
    from covid_lib.data import COMPOSITIONS, compose

    settings = AuditSettings(image_size=96, side=32, bins=32, max_images=0, n_boot=n_boot)
    book = {proxies: baseline_table(seed=seed, n_boot=n_boot, proxies=proxies).query("composition == test_set")
            .set_index("composition") for proxies in (False, True)}
    out = {}
    for name in COMPOSITIONS:
        c = compose(name, seed=seed)
        m = pd.DataFrame({"path": c["image_path"], "label": c["label"].astype(int), "patient_id": c["group_id"],
                          **{k: c[k] for k in ("source", "view", "age", "sex", "date", "split", "orig_width",
                                               "orig_height", "orig_format", "orig_mode")}})
        path = folder / f"{name.replace('&', '_')}.csv"
        m.to_csv(path, index=False)
        manifest = load_manifest(path)
        base = metadata_baseline(manifest, settings=settings, seed=seed).set_index("measure")
        factors = rank_findings(factor_associations(manifest, settings=settings, seed=seed))
        row = {"flagged factors": list(factors.loc[factors["flag"], "measure"])}
        for proxies, measure in ((False, "metadata baseline"), (True, "metadata baseline + label proxies")):
            a, b = base.loc[measure], book[proxies].loc[name]
            row[measure] = {"audit": [a["value"], a["low"], a["high"]], "chapter": [b["auc"], b["auc_low"], b["auc_high"]],
                            "equal": bool(np.allclose([a["value"], a["low"], a["high"]], [b["auc"], b["auc_low"], b["auc_high"]],
                                                      equal_nan=True))}
        out[name] = row
    return out


def rates(perm: list[dict]) -> dict:
    """False alarms of permuted audits (each ``{"measures": n, "flagged": [...]}``) with Wilson intervals."""
    n_measures = sum(p["measures"] for p in perm)
    n_flags = sum(len(p["flagged"]) for p in perm)
    n_audits = sum(bool(p["flagged"]) for p in perm)
    return {"runs": len(perm), "audits_with_a_false_alarm": n_audits,
            "false_alarm_rate_per_audit": n_audits / max(len(perm), 1),
            "false_alarm_rate_per_audit_interval": list(wilson_interval(n_audits, len(perm))),
            "false_alarms": n_flags, "measures": n_measures,
            "false_alarm_rate_per_measure": n_flags / max(n_measures, 1),
            "false_alarm_rate_per_measure_interval": list(wilson_interval(n_flags, n_measures)),
            "false_alarms_by_measure": pd.Series([f for p in perm for f in p["flagged"]], dtype=object)
            .value_counts().to_dict()}


def model_null(folder: Path, run: str, composition: str, permutations: int, *, n_boot: int, seed: int) -> dict:
    """The model's AUC-gap measures under patient-level label permutations of its own test set."""
    from covid_lib.audit.model import group_gaps, positive_labels, resolve_model, score_model
    from covid_lib.data import compose

    c = compose(composition, seed=seed)
    c = c[c["split"] == "test"]
    m = pd.DataFrame({"path": c["image_path"], "label": c["label"].astype(int), "patient_id": c["group_id"],
                      **{k: c[k] for k in ("source", "view", "age", "sex", "date", "orig_width", "orig_height",
                                           "orig_format", "orig_mode")}})
    m.to_csv(folder / "model_null.csv", index=False)
    manifest = load_manifest(folder / "model_null.csv")
    rows = manifest.rows.assign(y=positive_labels(manifest))
    table = score_model(resolve_model(run), rows, rows["y"].to_numpy(), saliency_images=0, seed=seed).table
    true = rank_findings(group_gaps(table, n_boot=n_boot, seed=seed))
    perm = []
    for k in tqdm(range(permutations), desc="model permutations"):
        per_patient = table.groupby("patient_id")["y"].first()
        shuffled = pd.Series(np.random.default_rng(2000 + k).permutation(per_patient.to_numpy()), index=per_patient.index)
        g = rank_findings(group_gaps(table.assign(y=table["patient_id"].map(shuffled).astype(int)), n_boot=n_boot,
                                     seed=seed))
        perm.append({"permutation": k, "measures": len(g), "flagged": list(g.loc[g["flag"], "measure"])})
    return {"run": run, "composition": composition, "images": len(table),
            "patients": int(table["patient_id"].nunique()), "true_labels_flagged": list(true.loc[true["flag"], "measure"]),
            **rates(perm), "runs_detail": perm}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=120)
    ap.add_argument("--permutations", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--marks", nargs="*", default=["corner", "gamma"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only-compositions", action="store_true", help="only the book's compositions check")
    ap.add_argument("--skip-compositions", action="store_true", help="leave the book's compositions check out")
    ap.add_argument("--out", default=str(REPO_ROOT / "bench" / "audit_validation.json"))
    ap.add_argument("--model", default=None, metavar="RUN", help="also the null check of the model's AUC gaps")
    ap.add_argument("--model-composition", default="CORDA&ChestXRay")
    ap.add_argument("--model-permutations", type=int, default=100)
    ap.add_argument("--skip-control", action="store_true", help="leave the Kermany control and the planted marks out")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop drawing permutations after this long (0: never)")
    ap.add_argument("--update", action="store_true", help="keep the sections of --out that this run does not measure")
    args = ap.parse_args()
    settings = AuditSettings(image_size=args.image_size, side=32, bins=32, max_images=10 ** 6, n_boot=args.n_boot)
    summary: dict = {"settings": vars(args)}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="audit-validation-") as tmp:
        folder = Path(tmp)
        if not args.skip_compositions:
            summary["compositions"] = composition_checks(folder, n_boot=2000, seed=args.seed)
        if args.only_compositions:
            print(json.dumps(summary["compositions"], indent=1, default=float))
            return
        if args.model:
            summary["model_permutations"] = model_null(folder, args.model, args.model_composition,
                                                       args.model_permutations, n_boot=args.n_boot, seed=args.seed)
        if args.skip_control:
            summary["seconds"] = round(time.perf_counter() - t0, 1)
            _write(args, summary)
            return
        control = load_manifest(control_manifest(folder, args.per_class, args.seed))
        rows = probe_rows(control, settings.max_images, seed=args.seed)
        arrays = chain_arrays(rows, PROBE_STEPS, image_size=settings.image_size, use_cache=False)
        f = rank_findings(run_audit(control, settings=settings, seed=args.seed, arrays=arrays)["measures"])
        summary["control"] = {"images": len(control.rows), "patients": int(control.rows["patient_id"].nunique()),
                              "flagged": flagged(f), "measures": f[["measure", "target", "metric", "value", "low",
                                                                  "high", "flag"]].to_dict("records")}
        perm = []
        for k in tqdm(range(args.permutations), desc="permutations"):
            if args.max_seconds and time.perf_counter() - t0 > args.max_seconds:
                print(f"stopped after {k} permutations: --max-seconds {args.max_seconds} reached")
                break
            fk = rank_findings(run_audit(permuted(control, 1000 + k), settings=settings, seed=args.seed,
                                         arrays=arrays)["measures"])
            pred = fk[fk["metric"] != "share"]
            perm.append({"permutation": k, "measures": len(pred), "flagged": flagged(pred)})
        summary["permutations"] = {**rates(perm), "runs_detail": perm}
        summary["planted"] = {}
        for mark in args.marks:
            null = permuted(control, PLANT_PERMUTATION)  # labels without signal: only the mark separates them
            planted = load_manifest(planted_manifest(null, folder, mark))
            fm = rank_findings(run_audit(planted, settings=settings, seed=args.seed)["measures"])
            summary["planted"][mark] = {"flagged": flagged(fm), "measures": fm[
                ["measure", "target", "metric", "value", "low", "high", "flag"]].to_dict("records")}
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    _write(args, summary)


def _write(args, summary: dict) -> None:
    """Write (``--update``: merge into) ``--out`` and print the summary without the details."""
    if args.update and Path(args.out).is_file():
        old = json.loads(Path(args.out).read_text())
        measured = {k: v for k, v in summary.items() if k not in ("settings", "seconds") and v}
        old.setdefault("updates", []).append({"settings": summary["settings"], "seconds": summary["seconds"],
                                             "sections": sorted(measured)})
        summary = {**old, **measured}
    Path(args.out).write_text(json.dumps(summary, indent=1, default=float))
    short = {k: v for k, v in summary.items() if k not in ("settings", "updates")}
    for key in ("control",):
        if key in short:
            short[key] = {k: v for k, v in short[key].items() if k != "measures"}
    for key in ("permutations", "model_permutations"):
        if key in short:
            short[key] = {k: v for k, v in short[key].items() if k != "runs_detail"}
    if "planted" in short:
        short["planted"] = {m: v["flagged"] for m, v in short["planted"].items()}
    print(json.dumps(short, indent=1, default=float))


if __name__ == "__main__":
    main()
