"""Which measurements of an audit are findings, worst first, each in one sentence.

The flag rule, fixed before any data is seen:

- A *predictability* measure (AUC, macro AUC, balanced accuracy) is flagged when the lower end of
  its 95% patient-level interval exceeds chance by more than :data:`MARGIN`
  (``low > chance + MARGIN``). Without a shortcut the interval's lower end falls below chance
  about 2.5% of the time, and below ``chance + MARGIN`` less often still: each measure's false-
  alarm rate is at most about 2.5%; an audit runs about a dozen correlated measures, so its
  chance of at least one false alarm is higher (the permutation control of
  ``scripts/audit_validation.py`` measures it).
- The model's measures (section 6, ``--model``; :mod:`covid_lib.audit.model`) take the same
  rule against their own null: an *AUC gap* (the rest's AUC minus a group's) and a *lung
  shortfall* (the lung's area share minus the saliency's in-lung share) against 0, a within-class
  *source AUC* against 0.5.
- A *leakage* share (test images whose patient or duplicate is in train/val, images duplicated
  under another label) is flagged whenever it is above zero: one such image is already a defect.
  Under patient-level splits the patient and exact-duplicate shares never flag; the near-duplicate
  pHash does link different X-rays of the same framing in large uniform sets (every random split
  of Kermany's 4265 bacterial and viral images flags), so a near-duplicate flag is read with its
  pairs (``scripts/audit_validation.py``, ``leakage-null``).

Findings are ranked by how far the interval's lower end clears the flag threshold (leakage, which
invalidates the test itself, first), then by value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from covid_lib.paths import REPO_ROOT

#: How far above chance the lower end of the 95% interval must lie for a flag.
MARGIN = 0.05
#: The key of the audit's own maps in ``scripts/audit_validation.py``'s ``shortfall-positive`` section.
GRADCAM = "Grad-CAM (the audit's)"
FINDING_COLUMNS = ["rank", "flag", "section", "measure", "target", "metric", "value", "low", "high", "chance",
                   "sentence"]


def is_flagged(measures: pd.DataFrame, *, margin: float = MARGIN) -> pd.Series:
    """The flag rule of the module docstring, per measure row."""
    share = measures["metric"].eq("share")
    predict = measures["low"] > measures["chance"] + margin
    return (share & (measures["value"] > 0)) | (~share & predict.fillna(False))


def sentence(row: pd.Series) -> str:
    """One line a reader can act on, e.g. "the label is predictable from image size at AUC 0.97 [0.94, 0.99]"."""
    est = f"{row['value']:.2f} [{row['low']:.2f}, {row['high']:.2f}]"
    if str(row.get("section", "")).startswith("6"):
        return _model_sentence(row, est)
    if row["metric"] == "share":
        return f"{row['measure']}: {row['value']:.1%} [{row['low']:.1%}, {row['high']:.1%}] ({row.get('note', '')})"
    what = "the source" if row["target"] == "source" else "the label"
    src = row["measure"]
    if src.startswith(("metadata baseline", "image statistics", "lung-mask")):
        src = f"the {src}"  # a predictor, not a column
    chance = f" (chance {row['chance']:.2f})"
    if row.get("flag", False):
        return f"{what} is predictable from {src} at {row['metric']} {est}{chance}"
    return f"{what} is not clearly predictable from {src}: {row['metric']} {est}{chance}"


def _model_sentence(row: pd.Series, est: str) -> str:
    """Section 6's sentences (:mod:`covid_lib.audit.model`)."""
    flag, note, measure = bool(row.get("flag", False)), row.get("note", ""), row["measure"]
    if row["metric"].startswith("AUC gap"):
        group = measure.split(", ", 1)[-1]
        if flag:
            return f"the model is worse on {group}: AUC gap {est} ({note})"
        return f"the model is not clearly worse on {group}: AUC gap {est} ({note})"
    if row["target"] == "source":
        cls, pair = measure[len("model score within "):].split(": ", 1)
        rich, poor = pair.split(" vs ", 1)
        if flag:
            return (f"within {cls}, the model scores {rich} above {poor} at AUC {est} (chance 0.50): a source "
                    f"shortcut, or the sources' patients differ ({note})")
        return f"within {cls}, the model's score does not clearly follow the source: AUC {est} (chance 0.50; {note})"
    which = measure.split(", ", 1)[-1]
    if flag:
        return (f"the model's saliency ({which}) lies outside the lungs: the in-lung share falls short of the lung's "
                f"area by {est} ({note})")
    return f"the model's saliency ({which}) is not clearly outside the lungs: shortfall {est} ({note})"


def rank_findings(measures: pd.DataFrame, *, margin: float = MARGIN) -> pd.DataFrame:
    """Every measure with ``flag`` and ``sentence``, flagged ones first, worst first (module docstring)."""
    out = measures.copy()
    out["flag"] = is_flagged(out, margin=margin)
    share = out["metric"].eq("share")
    clearance = np.where(share, 1.0 + out["value"], out["low"] - out["chance"] - margin)
    out["_key"] = np.where(out["flag"], clearance, -np.inf)
    out = out.sort_values(["flag", "_key", "value"], ascending=[False, False, False], kind="stable")
    out["sentence"] = [sentence(r) for _, r in out.iterrows()]
    out["rank"] = np.arange(1, len(out) + 1)
    return out[FINDING_COLUMNS + [c for c in ("n_images", "n_patients", "note") if c in out]].reset_index(drop=True)


def validation_note(path=None) -> str:
    """The audit's validation in a few sentences, from ``bench/audit_validation.json``
    (``scripts/audit_validation.py``); says so when it was not measured."""
    import json

    path = path or REPO_ROOT / "bench" / "audit_validation.json"
    try:
        v = json.loads(open(path).read())
    except (OSError, ValueError):
        return "The audit's validation (`scripts/audit_validation.py`) has not been run in this installation."
    parts = []
    comps = v.get("compositions", {})
    if comps:
        parts.append(_compositions_sentence(comps))
    perm = v.get("permutations")

    def ci(key: str, source: dict | None = None) -> str:
        lo_hi = (perm if source is None else source).get(key)
        return f", 95% interval {lo_hi[0]:.1%}-{lo_hi[1]:.1%}" if lo_hi else ""

    if perm:
        parts.append(f"On {perm['runs']} label permutations of a control without a planted shortcut (Kermany "
                     f"bacterial vs viral) it raised {perm['false_alarms']} false alarm(s) in {perm['measures']} "
                     f"measures ({perm['false_alarm_rate_per_measure']:.1%} per measure"
                     f"{ci('false_alarm_rate_per_measure_interval')}; "
                     f"{perm['audits_with_a_false_alarm']} of {perm['runs']} audits with at least one"
                     f"{ci('false_alarm_rate_per_audit_interval')}).")
    mperm = v.get("model_permutations")
    if mperm:
        parts.append(f"The model's AUC gaps (section 6), on {mperm['runs']} label permutations of {mperm['run']}'s "
                     f"{mperm['composition']} test set, raised {mperm['false_alarms']} false alarm(s) in "
                     f"{mperm['measures']} measures ({mperm['audits_with_a_false_alarm']} of {mperm['runs']} audits "
                     f"with at least one{ci('false_alarm_rate_per_audit_interval', mperm)}).")
    for mark, r in v.get("planted", {}).items():
        parts.append(f"With a planted {mark} mark on one class it flagged: {', '.join(r['flagged']) or 'nothing'}.")
    nulls = _null_rates(v)
    if nulls:
        parts.append("False alarms of the other measures under nulls built for them (per measure, Wilson 95% "
                     "interval; audits with at least one): " + "; ".join(nulls) + ".")
    parts += _leakage_sentences(v.get("leakage_null", {}))
    if v.get("shortfall_positive"):
        parts.append(_shortfall_sentence(v["shortfall_positive"]))
    return "**Validation** (`scripts/audit_validation.py`). " + " ".join(parts)


def _leakage_sentences(sets: dict) -> list[str]:
    """The leakage measures (section 3) on data split by patient at random, and the planted leaks
    (``scripts/audit_validation.py``'s ``leakage-null`` section)."""
    out = []
    for name, r in sets.items():
        null, pairs = r["null"], r["pairs"]
        by = ", ".join(f"{m.split(' -> ')[0]} {n}" for m, n in null.get("false_alarms_by_measure", {}).items())
        text = (f"The leakage measures on {name} ({r['images']} images, {r['patients']} patients) split by patient at "
                f"random {null['runs']} times (labels permuted between patients): {null['audits_with_a_false_alarm']} of "
                f"{null['runs']} audits flagged" + (f" ({by})" if by else "") + "; the duplicate hash links "
                f"{pairs['exact, two patients']} exact and {pairs['near, two patients']} near pair(s) of two patients")
        corr = [p["correlation"] for p in r.get("pairs of two patients", []) if p.get("correlation") is not None]
        if corr:
            text += f" (pixel correlation {min(corr):.2f}-{max(corr):.2f})"
        planted = "; ".join(f"{k} {p['detected']}/{p['planted']}" for k, p in r.get("planted", {}).items())
        out.append(text + (f". Planted leaks flagged: {planted}." if planted else "."))
    return out


def _shortfall_sentence(r: dict) -> str:
    """The lung shortfall's positive check (``shortfall-positive``): on the COVID+ test images with
    a corner mark planted (outside the lungs), the shortfall of a model that learnt the mark and of
    one fine-tuned to detect it, with the audit's Grad-CAM maps and with input-gradient maps."""
    def est(model: dict, maps: str) -> str:
        m = next(x for x in model["marked"][maps]["measures"] if x["measure"].endswith("positive (1)"))
        return f"{m['value']:.2f} [{m['low']:.2f}, {m['high']:.2f}]" + (" flagged" if m["flag"] else " not flagged")

    what = {"planted run": "the planted run", "mark detector": "the same network fine-tuned to detect the mark"}
    parts = [f"{what[name]} (AUC {r[name]['marked']['model AUC']['value']:.2f}): Grad-CAM "
             f"{est(r[name], GRADCAM)}, input gradient {est(r[name], 'input gradient')}"
             for name in what if name in r]
    return ("Lung shortfall of the COVID+ maps with a corner mark (outside the lungs) planted on those images, for "
            "models that use the mark: " + "; ".join(parts) + " (Grad-CAM is the audit's map).")


def _compared(row: dict) -> dict[str, dict]:
    """The compared numbers of one composition (entries with ``equal``), by name."""
    return {k: r for k, r in row.items() if isinstance(r, dict) and "equal" in r}


def _compositions_sentence(comps: dict) -> str:
    """How many of the compared numbers equal the chapters' on the book's compositions and which do
    not (``scripts/audit_validation.py``'s ``compositions`` section)."""
    cells = [(name, k, r) for name, row in comps.items() for k, r in _compared(row).items()]
    equal = sum(r["equal"] for _, _, r in cells)
    text = (f"On the book's {len(comps)} compositions, {equal} of the {len(cells)} numbers compared equal the "
            "chapters' (counts, metadata baselines, leakage and duplicates, image-statistics probes before and "
            "after the chain, lung-mask baseline)")
    rest = [f"{n}: {k}" for n, k, r in cells if not r["equal"]]
    if rest:
        text += f"; unequal: {'; '.join(rest)}"
    return text + ". Flagged factors: " + "; ".join(f"{n}: {', '.join(r['flagged factors']) or 'none'}"
                                                     for n, r in comps.items()) + "."


def _rate(r: dict) -> str:
    from covid_lib.stats import wilson_interval

    lo, hi = wilson_interval(r["false_alarms"], r["measures"])
    alo, ahi = wilson_interval(r["audits_with_a_false_alarm"], r["runs"])
    return (f"{r['false_alarms']} in {r['measures']} ({r['false_alarms'] / max(r['measures'], 1):.1%}, "
            f"{lo:.1%}-{hi:.1%}; {r['audits_with_a_false_alarm']} of {r['runs']} audits, {alo:.1%}-{ahi:.1%})")


def _pooled(nulls: list[dict]) -> dict:
    keys = ("false_alarms", "measures", "audits_with_a_false_alarm", "runs")
    return {k: sum(n[k] for n in nulls) for k in keys}


def _null_rates(v: dict) -> list[str]:
    """One phrase per null of ``metadata_null`` and ``source_null``, and per measure of ``model_nulls``
    (its nulls of that measure pooled over data sets and numbers of sources)."""
    out = []
    for scoring, r in v.get("metadata_null", {}).items():
        out.append(f"the metadata factors and baselines on {r['composition']} with labels permuted between "
                   f"patients ({scoring}): {_rate(r)}")
    if v.get("source_null"):
        out.append(f"the source factor and the image statistics' source, with a source drawn at random per patient "
                   f"of the control: {_rate(v['source_null'])}")
    model = [(name, n) for r in v.get("model_nulls", {}).values() if isinstance(r, dict)
             for name, n in r.get("nulls", {}).items()]
    for what, start, null in (("score by source within a class", "source", "sources drawn at random per patient"),
                              ("saliency lung shortfall", "lung", "maps shifted at random")):
        picked = [n for name, n in model if name.startswith(start)]
        if picked:
            out.append(f"the model's {what} ({null}, {len(picked)} nulls pooled): {_rate(_pooled(picked))}")
    return out
