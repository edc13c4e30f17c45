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

#: The findings beyond the paper that the book decides under protocol version 2
#: (:data:`covid_lib.analysis.protocol.FINDINGS`), as their rules word what "reproduced" means.
FINDING_CLAIMS: dict[str, str] = {
    "F1": "A model does worse on sources it never saw: on the same test patients, the model trained on their "
          "sources scores a higher AUC than the model of the same variant that never saw them (Ben Ahmed et al. "
          "2021, Fig. 4).",
    "F2": "Borrowing ChestXRay's COVID- images adds a metadata shortcut: metadata alone (view, age, sex, file format, "
          "image size) separate CORDA&ChestXRay's labels better than CORDA's.",
    "F3": "A corner mark planted on the COVID+ training images is still read by a ResNet-18 trained through the "
          "paper's pre-processing chain.",
    "F4": "The models' COVID+ saliency falls on the lungs more than an even spread would put it.",
    "F5": "Fine-tuning organises the encoder's latent map more by COVID label, net of its organisation by source "
          "(the KTH report: the fine-tuned map 'clusters the diseases better').",
}
#: The findings in a few words, for the verdicts-at-a-glance table.
SHORT_FINDINGS: dict[str, str] = {
    "F1": "unseen sources cost AUC, on the same patients",
    "F2": "borrowed ChestXRay images add a metadata shortcut",
    "F3": "a planted corner mark survives the chain",
    "F4": "saliency falls on the lungs",
    "F5": "fine-tuning organises the latent map by label",
}


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict.

    Attributes:
        claim: ``C1`` ... ``C6`` (a key of :data:`CLAIMS`) or a finding ``F1`` ... ``F5``
            (:data:`FINDING_CLAIMS`).
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
        if self.claim not in CLAIMS and self.claim not in FINDING_CLAIMS:
            raise ValueError(f"unknown claim {self.claim!r}; choose from {', '.join([*CLAIMS, *FINDING_CLAIMS])}")
