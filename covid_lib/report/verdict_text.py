"""The verdicts as text (``book/verdicts.json`` rendered): the verdicts page, each claim's and
finding's entry, and the verdict cell of a chapter (:func:`show_claim`, :func:`protocol_verdict`).
:mod:`covid_lib.report.judge` writes the file and re-exports these names, which chapters call as
``judge.show_claim``."""

from __future__ import annotations

from covid_lib.analysis import protocol as P
from covid_lib.analysis.verdicts import Verdict
from covid_lib.report.verdicts_file import note_read, read_verdicts, rule_commit_time


def _fmt(d: dict) -> str:
    if d.get("not_evaluated"):
        return _why_not(d) or "not yet evaluated"
    parts = d.get("details", {}).get("parts")
    if parts:  # a claim of several contrasts (C3): each part's numbers
        text = "; ".join(f"{name} **{p['outcome']}**: {_fmt({**p, 'left_out_reasons': {}})}" for name, p in parts.items())
        left = ", ".join(f"{n} {why}" for why, n in sorted(d.get("left_out_reasons", {}).items()))
        return text + (f" (left out in all: {left})" if left else "")
    est, lo, hi = d["estimate"], d["low"], d["high"]
    if est != est:
        left = ", ".join(f"{n} {why}" for why, n in sorted(d.get("left_out_reasons", {}).items()))
        return f"no usable comparison ({d['n_left_out']} left out" + (f": {left})" if left else ")")
    text = f"{est:+.3f} [{lo:+.3f}, {hi:+.3f}], MDE {d['mde']:.3f}" if d["mde"] == d["mde"] else \
        f"{est:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    left = ", ".join(f"{n} {why}" for why, n in sorted(d["left_out_reasons"].items()))
    text += f"; {d['n_used']} used, {d['n_left_out']} left out" + (f" ({left})" if left else "")
    return text + (f"; {d['reason']}" if d["outcome"] in ("inconclusive", "no detectable effect") else "")


#: The chapter that shows each claim's evidence, and the badge colour of each outcome (sphinx-design).
CLAIM_CHAPTERS = {"C1": "05_cross_dataset", "C2": "04_pretraining", "C3": "06_depth", "C4": "08_features",
                  "C5": "07_small_test", "C6": "09_ablation"}
BADGES = {"reproduced": "success", "not reproduced": "danger", "no detectable effect": "info",
          "inconclusive": "warning"}
#: What every verdict's models differ in from the paper's, and what each scale and claim adds.
COMMON_DEPARTURES = ("`cpu` recipe (128 px, AdamW one-cycle, at most 30 epochs); encoders from random weights "
                     "(no ImageNet can be downloaded); CORDA is a public stand-in (Cohen images of many "
                     "hospitals); splits by patient, so CORDA's test patients sit inside each CORDA&X test; "
                     "RSNA pre-training on 1,000 NIH images (the paper: 26,684)")
SCALE_DEPARTURES = {"563": "ChestXRay pre-training on 563 images (the paper: 5,857)",
                    "full": "ChestXRay pre-training on the whole set as a squashed 224-px JPEG copy, whose "
                            "three-class gate (macro AUC >= 0.93) was not met"}
CLAIM_DEPARTURES = {
    "C1": "decided against the CORDA-only model's own gap (the paper has no control)",
    "C2": "decided threshold-free (AUC); the paper reads specificity at the threshold 0.5",
    "C3": "Conv8 is ours, after ALL-CNN-C (the paper gives no layer widths)",
    "C4": "a k-NN balanced-accuracy margin (source minus label) measured before and after fine-tuning, where "
          "the paper reads a t-SNE plot",
    "C5": "COVID-ChestXRay is a stand-in rebuilt from git dates; its 15-image test is one seeded draw",
    "C6": "pipeline `none` resizes the stored 8-bit images only; decided on AUC, the paper reports BA and DOR",
}


#: What a comparison left out as missing is, per scale (the verdicts page), and what it adds per claim.
MISSING_WHY = {"563": "at the 563-image scale, a seed its grids never held (one to three seeds by design)",
               "full": "at the whole set, a run still to be trained ([reproduce](reproduce.md) counts them, with "
                       "the hours they need)"}
MISSING_NOTES = {"C3": " The whole set's missing runs ask for bf16, which this project's recent machines lack; "
                       "the reproduce page also reads C3 with their fp32 twins in their place, deciding nothing."}

#: The chapter that shows each finding's evidence.
FINDING_CHAPTERS = {"F1": "11_unseen", "F2": "03_confounders", "F3": "10_shortcuts", "F4": "12_saliency",
                    "F5": "13_landscape"}
#: What each finding's models or data differ in from the work the finding follows.
FINDING_DEPARTURES = {
    "F1": "ResNet-18 from scratch or pre-trained on 563 ChestXRay images (no ImageNet), not a frozen ImageNet "
          "ResNet-50; our sources (Hannover, Cohen, Kermany, NIH), not BIMCV, PadChest or CheXpert; the paper's chain, "
          "not their lung crop; the `cpu` recipe; seed 0 only",
    "F2": "a logistic regression reads the metadata, where a network has to infer them from the pixels",
    "F3": "DeGrave et al. plant nothing: the mark, where it is planted and the composition (CORDA) are ours",
    "F4": "Grad-CAM or gradient x input on our `cpu`-profile ResNet-18s at 128 px (from scratch or pre-trained on "
          "the whole ChestXRay set), not expected gradients (DeGrave et al.) or CAM on DenseNet-121 (the KTH report); "
          "a U-Net lung mask",
    "F5": "ResNet-18 pre-trained from random weights on ChestXRay, not DenseNet-121 / ResNet-50 on ChestX-ray14 "
          "with ImageNet weights; our six sources, not ChestX-ray14's pathologies; MiniSom's schedule, not the "
          "report's",
}


def _rule_markdown(claim: str) -> str:
    """The protocol's estimand, control and decision rule for ``claim``, as one Markdown sentence."""
    rule = P.rule(claim)
    return f"*Estimand:* {rule.estimand}. *Control:* {rule.control}. *Decides:* {P.rule_text(rule)}"


def _departures(claim: str) -> str:
    """What every verdict's models differ in from the paper, and what ``claim`` adds (a finding:
    what differs from the work it follows)."""
    if claim in FINDING_DEPARTURES:
        return FINDING_DEPARTURES[claim]
    return "; ".join(x for x in (COMMON_DEPARTURES, CLAIM_DEPARTURES.get(claim, "")) if x)


def exploratory_text(d: dict) -> str:
    """How a finding's rule stands to the records it judges: ``exploratory: rule fixed after N of
    the M records it judges`` (N made before the rule), ``confirmatory`` when every record came
    after it, or ``not evaluated``."""
    if d.get("not_evaluated"):
        return "not evaluated"
    n, after = d.get("n_records") or 0, d.get("records_after_protocol") or 0
    if not n:
        return "exploratory: rule fixed after the data it judges had been read (no run record)"
    if after == n:
        return f"confirmatory: all {n} records it judges were made after the rule"
    return f"exploratory: rule fixed after {n - after} of the {n} records it judges"


def _why_not(d: dict) -> str:
    """Why a finding is not evaluated (its reason without the leading ``not evaluated: ``), or ''."""
    reason = str(d.get("reason", ""))
    return reason.removeprefix("not evaluated: ") if reason.startswith("not evaluated: ") else ""


def _signed(e: dict) -> str:
    return f"{e['estimate']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}]"


def finding_details(claim: str, d: dict) -> list[str]:
    """What a finding reports beside its decision, never deciding (its rule's ``secondary``), as
    Markdown list items."""
    x = d.get("details") or {}
    out = []
    if claim == "F1" and x.get("within_model_drop"):
        drops = [r for r in x["within_model_drop"] if r.get("drop") == r.get("drop")]
        above = sum(r["drop_low"] > 0 for r in drops)
        out.append(f"the within-model drop, seen minus unseen AUC (unpaired): its interval lies above 0 for {above} of "
                   f"{len(drops)} models")
    if claim == "F2":
        for r in x.get("secondary", []):
            out.append(f"{r['composition']} minus {r['against']}: {_signed(r)}")
        if x.get("with_year"):
            out.append(f"with the year and the missing-value flags (by-construction proxies): {_signed(x['with_year'])}")
    if claim == "F3":
        for key, text in (("control_pipeline_none", "the same contrast without the chain (pipeline none)"),
                          ("marked_minus_unmarked", "marked minus unmarked, through the chain")):
            if x.get(key):
                out.append(f"{text}: {_signed(x[key])}")
    if claim == "F4" and x.get("map"):
        here = x.get("planted_differs_from_record") or {}
        out.append(f"maps: {x['map']}, the first candidate that found the planted mark"
                   + (f" (checked on {len(here)} planted models trained here, not the recorded ones: the check "
                      "validates the map, none of its numbers is F4's)" if here else ""))
    if claim == "F5":
        for t, e in (x.get("change") or {}).items():
            out.append(f"change with fine-tuning of the excess purity by {t}: {_signed(e)}")
    return out


def _scale_departures(scales) -> str:
    """What each pre-training scale of ``scales`` differs in from the paper."""
    return "; ".join(SCALE_DEPARTURES[s] for s in scales if s in SCALE_DEPARTURES)


def _badge(outcome: str) -> str:
    return f"{{bdg-{BADGES.get(outcome, 'secondary')}}}`{outcome}`"


def _short_estimate(d: dict) -> str:
    if d.get("not_evaluated"):
        return "not yet evaluated"
    est, lo, hi = d["estimate"], d["low"], d["high"]
    if est != est:
        return "no usable comparison"
    return f"{est:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def verdicts_markdown(data: dict | None = None) -> str:
    """The verdicts at a glance (one row per claim: a badge per scale and the deciding estimate),
    then one collapsed section per claim: the rule, the numbers at each scale, when the judged
    records were made, what differs from the paper and the chapter with the evidence."""
    data = read_verdicts() if data is None else data
    if not data:
        return "*No verdicts judged yet: run `python -m covid_lib book judge`.*"
    from covid_lib.analysis.verdicts import CLAIMS, SHORT_CLAIMS

    scales = list(data["scales"])
    labels = {s: data["scales"][s]["label"] for s in scales}
    lines = [f"Judged under protocol `{data['protocol_hash']}` (version {data['protocol_version']}, committed "
             f"{data.get('protocol_committed') or 'unknown'}). Estimates: the pooled difference each claim's "
             "{doc}`protocol` names, with its 95% interval over patients.", "",
             "| claim | " + " | ".join(f"verdict, {labels[s].split(' (')[0].split(',')[0]}" for s in scales)
             + " | deciding estimate [95% CI] | evidence |",
             "|---|" + "---|" * len(scales) + "---|---|"]
    from covid_lib.report.sensitivity import rests_on_collapse_rule

    fragile = False
    for claim in CLAIMS:
        ds = [data["scales"][s]["claims"][claim] for s in scales]
        deciding = next((d for d in reversed(ds) if d["estimate"] == d["estimate"] and not d.get("not_evaluated")),
                        ds[-1])
        chapter = CLAIM_CHAPTERS.get(claim)
        link = f"[{chapter[:2]}](chapters/{chapter}.ipynb)" if chapter else ""
        marks = [" †" if rests_on_collapse_rule(data, s, claim) else "" for s in scales]
        fragile = fragile or any(marks)
        lines.append(f"| **{claim}** {SHORT_CLAIMS[claim]} | "
                     + " | ".join(_badge(d["outcome"]) + m for d, m in zip(ds, marks))
                     + f" | {_short_estimate(deciding)} | {link} |")
    lines += ["", "The estimate shown is the last scale with a usable estimate (the whole set when it has one). "
              + ("† The outcome changes when the models that collapsed at the threshold only (scores spread, all "
                 "on one side of 0.5) are kept: see *Do the verdicts rest on the collapse rule?* below. "
                 if fragile else "") + "Each claim in detail:", ""]
    for claim in CLAIMS:
        rule = P.PROTOCOL[claim]
        lines += [f":::{{dropdown}} {claim}: {SHORT_CLAIMS[claim]}", f"**The claim** ({rule.section}): {CLAIMS[claim]}",
                  "", f"**The rule.** {_rule_markdown(claim)}", ""]
        for s in scales:
            d = data["scales"][s]["claims"][claim]
            when = (f" Judged on {d['n_records']} records, {d['records_after_protocol']} of them made after the "
                    "protocol was committed." if d.get("n_records") else "")
            lines.append(f"- *{labels[s]}:* **{d['outcome']}**: {_fmt(d)}.{when}")
        missing = [MISSING_WHY[s] for s in scales
                   if data["scales"][s]["claims"][claim].get("left_out_reasons", {}).get("missing")]
        if missing:
            lines += ["", "*Missing:* a comparison whose run has no record: " + "; ".join(missing) + "."
                      + MISSING_NOTES.get(claim, "")]
        lines += ["", f"**What differs from the paper:** {_departures(claim)}; per scale: "
                  f"{_scale_departures(scales)}.", ""]
        if claim in CLAIM_CHAPTERS:
            lines += [f"Evidence: [{CLAIM_CHAPTERS[claim]}](chapters/{CLAIM_CHAPTERS[claim]}.ipynb).", ""]
        lines.append(":::")
    if data.get("findings"):
        lines += ["", *findings_markdown(data["findings"], data)]
    return "\n".join(lines)


def findings_markdown(findings: dict[str, dict], data: dict | None = None) -> list[str]:
    """The findings beyond the paper (F1-F5) on the verdicts page: a glance table (badge, estimate,
    how the rule stands to the records; † where the collapse sensitivity reading of ``data``,
    ``book/verdicts.json``, changes the outcome), then one collapsed section per finding."""
    from covid_lib.analysis.verdicts import FINDING_CLAIMS, SHORT_FINDINGS
    from covid_lib.report.sensitivity import finding_rests_on_collapse_rule

    lines = ["## Findings beyond the paper", "",
             "The book's own conclusions beyond the paper, each decided under a rule of protocol version 2 "
             "(see the {doc}`protocol`). The rules were written after the seed-0 records they judge had been read, "
             "so each verdict says how many of its records came before the rule: such a verdict is *exploratory*, "
             "to be confirmed on records made after it.", "",
             "| finding | verdict | estimate [95% CI] | rule and records | evidence |", "|---|---|---|---|---|"]
    for f, d in findings.items():
        chapter = FINDING_CHAPTERS.get(f, "")
        link = f"[{chapter[:2]}](chapters/{chapter}.ipynb)" if chapter else ""
        if d.get("not_evaluated"):
            badge, estimate, records = "{bdg-secondary}`not evaluated`", _why_not(d).split(":")[0] or "–", "–"
        else:
            badge, estimate, records = _badge(d["outcome"]), _short_estimate(d), exploratory_text(d)
            if finding_rests_on_collapse_rule(data, f):
                badge += " †"
        lines.append(f"| **{f}** {SHORT_FINDINGS.get(f, '')} | {badge} | {estimate} | {records} | {link} |")
    if any(finding_rests_on_collapse_rule(data, f) for f in findings):
        lines += ["", "† The outcome changes when the model collapsed at the threshold only is kept (see *Do the "
                  "verdicts rest on the collapse rule?* below)."]
    lines += ["", "Each finding in detail:", ""]
    for f, d in findings.items():
        rule = P.rule(f)
        lines += [f":::{{dropdown}} {f}: {SHORT_FINDINGS.get(f, '')}",
                  f"**The finding** ({rule.paper}; {rule.section}): {FINDING_CLAIMS.get(f, '')}", "",
                  f"**The rule** (protocol version {rule.since}, committed {d.get('rule_committed') or 'unknown'}). "
                  f"{_rule_markdown(f)}", ""]
        verdict = "not evaluated" if d.get("not_evaluated") else d["outcome"]
        lines.append(f"- **{verdict}**: {_fmt(d)}." + ("" if d.get("not_evaluated") else f" *{exploratory_text(d)}*."))
        extra = finding_details(f, d)
        if extra:
            lines += ["", "Beside it, never deciding:", "", *(f"- {e}" for e in extra)]
        differs = "Limits (a finding of ours)" if rule.paper.startswith("ours") else f"What differs from {rule.paper}"
        lines += ["", f"**{differs}:** {_departures(f)}.", ""]
        if f in FINDING_CHAPTERS:
            lines += [f"Evidence: [{FINDING_CHAPTERS[f]}](chapters/{FINDING_CHAPTERS[f]}.ipynb).", ""]
        lines.append(":::")
    return lines


def claim_markdown(claim: str, data: dict | None = None) -> str:
    """What a chapter shows for ``claim``: the protocol's rule first (estimand, control, rule, as
    :mod:`covid_lib.analysis.protocol` fixes them), then the outcome judged from the records at each
    pre-training scale (``book/verdicts.json``, written by ``book judge``), with the deciding
    estimate, its patient-level interval, the MDE and the models left out. A finding beyond the
    paper (``F1``-``F5``) shows its one judgement, with when its rule was fixed against the
    records it judges (:func:`exploratory_text`)."""
    rule = P.rule(claim)
    if data is None:
        data = read_verdicts()
        note_read(claim)
    if claim in P.FINDINGS:
        return _finding_markdown(claim, data)
    lines = [f"**The rule** (protocol `{P.protocol_hash()}`, fixed before the runs at scale were read; "
             f"paper {rule.section}). {_rule_markdown(claim)}", ""]
    if not data or data.get("protocol_hash") != P.protocol_hash():
        return "\n".join(lines + ["*Not judged under this protocol yet: run `python -m covid_lib book judge`.*"])
    lines += ["| pre-training scale | outcome | deciding estimate [95% CI over patients], MDE; comparisons used / left out |",
              "|---|---|---|"]
    for scale in data["scales"].values():
        d = scale["claims"][claim]
        lines.append(f"| {scale['label']} | **{d['outcome']}** | {_fmt(d)} |")
    from covid_lib.report.sensitivity import rests_on_collapse_rule

    kept = {s: part["claims"][claim] for s, part in (data.get("collapse_sensitivity") or {}).get("scales", {}).items()
            if claim in part.get("claims", {})}
    if kept:
        lines += ["", "Beside it, never deciding (post hoc, the verdicts page's sensitivity reading): with the models "
                  "that collapsed at the threshold only kept (scores spread, all on one side of 0.5), "
                  + "; ".join(f"{data['scales'][s]['label'].split(' (')[0]}: **{d['outcome']}**, {_short_estimate(d)}, "
                              f"{d['n_used']} used" + (" (the outcome changes)" if rests_on_collapse_rule(data, s, claim)
                                                       else "")
                              for s, d in kept.items()) + "."]
    return "\n".join(lines)


def _judged(data: dict | None) -> bool:
    return bool(data) and data.get("protocol_hash") == P.protocol_hash()


def _finding_markdown(finding: str, data: dict | None) -> str:
    """:func:`claim_markdown` of a finding: its rule, when it was fixed against the records it
    judges (from the dates), then its outcome and estimate."""
    rule = P.rule(finding)
    d = (data or {}).get("findings", {}).get(finding) if _judged(data) else None
    committed = (d or {}).get("rule_committed") or rule_commit_time(finding) or "not yet committed"
    lines = [f"**The rule** (protocol `{P.protocol_hash()}`, version {rule.since}, committed {committed}; "
             f"{rule.paper}, {rule.section}). {_rule_markdown(finding)}", ""]
    if d is None:
        return "\n".join(lines + ["*Not judged under this protocol yet: run `python -m covid_lib book judge`.*"])
    verdict = "not evaluated" if d.get("not_evaluated") else d["outcome"]
    lines += ["| outcome | estimate [95% CI over patients], MDE; comparisons used / left out | rule and records |",
              "|---|---|---|", f"| **{verdict}** | {_fmt(d)} | {exploratory_text(d)} |"]
    extra = finding_details(finding, d)
    if extra:
        lines += ["", "Beside it, never deciding: " + "; ".join(extra) + "."]
    kept = ((data.get("collapse_sensitivity") or {}).get("findings") or {}).get(finding)
    if kept:
        from covid_lib.report.sensitivity import finding_rests_on_collapse_rule

        lines += ["", "Beside it, never deciding (post hoc, the verdicts page's sensitivity reading): with the model "
                  f"that collapsed at the threshold only kept, **{kept['outcome']}**, {_short_estimate(kept)}, "
                  f"{kept['n_used']} used" + (" (the outcome changes)" if finding_rests_on_collapse_rule(data, finding)
                                              else "") + "."]
    return "\n".join(lines)


def protocol_verdict(claim: str, data: dict | None = None, *, scale: str = "full") -> Verdict:
    """``claim``'s verdict as the protocol decided it (``book/verdicts.json``), as a
    :class:`~covid_lib.analysis.verdicts.Verdict` for a chapter's answer box: the outcome at
    ``scale`` (the grids at the paper's pre-training scale decide), the numbers at every scale,
    and what differs from the paper. A finding (``F1``-``F5``) has one judgement, labelled
    exploratory or confirmatory (:func:`exploratory_text`); one not evaluated reads inconclusive
    with the reason."""
    from covid_lib.analysis.verdicts import CLAIMS, FINDING_CLAIMS

    if data is None:
        data = read_verdicts()
        note_read(claim)
    chapter = CLAIM_CHAPTERS.get(claim, FINDING_CHAPTERS.get(claim, ""))
    differs = _departures(claim)
    statement = CLAIMS.get(claim) or FINDING_CLAIMS[claim]
    d = (data or {}).get("findings", {}).get(claim) if claim in P.FINDINGS else None
    if not _judged(data) or (claim in P.FINDINGS and d is None):
        return Verdict(claim, statement, "inconclusive", "not judged under this protocol yet "
                       "(`python -m covid_lib book judge`)", differs, chapter)
    if d is not None:  # a finding beyond the paper: one judgement, not one per scale
        if d.get("not_evaluated"):
            return Verdict(claim, f"not evaluated here, so the rule decides nothing. The finding: {statement}",
                           "inconclusive", f"not evaluated: {_fmt(d)}", differs, chapter)
        return Verdict(claim, statement, d["outcome"], f"the protocol's estimate ({_fmt(d)}; {exploratory_text(d)})",
                       differs, chapter)
    scales = data["scales"]
    scale = scale if scale in scales else list(scales)[-1]
    deciding = "; ".join(f"{s['label']}: {s['claims'][claim]['outcome']}, {_fmt(s['claims'][claim])}"
                         for s in scales.values())
    differs += "; " + _scale_departures(scales)
    return Verdict(claim, CLAIMS[claim], scales[scale]["claims"][claim]["outcome"],
                   f"the protocol's pooled estimate ({deciding})", differs, chapter)


def show_claim(claim: str, data: dict | None = None) -> None:
    """Display :func:`claim_markdown` in a notebook (the chapters' verdict cell)."""
    from IPython.display import Markdown, display

    display(Markdown(claim_markdown(claim, data)))
