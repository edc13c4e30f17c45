"""The decision protocol: for each claim, the runs that decide it, the estimand, the test, the unit
of resampling, the control, and symmetric rules, fixed before the runs they judge (issue 16).

Everything a verdict needs is declared here and nowhere else: the book's protocol page
(``book/protocol.md``) and the rule a chapter prints before its numbers are *generated* from
:data:`PROTOCOL` (:func:`rule_text`, :func:`protocol_markdown`), and :func:`decide` applies the same
fields, so text and code cannot differ. :func:`protocol_hash` (sha256 of the canonical JSON of
:data:`PROTOCOL` and the constants) goes into every verdict; ``book check`` fails when the
committed page was generated from another protocol.

The claims are those of Tartaglione et al. 2020 (Sec. IV; :data:`covid_lib.analysis.verdicts.CLAIMS`):
C1 Table II (Sec. IV-A), C2 pre-training and specificity (Sec. IV-A), C3 depth and Conv8
(Sec. IV-D), C4 features by source (Fig. 3, Sec. IV-C), C5 the 15-image test (Table IV,
Sec. IV-E), C6 the pre-processing chain (Sec. IV-C).

Outcomes (:data:`OUTCOMES`), for a claim that predicts a positive difference ("directional"):

- ``reproduced``: the 95% interval of the pooled estimate lies wholly above 0;
- ``not reproduced``: it lies wholly below 0 (the opposite holds);
- ``no detectable effect``: it includes 0 and excludes every effect as large as the minimum
  detectable effect (MDE): no effect larger than the MDE, which is not the same as no effect;
- ``inconclusive``: it includes 0 and reaches the MDE, or too few models learned.

For a claim that predicts *no* improvement ("null", C3: bigger is not better), with the margin
``margin`` declared here: ``reproduced`` when the interval lies wholly below the margin, ``not
reproduced`` when wholly above it, ``inconclusive`` otherwise. The MDE is shown beside every
verdict: at 80% power and a two-sided 5% level, ``MDE = (z_0.975 + z_0.80) * SE``, with ``SE`` the
standard deviation of the patient-cluster bootstrap replicates of the pooled estimate (the
bootstrap is the simulation from the data, patients as the unit).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from scipy.stats import norm

#: Bump when a rule changes or one is added; the hash changes with any field anyway. Version 2 adds
#: the findings beyond the paper (:data:`FINDINGS`) and leaves C1-C6 as version 1 fixed them.
PROTOCOL_VERSION = 2
#: The hash of each earlier version, by which its rules are dated (:func:`rule_version_hash`): the
#: first commit of ``book/protocol.md`` that carries a version's hash is when its rules were fixed.
VERSION_HASHES = {1: "7e154dee72f6"}
ALPHA = 0.05
POWER = 0.80
N_BOOT = 2000
BOOT_SEED = 0
#: Fewer usable paired comparisons than this decide nothing (inconclusive).
MIN_PAIRS = 3
#: More than this share of a claim's comparisons left out (a model did not learn or collapsed):
#: inconclusive, whatever the interval.
MAX_LEFT_OUT_SHARE = 0.5
#: A model is "collapsed" when its own-test scores all fall on one side of this threshold or their
#: 5-95% range is under :data:`COLLAPSE_MIN_SPREAD` (:func:`covid_lib.metrics.collapse_status`).
from covid_lib.metrics import COLLAPSE_MIN_SPREAD, COLLAPSE_THRESHOLD  # noqa: E402  (one home: metrics)
#: Did not learn: best validation AUC under this (recorded by the training run).
DID_NOT_LEARN_VAL_AUC = 0.6

OUTCOMES = ("reproduced", "not reproduced", "no detectable effect", "inconclusive")
KINDS = ("directional", "null")

_UNIT = ("patients: one set of bootstrap draws over every test patient of the claim, shared by all its "
         "models, test sets and seeds, so nested test sets (CORDA's test inside each CORDA&X test) and "
         "the same patients seen by several models are resampled together")
_TEST = (f"paired patient-cluster bootstrap ({N_BOOT} replicates, seed {BOOT_SEED}), {100 * (1 - ALPHA):.0f}% "
         f"percentile interval of the pooled estimate")
_MULTIPLICITY = ("one pooled estimate per claim (the mean over its cells and seeds) decides; per-cell "
                 "estimates are shown, not counted as votes")
_EXCLUSION = ("a comparison whose models did not learn (best validation AUC < "
              f"{DID_NOT_LEARN_VAL_AUC}) or collapsed (own-test scores all on one side of "
              f"{COLLAPSE_THRESHOLD}, or a 5-95% range < {COLLAPSE_MIN_SPREAD:g}) is left out, and the count "
              "is printed beside the verdict")


@dataclass(frozen=True)
class ClaimRule:
    """The protocol of one claim.

    Attributes:
        claim: ``C1`` ... ``C6``.
        section: the paper's section or table.
        kind: ``directional`` (the claim predicts a difference above 0) or ``null`` (it predicts
            no improvement beyond ``margin``).
        grids: the named grids (:data:`covid_lib.grid.GRIDS`) whose runs decide.
        models: which models of those grids, and their seeds.
        estimand: what is estimated, as a difference "a minus b".
        control: the contrast that tells the claim's effect from what the data give anyway.
        margin: for ``null`` claims, the largest difference still called "not better".
        secondary: reported beside the verdict, never deciding.
        evaluated: False while the library has no estimator for the claim yet: its verdict is then
            the chapter's, marked as not yet under this protocol.
        since: the protocol version that fixed this rule; a rule is dated by that version's commit
            (:data:`VERSION_HASHES`), and a changed rule must say a newer version (a test holds the
            digests of the rules each version fixed).
        paper: whose claim or finding it is.
        min_used: fewer usable comparisons than this decide nothing (:data:`MIN_PAIRS` unless the
            design has one comparison, a single model against its control).
    """

    claim: str
    section: str
    kind: str
    grids: tuple[str, ...]
    models: str
    estimand: str
    control: str
    margin: float = 0.0
    secondary: tuple[str, ...] = ()
    evaluated: bool = True
    since: int = 1
    paper: str = "Tartaglione et al. 2020"
    min_used: int = MIN_PAIRS
    test: str = _TEST
    unit: str = _UNIT
    multiplicity: str = _MULTIPLICITY
    exclusion: str = _EXCLUSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "null" and self.margin <= 0:
            raise ValueError("a null claim needs a positive margin")


PROTOCOL: dict[str, ClaimRule] = {r.claim: r for r in (
    ClaimRule(
        "C1", "Table II, Sec. IV-A", "directional", ("table2_full",),
        "ResNet-18 from scratch, pre-trained on ChestXRay (the whole set, kermany_full) and on RSNA (nih), "
        "trained on each augmented composition (CORDA&ChestXRay, CORDA&RSNA, CORDA&COVID-ChestXRay), "
        "seeds 0-4; each against the CORDA-only model of the same pre-training and seed",
        "gap(augmented model) minus gap(CORDA-only model), where gap = AUC on the augmented composition's "
        "own test set minus the mean AUC on the other three Table II test sets, on the same test images",
        "the CORDA-only model's gap on the same test sets and resamples: a model that borrowed no COVID- "
        "images from another dataset; a positive own-minus-other gap that it shares is the test sets' "
        "difficulty, not the borrowed dataset",
        secondary=("gap per augmented composition", "the uncontrolled gap (the paper's reading)"),
    ),
    ClaimRule(
        "C2", "Sec. IV-A (Table II rows)", "directional", ("table2_full",),
        "ResNet-18 pre-trained on ChestXRay (kermany_full) and on RSNA (nih), each against the model "
        "trained from scratch on the same composition with the same seed; the five compositions, seeds 0-4",
        "AUC of the pre-trained model minus AUC of the model from scratch, on the composition's own test set "
        "(threshold-free: the paper's specificity gain at 'very similar sensitivity' is a gain of the ROC "
        "curve)",
        "the model trained from scratch on the same images and seed",
        secondary=("specificity difference at the paper's threshold 0.5",
                   "specificity difference at a sensitivity matched to 0.90 on the test set",
                   "each pre-training separately"),
    ),
    ClaimRule(
        "C3", "Table III and Sec. IV-D", "null", ("table2_full", "table3_full", "conv8_full"),
        "ResNet-50 against ResNet-18 (both pre-trained on ChestXRay = kermany_full, and both on RSNA = "
        "nih), and Conv8 against ResNet-18 (both from scratch, and both pre-trained on kermany_full), "
        "same composition, pre-training and seed; the five compositions, seeds 0-2",
        "AUC of the deeper (ResNet-50) or the small (Conv8) model minus AUC of ResNet-18, over every test "
        "set of the Table II matrix; the claim holds when both contrasts hold",
        "ResNet-18 trained on the same images with the same pre-training and seed",
        margin=0.05,
        secondary=("ResNet-50 and Conv8 contrasts separately", "per composition and test set"),
    ),
    ClaimRule(
        "C4", "Fig. 3, Sec. IV-C", "directional", ("table2_full",),
        "the encoder of ResNet-18 pre-trained on kermany_full and fine-tuned on CORDA&ChestXRay, seeds 0-4, "
        "on the test images of the study's sets",
        "margin(fine-tuned encoder) minus margin(the same architecture randomly initialised with the same "
        "seed), where margin = balanced accuracy of reading the source (ChestXRay against CORDA, COVID- "
        "images) minus balanced accuracy of reading the label (COVID+ against COVID- within CORDA) off the "
        "encoder's features: leave-one-patient-out 10-nearest-neighbour votes on 50 principal components, "
        "through the run's own chain and normalisation",
        "the randomly initialised encoder (what the architecture and the chain give before any training), "
        "with raw pixels of the chain's output reported beside",
        secondary=("source and label balanced accuracy per encoder, against chance 0.5",
                   "the margin of raw pixels"),
    ),
    ClaimRule(
        "C5", "Table IV, Sec. IV-E", "directional", ("table2_full",),
        "ResNet-18 pre-trained on ChestXRay (kermany_full) and trained on COVID-ChestXRay, as Table IV, "
        "seeds 0-4",
        "AUC on its own fixed 15-image test minus AUC on the CORDA test set",
        "the same model's AUC on all of its test patients in place of the 15 images: how much of the "
        "15-image number is the small test set",
        secondary=("balanced accuracy on the 15 images, per seed", "a perfect 15/15 has a Wilson interval "
                   "of [0.80, 1.00]"),
    ),
    ClaimRule(
        "C6", "Sec. IV-C (the pre-processing ablation)", "directional", ("ablation_full", "table2_full"),
        "ResNet-18 with the paper's chain against the same model without any pre-processing (pipeline "
        "none), from scratch and pre-trained on kermany_full, trained on CORDA and on CORDA&ChestXRay, "
        "seeds 0-2",
        "AUC with the chain minus AUC without it, on the off-diagonal test sets (the Table II test sets "
        "other than the model's own)",
        "the same difference on the model's own test set: a chain that helps everywhere is not specific "
        "to cross-dataset results",
    ),
)}


#: The findings beyond the paper that carry a conclusion in the book (issue 16, item 1), fixed by
#: protocol version 2. They were written after the seed-0 records they first judge were read: a
#: verdict on those records is exploratory, and the page says how many of the judged records were
#: made after the rule (:func:`covid_lib.report.judge.rule_commit_time`). "reproduced" means the
#: finding holds as worded in ``estimand``; "not reproduced" that the opposite holds.
FINDINGS: dict[str, ClaimRule] = {r.claim: r for r in (
    ClaimRule(
        "F1", "Fig. 4 and Table 4 (seen and unseen sources)", "directional", ("unseen",),
        "ResNet-18 of the unseen grid before any adaptation, seed 0, three variants (from scratch, pre-trained "
        "on ChestXRay and fine-tuned, pre-trained and frozen), on the complementary source splits: U1 (Hannover "
        "COVID+ / NIH COVID-), U2 (Cohen COVID+ / Kermany COVID-) and U3 (Cohen COVID+ / Cohen COVID-)",
        "AUC on a pair of sources' test patients of the model trained on those sources minus the AUC on the same "
        "patients of the model of the same variant that never saw them (U2 minus U1 on Cohen+/Kermany-; U1 minus "
        "U2 and U1 minus U3 on Hannover+/NIH-): what not having seen a source costs",
        "the same test patients scored by both models (paired): a drop that comes from the unseen test set "
        "being harder is shared by both models and cancels; the within-model drop seen minus unseen (Ben Ahmed "
        "et al.'s reading, unpaired) is reported beside",
        secondary=("the within-model drop, AUC(seen) minus AUC(unseen), per model",
                   "each pair of models separately"),
        since=2, paper="Ben Ahmed et al. 2021",
    ),
    ClaimRule(
        "F2", "chapter 03, the composition's confounders", "directional", (),
        "the metadata-only baseline of chapter 03 (logistic regression on view, age, sex, file format and "
        "image size; no year and no missing-value flags, which name the label or the source by construction), "
        "trained on each composition's training and validation images, seed 0",
        "AUC of the baseline trained on CORDA&ChestXRay on its own test set minus AUC of the baseline trained "
        "on CORDA on CORDA's own test set: the shortcut that borrowing ChestXRay's COVID- images (children, "
        "another view mix and file format) adds to the metadata",
        "the CORDA-only baseline, which borrowed no source: what the metadata give anyway; its test patients "
        "are nested in CORDA&ChestXRay's and are resampled jointly",
        secondary=("the same for CORDA&RSNA and CORDA&COVID-ChestXRay", "the baseline with the year, labelled "
                   "a by-construction proxy"),
        test=f"patient-cluster bootstrap ({N_BOOT} replicates, seed {BOOT_SEED}) over the union of both test sets, "
             f"{100 * (1 - ALPHA):.0f}% percentile interval",
        min_used=1, since=2, paper="ours, after Ben Ahmed et al. 2021 (confounders)",
    ),
    ClaimRule(
        "F3", "chapter 10, a planted shortcut through the chain", "directional", ("planted",),
        "ResNet-18 from scratch on CORDA with a corner mark planted on the COVID+ training and validation "
        "images, through the paper's chain, seed 0",
        "AUC on the test images with the mark on the COVID+ images minus AUC on the same images with the mark "
        "moved onto the COVID- images (paired, same patients): how much the model reads the mark after the "
        "chain",
        "the same contrast for the model trained without the chain (pipeline none), which shows how much of "
        "the mark can be learnt at all; marked minus unmarked reported beside",
        secondary=("marked minus unmarked", "the gamma mark", "the model without the chain"),
        min_used=1, since=2, paper="ours, after DeGrave et al. 2021",
    ),
    ClaimRule(
        "F4", "chapter 12, saliency", "directional", ("unseen",),
        "the ResNet-18 models chapter 12 maps, with the first saliency method that finds the planted corner "
        "mark where the model uses it (the planted-mark check); COVID+ test images of the sources each model "
        "was trained on",
        "the share of positive saliency inside the lung mask minus the lung's share of the image (the excess "
        "over an even spread), mean over models and images, patients resampled",
        "an even spread of saliency (excess 0) and the planted-mark check: with no method that passes it, the "
        "finding is not evaluated; maps with no positive mass are counted as not measurable",
        secondary=("the same on unseen sources", "per model"),
        test=f"patient-cluster bootstrap ({N_BOOT} replicates, seed {BOOT_SEED}) of the mean excess, "
             f"{100 * (1 - ALPHA):.0f}% percentile interval",
        since=2, paper="DeGrave et al. 2021; the KTH report (CAM)",
    ),
    ClaimRule(
        "F5", "chapter 13, the latent landscape", "directional", (),
        "the encoder of ResNet-18 pre-trained on ChestXRay and fine-tuned on CORDA&ChestXRay, seed 0, against "
        "the same encoder before fine-tuning, each mapped by a self-organising map of the test images "
        "(chapter 13)",
        "the change with fine-tuning of (excess purity by COVID label minus excess purity by source): the "
        "report's 'the fine-tuned map clusters the diseases better', net of what fine-tuning did to the "
        "source's organisation",
        "the encoder before fine-tuning on the same images (paired), and excess purity measured against a "
        "permutation of each map",
        secondary=("excess purity by label, source and age group per encoder", "the encoder from scratch"),
        test=f"patient-cluster bootstrap ({N_BOOT} replicates, seed {BOOT_SEED}) of the paired change, "
             f"{100 * (1 - ALPHA):.0f}% percentile interval",
        min_used=1, since=2, paper="the KTH report (self-organising maps)",
    ),
)}


def mde(se: float, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect of a two-sided level-``alpha`` test with standard error ``se`` at
    ``power``: ``(z_{1-alpha/2} + z_power) * se`` (normal approximation)."""
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


@dataclass(frozen=True)
class Decision:
    """The outcome of a claim under its rule, with the numbers that decided it."""

    claim: str
    outcome: str
    estimate: float
    low: float
    high: float
    mde: float
    n_used: int
    n_left_out: int
    reason: str
    details: dict = field(default_factory=dict)


def decide(rule: ClaimRule, estimate: float, low: float, high: float, se: float, *, n_used: int,
           n_left_out: int) -> Decision:
    """Apply ``rule`` to a pooled estimate and its interval (see the module docstring)."""
    m = mde(se)
    total = n_used + n_left_out
    if n_used < rule.min_used or (total and n_left_out / total > MAX_LEFT_OUT_SHARE) or not (low == low and high == high):
        outcome = "inconclusive"
        if n_used < rule.min_used:
            reason = f"fewer than {rule.min_used} usable comparison(s) decide nothing"
        elif total and n_left_out / total > MAX_LEFT_OUT_SHARE:
            reason = f"more than {MAX_LEFT_OUT_SHARE:.0%} of the comparisons left out decide nothing"
        else:
            reason = "no interval"
    elif rule.kind == "directional":
        if low > 0:
            outcome, reason = "reproduced", "the interval lies above 0"
        elif high < 0:
            outcome, reason = "not reproduced", "the interval lies below 0: the opposite holds"
        elif high < m:
            outcome, reason = "no detectable effect", f"the interval includes 0 and excludes the MDE {m:.3f}"
        else:
            outcome, reason = "inconclusive", f"the interval includes 0 and reaches the MDE {m:.3f}"
    else:
        if high < rule.margin:
            outcome, reason = "reproduced", f"the interval lies below the margin {rule.margin:+.2f}"
        elif low > rule.margin:
            outcome, reason = "not reproduced", f"the interval lies above the margin {rule.margin:+.2f}"
        else:
            outcome, reason = "inconclusive", f"the interval includes the margin {rule.margin:+.2f}"
    return Decision(rule.claim, outcome, estimate, low, high, m, n_used, n_left_out, reason)


def combine(claim: str, parts: dict[str, Decision]) -> Decision:
    """One claim decided by several contrasts (C3: ResNet-50 and Conv8, each against ResNet-18):
    reproduced when every part is, not reproduced when any part is, inconclusive otherwise. The
    numbers shown are those of the first part that is not reproduced, else of the first part."""
    outcomes = [d.outcome for d in parts.values()]
    if all(o == "reproduced" for o in outcomes):
        outcome = "reproduced"
    elif "not reproduced" in outcomes:
        outcome = "not reproduced"
    else:
        outcome = "inconclusive"
    lead = next((d for d in parts.values() if d.outcome == "not reproduced"), next(iter(parts.values())))
    reason = "; ".join(f"{name}: {d.outcome} ({d.reason})" for name, d in parts.items())
    return Decision(claim, outcome, lead.estimate, lead.low, lead.high, lead.mde,
                    sum(d.n_used for d in parts.values()), sum(d.n_left_out for d in parts.values()), reason,
                    {"parts": {name: asdict(d) for name, d in parts.items()}})


def rule_text(rule: ClaimRule) -> str:
    """The decision rule in words, generated from ``rule`` and the constants used by :func:`decide`."""
    level = f"{100 * (1 - ALPHA):.0f}%"
    if rule.kind == "directional":
        outcomes = (f"**reproduced** when the {level} interval of the pooled estimate lies above 0; **not "
                    f"reproduced** when it lies below 0; **no detectable effect** when it includes 0 and stays "
                    f"below the minimum detectable effect (MDE, {POWER:.0%} power); **inconclusive** otherwise")
    else:
        outcomes = (f"**reproduced** when the {level} interval of the pooled estimate lies below the margin "
                    f"{rule.margin:+.2f}; **not reproduced** when it lies above it; **inconclusive** otherwise")
    fewer = (f"fewer than {rule.min_used} usable comparisons" if rule.min_used > 1 else
             "no usable comparison (its model did not learn, collapsed or has no record)")
    return (f"{outcomes}. Always inconclusive with {fewer} or more than "
            f"{MAX_LEFT_OUT_SHARE:.0%} of them left out.")


def protocol_dict() -> dict:
    """Everything the protocol fixes, as plain data (what :func:`protocol_hash` hashes)."""
    constants = {"version": PROTOCOL_VERSION, "alpha": ALPHA, "power": POWER, "n_boot": N_BOOT,
                 "boot_seed": BOOT_SEED, "min_pairs": MIN_PAIRS, "max_left_out_share": MAX_LEFT_OUT_SHARE,
                 "collapse_threshold": COLLAPSE_THRESHOLD, "collapse_min_spread": COLLAPSE_MIN_SPREAD,
                 "did_not_learn_val_auc": DID_NOT_LEARN_VAL_AUC}
    return {"constants": constants, "claims": {k: asdict(v) for k, v in PROTOCOL.items()},
            "findings": {k: asdict(v) for k, v in FINDINGS.items()}}


def rule(claim: str) -> ClaimRule:
    """The rule of a claim (C1-C6) or a finding beyond the paper (F1-F5)."""
    if claim in PROTOCOL:
        return PROTOCOL[claim]
    if claim in FINDINGS:
        return FINDINGS[claim]
    raise KeyError(f"no rule {claim!r}: claims {', '.join(PROTOCOL)}, findings {', '.join(FINDINGS)}")


def rule_digest(rule: ClaimRule) -> str:
    """12 hex digits of sha256 over one rule and the constants :func:`decide` applies to it (not the
    version number): what a version fixed for this claim, so a later version can keep it unchanged."""
    constants = {k: v for k, v in protocol_dict()["constants"].items() if k != "version"}
    fixed = {k: v for k, v in asdict(rule).items() if k != "evaluated"}  # bookkeeping, not a rule
    blob = json.dumps({"rule": fixed, "constants": constants}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def rule_version_hash(rule: ClaimRule) -> str:
    """The protocol hash of the version that fixed ``rule`` (its commit dates the rule)."""
    return VERSION_HASHES.get(rule.since) or protocol_hash()


def protocol_hash() -> str:
    """12 hex digits of sha256 over :func:`protocol_dict` as sorted JSON."""
    blob = json.dumps(protocol_dict(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def protocol_markdown(committed: str | None = None) -> str:
    """The protocol page's generated block: constants, then one section per claim."""
    lines = [f"Protocol version {PROTOCOL_VERSION}, hash `{protocol_hash()}`"
             + (f", committed {committed}" if committed else "") + ".", "",
             f"- **Test:** {_TEST}.", f"- **Unit of resampling:** {_UNIT}.",
             f"- **Multiplicity:** {_MULTIPLICITY}.", f"- **Models left out:** {_EXCLUSION}.",
             f"- **Minimum detectable effect:** (z(1-{ALPHA}/2) + z({POWER})) x the bootstrap standard error of "
             "the pooled estimate, shown beside every verdict.", ""]
    for r in (*PROTOCOL.values(), *FINDINGS.values()):
        if r.claim == next(iter(FINDINGS)):
            lines += ["## Findings beyond the paper", "",
                      f"Fixed by version {r.since}, after the seed-0 records they first judge had been read: a "
                      "verdict on those records is exploratory (the verdicts page counts the judged records made "
                      "after the rule). *Reproduced* means the finding holds as the estimand words it; *not "
                      "reproduced*, that the opposite holds.", ""]
        grids = f" (grids: {', '.join(f'`{g}`' for g in r.grids)})" if r.grids else ""
        lines += [f"## {r.claim} ({r.section})", "", f"- **Whose:** {r.paper}; fixed by protocol version {r.since}.",
                  f"- **Decided by:** {r.models}{grids}.",
                  f"- **Estimand:** {r.estimand}.", f"- **Control:** {r.control}."]
        if r.test != _TEST:
            lines.append(f"- **Test:** {r.test}.")
        lines.append(f"- **Rule ({r.kind}):** {rule_text(r)}")
        if r.secondary:
            lines.append(f"- **Reported beside, never deciding:** {'; '.join(r.secondary)}.")
        if not r.evaluated:
            lines.append("- **Not yet evaluated by the library under this protocol:** its verdict is the "
                         "chapter's, marked as such on the verdicts page.")
        lines.append("")
    return "\n".join(lines)
