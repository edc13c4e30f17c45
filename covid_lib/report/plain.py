"""The verdicts in plain words, for the clinicians' summary (``book/summary.md``, ``book sync``).

One row per claim of Tartaglione et al. 2020 (C1-C6): the claim as a question a reader would ask,
the answer our records give at the paper's pre-training scale (or at 563 images where the whole
set has no usable estimate yet), the number that decides it, and how much of the evidence is in.
Read from ``book/verdicts.json`` (``book judge``), never typed: the same outcomes, estimates and
counts as the verdicts page, in other words.
"""

from __future__ import annotations

#: Each claim as the question a clinician would ask of it (the claims: ``analysis.verdicts.CLAIMS``).
QUESTIONS: dict[str, str] = {
    "C1": "Does borrowing COVID-negative images from another collection inflate a model's score on its own "
          "test set, while it fails on the other test sets?",
    "C2": "Does pre-training on pneumonia X-rays make the COVID model more specific?",
    "C3": "Is a deeper network (ResNet-50), or a lighter one (Conv8), no better than ResNet-18?",
    "C4": "Do the networks' features group images by the collection they come from rather than by diagnosis?",
    "C5": "Does a model trained on a small public COVID set look near-perfect on its 15-image test and fail "
          "elsewhere?",
    "C6": "Without the pre-processing (grey-level equalisation, lung masking), do results on other collections "
          "get worse?",
}

#: Each outcome of the protocol, as an answer.
ANSWERS: dict[str, str] = {
    "reproduced": "**Yes**, as the paper says",
    "not reproduced": "**No**: our data contradict it",
    "no detectable effect": "**No effect found**",
    "inconclusive": "**Cannot tell yet**",
}

#: The same, in two or three words (for the parts of a claim of several contrasts, C3).
SHORT_ANSWERS: dict[str, str] = {"reproduced": "yes", "not reproduced": "no", "no detectable effect": "no effect found",
                                 "inconclusive": "cannot tell yet"}

#: The pre-training scales of ``verdicts.json``, in words.
SCALE_WORDS = {"full": "the whole ChestXRay set", "563": "563 ChestXRay images"}


def _scale(data: dict, claim: str) -> str:
    """The scale whose verdict on ``claim`` the summary reads: the last (the whole set) with a usable
    estimate, else the last."""
    scales = list(data["scales"])
    return next((s for s in reversed(scales) if _usable(data["scales"][s]["claims"][claim])), scales[-1])


def _usable(d: dict) -> bool:
    return not d.get("not_evaluated") and d.get("estimate") == d.get("estimate") and d.get("estimate") is not None


def why(d: dict) -> str:
    """Why an outcome is what it is, in a few words: for *inconclusive*, what is short; for *no
    detectable effect*, the smallest effect the test could have found."""
    if d.get("not_evaluated"):
        return "not evaluated yet"
    if d["outcome"] == "no detectable effect":
        return f"an effect of {d['mde']:.2f} or more would have been seen"
    if d["outcome"] != "inconclusive":
        return ""
    parts = []
    if d.get("n_used", 0) < d.get("n_left_out", 0):
        parts.append("too few usable models")
    elif "parts" not in d.get("details", {}):
        parts.append("the interval is too wide")
    if d.get("details", {}).get("parts"):
        parts.append(", ".join(f"{name}: {SHORT_ANSWERS.get(p['outcome'], p['outcome'])}"
                               for name, p in d["details"]["parts"].items()))
    return "; ".join(parts)


def evidence(d: dict) -> str:
    """How many of the claim's comparisons are usable, and why the others are not."""
    if d.get("not_evaluated") or not (d.get("n_used", 0) + d.get("n_left_out", 0)):
        return "–"
    left = d.get("left_out_reasons", {})
    words = {"collapsed": "collapsed", "did not learn": "did not learn", "missing": "still to be run"}
    out = f"{d['n_used']} of {d['n_used'] + d['n_left_out']} usable"
    reasons = [f"{n} {words.get(k, k)}" for k, n in sorted(left.items()) if n]
    return out + (f" ({', '.join(reasons)})" if reasons else "")


def plain_verdicts_markdown(data: dict | None = None) -> str:
    """The clinicians' table: question, answer (with why), deciding estimate and interval, how much
    of the evidence is usable, and the chapter; then how many comparisons still wait for runs."""
    from covid_lib.report.judge import CLAIM_CHAPTERS, read_verdicts
    from covid_lib.report.sensitivity import rests_on_collapse_rule

    data = read_verdicts() if data is None else data
    if not data:
        return "*No verdicts judged yet: run `python -m covid_lib book judge`.*"
    last = list(data["scales"])[-1]
    lines = ["| the claim, as a question | in our public data | deciding difference [95% interval] | comparisons "
             "usable | chapter |", "|---|---|---|---|---|"]
    waiting = 0
    for claim, question in QUESTIONS.items():
        scale = _scale(data, claim)
        d = data["scales"][scale]["claims"][claim]
        reason = why(d)
        answer = ANSWERS.get(d["outcome"], d["outcome"]) + (f" ({reason})" if reason else "")
        if scale != last:
            answer += f"; at {SCALE_WORDS.get(scale, scale)} of pre-training, the only scale judged so far"
        other = rests_on_collapse_rule(data, scale, claim)
        if other:
            answer += (f". *Fragile:* keeping the models that gave every test image the same answer at 0.5 but "
                       f"still ranked the images makes the answer \"{SHORT_ANSWERS.get(other, other)}\"")
        number = "–" if not _usable(d) else f"{d['estimate']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"
        chapter = CLAIM_CHAPTERS.get(claim, "")
        waiting += data["scales"][last]["claims"][claim].get("left_out_reasons", {}).get("missing", 0)
        lines.append(f"| **{claim}.** {question} | {answer} | {number} | {evidence(d)} | "
                     + (f"{{doc}}`{chapter[:2]} <chapters/{chapter}>`" if chapter else "") + " |")
    lines += ["", f"Read at the paper's pre-training scale ({SCALE_WORDS.get(last, last)}), under protocol "
              f"`{data['protocol_hash']}`. The differences are in AUC, except C4's, in balanced accuracy: how much "
              "better the trained encoder's features tell the collection apart than the diagnosis, beyond what an "
              "untrained encoder's features do. A model "
              "that did not learn, or that gave every test image the same answer (collapsed), is left out and "
              "counted, never averaged in. "
              + (f"**Provisional:** {waiting} comparisons still wait for runs that need a processor with native "
                 "bf16 or a GPU; the answers of their claims can still change." if waiting
                 else "Every planned comparison has its runs.")]
    return "\n".join(lines)
