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

#: Bump when a rule changes; the hash changes with any field anyway.
PROTOCOL_VERSION = 1
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
    if n_used < MIN_PAIRS or (total and n_left_out / total > MAX_LEFT_OUT_SHARE) or not (low == low and high == high):
        outcome = "inconclusive"
        if n_used < MIN_PAIRS:
            reason = f"fewer than {MIN_PAIRS} usable comparisons decide nothing"
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
    return (f"{outcomes}. Always inconclusive with fewer than {MIN_PAIRS} usable comparisons or more than "
            f"{MAX_LEFT_OUT_SHARE:.0%} of them left out.")


def protocol_dict() -> dict:
    """Everything the protocol fixes, as plain data (what :func:`protocol_hash` hashes)."""
    constants = {"version": PROTOCOL_VERSION, "alpha": ALPHA, "power": POWER, "n_boot": N_BOOT,
                 "boot_seed": BOOT_SEED, "min_pairs": MIN_PAIRS, "max_left_out_share": MAX_LEFT_OUT_SHARE,
                 "collapse_threshold": COLLAPSE_THRESHOLD, "collapse_min_spread": COLLAPSE_MIN_SPREAD,
                 "did_not_learn_val_auc": DID_NOT_LEARN_VAL_AUC}
    return {"constants": constants, "claims": {k: asdict(v) for k, v in PROTOCOL.items()}}


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
    for r in PROTOCOL.values():
        lines += [f"## {r.claim} ({r.section})", "",
                  f"- **Decided by:** {r.models} (grids: {', '.join(f'`{g}`' for g in r.grids)}).",
                  f"- **Estimand:** {r.estimand}.", f"- **Control:** {r.control}.",
                  f"- **Rule ({r.kind}):** {rule_text(r)}"]
        if r.secondary:
            lines.append(f"- **Reported beside, never deciding:** {'; '.join(r.secondary)}.")
        if not r.evaluated:
            lines.append("- **Not yet evaluated by the library under this protocol:** its verdict is the "
                         "chapter's, marked as such on the verdicts page.")
        lines.append("")
    return "\n".join(lines)
