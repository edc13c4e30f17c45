"""The claims of Tartaglione et al. 2020 (Sec. IV) that the book tests, and the :class:`Verdict`
record a chapter shows for one of them.

The protocol (:mod:`covid_lib.analysis.protocol`) decides each claim;
:func:`covid_lib.report.judge.protocol_verdict` turns its decision into a :class:`Verdict` for the
chapter's answer box. A verdict is one of :data:`VERDICTS` and always names what decides it and
what in our data differs from the paper's.

Example:
    >>> v = Verdict("C5", "near-perfect on its own 15 images, fails elsewhere", "inconclusive",
    ...             "AUC 1.00 [0.78, 1.00] on 15 images", "cohen stand-in", "07_small_test")
    >>> v.verdict
    'inconclusive'
"""

from __future__ import annotations

from dataclasses import dataclass

VERDICTS = ("reproduced", "not reproduced", "no detectable effect", "inconclusive")

#: The six claims of the paper tested by the book (issue text; paper Sec. IV-A to IV-E).
CLAIMS: dict[str, str] = {
    "C1": "Augmenting COVID- from another dataset gives high scores on that composition's own test set and "
          "collapses on the others (Table II diagonal against off-diagonal).",
    "C2": "Pre-training the encoder (ChestXRay, RSNA) raises specificity.",
    "C3": "ResNet-50 is not better than ResNet-18, and Conv8 is not better either (Table III, Sec. IV-D).",
    "C4": "Encoder features cluster by source, not by label (Fig. 3, Sec. IV-C).",
    "C5": "A model trained on COVID-ChestXRay is near-perfect on its own 15-image test and fails elsewhere "
          "(Table IV, Sec. IV-E).",
    "C6": "Without the pre-processing chain, cross-dataset results get worse (Sec. IV-C: BA 0.73 / DOR 8.31 "
          "against 0.91 / 122.67).",
}

#: The claims in a few words, for the verdicts-at-a-glance table.
SHORT_CLAIMS: dict[str, str] = {
    "C1": "borrowed COVID− data: high on its own test, collapses elsewhere",
    "C2": "pre-training raises specificity",
    "C3": "deeper (ResNet-50) or lighter (Conv8) is not better",
    "C4": "features cluster by source, not by label",
    "C5": "near-perfect on a 15-image test, fails elsewhere",
    "C6": "without the pre-processing chain, cross-dataset results get worse",
}


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict.

    Attributes:
        claim: ``C1`` ... ``C6`` (a key of :data:`CLAIMS`).
        statement: the claim in one line (default: :data:`CLAIMS`).
        verdict: one of :data:`VERDICTS`.
        deciding: the interval or paired test that decides it, with its numbers.
        differs: what in our data or recipe differs from the paper's, as it bears on this claim.
        evidence: the chapter (file stem, optionally ``#anchor``) that shows the evidence.
    """

    claim: str
    statement: str
    verdict: str
    deciding: str
    differs: str
    evidence: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.claim not in CLAIMS:
            raise ValueError(f"unknown claim {self.claim!r}; choose from {', '.join(CLAIMS)}")
