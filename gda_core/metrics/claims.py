"""The paper's rankings, checked on your data: supported, contradicted, no meaningful difference, or
cannot tell.

"Beyond the Generative Learning Trilemma" (arXiv 2504.10555; summary in shared/seeds/004) ranks three
families: diffusion > GAN > VAE on fidelity and on utility, diffusion highest on diversity,
GAN > diffusion > VAE on privacy, VAE > GAN > diffusion on sampling speed. It measures robustness
(DeepFool) but ranks no family on it, so robustness is shown, not checked.

Each claim is a reading of two or three pairs, decided together (``verdicts.decide``: Holm over the
pairs, TOST against ``verdicts.MARGINS``). Supported: every pair clearly in the claimed order.
Contradicted: some pair clearly reversed after the correction, always said with the training budget
it was measured at. No meaningful difference: no reversal, and some pair shown within the margin.

Who the claim is about: with one trained model per family the pairs compare checkpoints, not
families (a second training run of the same recipe can land elsewhere); the claim then reads
"cannot tell: one trained model per family" and the checkpoint comparison is shown beside it. A
family verdict needs >= ``MIN_RUNS`` training runs per family (``evaluate --train-seeds``, the
study's per-seed generators, or several reports of separately trained checkpoints). Sampling speed
is the exception: it is set by the network and the sampler, not by what the weights learned.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .intervals import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Estimate, over_replicates
from .verdicts import A_BETTER, B_BETTER, EQUIVALENT, Verdict, comparison, decide, margin_for, margins_text

# Which registered families stand for the paper's three model kinds. Flow matching and the
# hybrids are left out: the paper makes no claim about them.
PAPER_GROUPS = {"vae": "VAE", "gan": "GAN", "stylegan2": "GAN", "ddpm": "diffusion", "ldm": "diffusion"}

NO_DIFFERENCE = "no meaningful difference"
NOT_CLAIMED = "not claimed"
MIN_RUNS = 3
ONE_MODEL = "cannot tell: one trained model per family"
#: Axes whose figure does not depend on what the weights learned: one checkpoint speaks for its family.
TRAINING_FREE_AXES = frozenset({"speed"})


@dataclass(frozen=True)
class PaperClaim:
    """``pairs``: (higher, lower) group pairs the paper asserts; empty for an axis it ranks no one on."""

    axis: str
    text: str
    groups: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]


def _order(axis: str, a: str, b: str, c: str) -> PaperClaim:
    return PaperClaim(axis, f"{a} > {b} > {c} on {axis}", (a, b, c), ((a, b), (b, c), (a, c)))


PAPER_CLAIMS: tuple[PaperClaim, ...] = (
    _order("fidelity", "diffusion", "GAN", "VAE"),
    PaperClaim("diversity", "diffusion highest on diversity", ("diffusion", "GAN", "VAE"), (("diffusion", "GAN"), ("diffusion", "VAE"))),
    _order("utility", "diffusion", "GAN", "VAE"),
    PaperClaim("robustness", "robustness (the paper ranks no family)", ("diffusion", "GAN", "VAE"), ()),
    _order("privacy", "GAN", "diffusion", "VAE"),
    _order("speed", "VAE", "GAN", "diffusion"),
)
CLAIM_AXES = tuple(c.axis for c in PAPER_CLAIMS)

#: What the claims' words mean, for the UI and the exports.
CLAIMS_NOTE = (
    "Diffusion > GAN > VAE on fidelity and utility, diffusion highest on diversity, GAN > diffusion > VAE on privacy, "
    "VAE > GAN > diffusion on speed (arXiv 2504.10555; the paper ranks no family on robustness, so it is shown, not checked). "
    "The pairs of each claim are corrected together (Holm). \"No meaningful difference\" means a difference shown to lie within "
    f"the equivalence margin ({margins_text(CLAIM_AXES)} in radar-score units; on speed 0.05 is a factor 1.8 in images per second); "
    "\"cannot tell\" means neither. "
    f"A claim about families needs at least {MIN_RUNS} training runs per family (evaluate --train-seeds); with one trained model per "
    "family the pairs compare these checkpoints, and the family claim cannot be told."
)


def representatives(families: dict[str, str]) -> dict[str, str]:
    """The first model (in the given order) of each paper group: group -> model name."""
    out: dict[str, str] = {}
    for name, fam in families.items():
        group = PAPER_GROUPS.get(str(fam))
        if group is not None and group not in out:
            out[group] = name
    return out


# A claim on a training-free axis holds or fails at any training budget: "at an unrecorded training budget" (models of
# several budgets pooled, as the study does) would mislead.
SPEED_BUDGET = "at any training budget (sampling speed depends on the architecture and sampler, not on training)"


def budget_text(steps: dict[str, int | None]) -> str:
    """'at 600 steps of training', or per model where they differ, or 'at an unrecorded training budget'."""
    known = {n: s for n, s in steps.items() if s is not None}
    if not known:
        return "at an unrecorded training budget"
    if len(set(known.values())) == 1 and len(known) == len(steps):
        return f"at {next(iter(known.values())):,} steps of training"
    return "at " + ", ".join(f"{s:,} ({n})" if s is not None else f"? ({n})" for n, s in steps.items()) + " steps of training"


def _pair_dict(v: Verdict) -> dict:
    return {**v.to_dict(), "ci": [v.lo, v.hi]}  # at ``level``: Holm's step for this pair


def _claim_verdict(claim: PaperClaim, verdicts: list[Verdict]) -> str:
    if not claim.pairs:
        return NOT_CLAIMED
    if any(v.verdict == B_BETTER for v in verdicts):
        return CONTRADICTED
    if all(v.verdict == A_BETTER for v in verdicts):
        return SUPPORTED
    return NO_DIFFERENCE if any(v.verdict == EQUIVALENT for v in verdicts) else INCONCLUSIVE


def _scope(claim: PaperClaim, names: dict[str, str], runs: dict[str, int]) -> tuple[str, str | None]:
    """('family', None) when the pairs speak for the families, else ('checkpoint', why not)."""
    if claim.axis in TRAINING_FREE_AXES:
        return "family", None
    n = {g: int(runs.get(names[g], 1)) for g in claim.groups}
    if all(k >= MIN_RUNS for k in n.values()):
        return "family", None
    if all(k == 1 for k in n.values()):
        return "checkpoint", ONE_MODEL
    few = ", ".join(f"{g} {k}" for g, k in n.items() if k < MIN_RUNS)
    return "checkpoint", f"cannot tell: fewer than {MIN_RUNS} training runs per family ({few})"


def check_claims(estimates: dict[str, dict[str, Estimate | None]], families: dict[str, str], *, paired: bool = False, where: str = "",
                 runs: dict[str, int] | None = None, steps: dict[str, int | None] | None = None) -> list[dict]:  # fmt: skip
    """One record per paper claim.

    ``estimates``: model name -> axis -> Estimate (higher is better on every axis); ``families``:
    model name -> family; ``paired``: replicates match one to one; ``runs``: model name -> training
    runs its estimates rest on (1 where not given); ``steps``: model name -> training steps.
    Record: ``claim``, ``axis``, ``verdict`` (about the families), ``scope`` ('family' or
    'checkpoint'), ``checkpoint_verdict`` (about the models compared), ``models``, ``runs``,
    ``pairs`` (``Verdict.to_dict`` each), ``budget``, ``reason``."""
    reps, runs, steps = representatives(families), dict(runs or {}), dict(steps or {})
    out = []
    for claim in PAPER_CLAIMS:
        text = claim.text + (f" ({where})" if where else "")
        missing = [g for g in claim.groups if g not in reps]
        base = {"claim": text, "axis": claim.axis, "models": {g: reps.get(g) for g in claim.groups}}
        if missing:
            out.append({**base, "verdict": NOT_CLAIMED if not claim.pairs else INCONCLUSIVE, "scope": None, "checkpoint_verdict": INCONCLUSIVE,
                        "runs": {}, "pairs": [], "budget": "", "reason": f"no {' or '.join(missing)} model in this comparison"})  # fmt: skip
            continue
        names = {g: reps[g] for g in claim.groups}
        pairs = claim.pairs or ((claim.groups[0], claim.groups[1]), (claim.groups[1], claim.groups[2]), (claim.groups[0], claim.groups[2]))
        ests = [(names[a], names[b], estimates[names[a]].get(claim.axis), estimates[names[b]].get(claim.axis)) for a, b in pairs]
        if any(ea is None or eb is None for _, _, ea, eb in ests):
            gone = sorted({n for a, b, ea, eb in ests for n, e in ((a, ea), (b, eb)) if e is None})
            out.append({**base, "verdict": NOT_CLAIMED if not claim.pairs else INCONCLUSIVE, "scope": None, "checkpoint_verdict": INCONCLUSIVE,
                        "runs": {}, "pairs": [], "budget": "", "reason": f"{', '.join(gone)}: {claim.axis} not measured"})  # fmt: skip
            continue
        verdicts = decide([comparison(a, b, claim.axis, ea, eb, paired=paired) for a, b, ea, eb in ests])
        on_models = _claim_verdict(claim, verdicts)
        scope, why = _scope(claim, names, runs)
        verdict = on_models if scope == "family" or on_models == NOT_CLAIMED else INCONCLUSIVE
        budget = SPEED_BUDGET if claim.axis in TRAINING_FREE_AXES else budget_text({names[g]: steps.get(names[g]) for g in claim.groups})
        rec = {**base, "verdict": verdict, "scope": scope, "checkpoint_verdict": on_models, "runs": {g: int(runs.get(names[g], 1)) for g in names},
               "pairs": [_pair_dict(v) for v in verdicts], "budget": budget, "margin": margin_for(claim.axis)}  # fmt: skip
        rec["reason"] = _reason(rec, verdicts, why)
        out.append(rec)
    return out


def _reason(rec: dict, verdicts: list[Verdict], why: str | None) -> str:
    shown = "; ".join(v.short for v in verdicts) + f" (intervals at Holm's level over {len(verdicts)} pairs, margin ±{rec['margin']:g})"
    v = rec["checkpoint_verdict"]
    if v == NOT_CLAIMED:
        head = "measured, not checked"
    elif v == SUPPORTED:
        head = "every pair clearly in the claimed order"
    elif v == CONTRADICTED:
        head = f"clearly reversed after correcting for {len(verdicts)} pairs"
        head = head if rec["scope"] == "family" else f"contradicted {rec['budget']}: {head}"
    elif v == NO_DIFFERENCE:
        head = f"no meaningful difference (within ±{rec['margin']:g}) where the paper claims an order, {rec['budget']}"
    else:
        head = f"cannot tell {rec['budget']}"
    if rec["scope"] == "checkpoint":
        who = " vs ".join(f"checkpoint {n}" for n in rec["models"].values())
        return f"{why}. {who}: {head}: {shown}"
    return f"{head}: {shown}"


# ---------------------------------------------------------------------------------------------
# From evaluation reports
# ---------------------------------------------------------------------------------------------


def _train_seeds(report) -> list:
    seeds = report.provenance.get("train_seeds")
    return list(dict.fromkeys(seeds)) if isinstance(seeds, list) and seeds else []


def training_steps(report) -> int | None:
    """The training steps behind a report: its provenance, else the run folder's config.json."""
    for key in ("train_steps", "training_steps"):
        v = report.provenance.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    run_dir = report.provenance.get("run_dir")
    if not run_dir:
        return None
    try:
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
        v = cfg.get("step", cfg.get("total_steps"))
        return int(v) if isinstance(v, int | float) and math.isfinite(v) else None
    except (OSError, ValueError, AttributeError):
        return None


def _pool(reports: list, names: list[str]) -> tuple[dict, dict, dict, dict]:
    """Per family: the estimates, training-run count, label and steps a claim uses. A report over
    >= 2 training runs speaks for its family; otherwise separately trained checkpoints of one
    family (distinct weights) are pooled as training runs, the mean score of each one replicate."""
    by_family: dict[str, list[tuple[str, object]]] = {}
    for n, r in zip(names, reports, strict=True):
        by_family.setdefault(str(r.provenance.get("family", "")), []).append((n, r))
    estimates, families, runs, steps = {}, {}, {}, {}
    for fam, members in by_family.items():
        best_n, best = max(members, key=lambda m: len(_train_seeds(m[1])))
        # Only checkpoints of one recipe are replicates: the same data and the same training steps.
        recipes: dict = {}
        for n, r in members:
            recipes.setdefault((r.provenance.get("dataset_sha256"), training_steps(r)), {})[str(r.provenance.get("checkpoint_sha256") or n)] = (n, r)
        distinct = list(max(recipes.values(), key=len).values())
        if len(_train_seeds(best)) < 2 and len(distinct) >= 2:
            label = f"{fam} ({len(distinct)} trained checkpoints)"
            estimates[label] = {a: over_replicates([r.scores.get(a) for _, r in distinct if r.scores.get(a) is not None],
                                                   what="separately trained checkpoints") for a in CLAIM_AXES}  # fmt: skip
            families[label], runs[label] = fam, len(distinct)
            got = {training_steps(r) for _, r in distinct}
            steps[label] = got.pop() if len(got) == 1 else None
            continue
        estimates[best_n] = {a: best.estimate(a) for a in CLAIM_AXES}
        families[best_n], runs[best_n], steps[best_n] = fam, max(1, len(_train_seeds(best))), training_steps(best)
    return estimates, families, runs, steps


def claims_from_reports(reports: list, names: list[str]) -> list[dict]:
    """The paper's claims checked on evaluation reports (each axis's score and its interval);
    whether they speak for the families or only for these checkpoints (module docstring)."""
    estimates, families, runs, steps = _pool(reports, names)
    return check_claims(estimates, families, runs=runs, steps=steps)


def claim_sentence(c: dict) -> str:
    word = {SUPPORTED: "Supported", CONTRADICTED: "Contradicted", INCONCLUSIVE: "Cannot tell", NO_DIFFERENCE: "No meaningful difference",
            NOT_CLAIMED: "Not claimed by the paper"}.get(c["verdict"], str(c["verdict"]))  # fmt: skip
    if c["verdict"] == CONTRADICTED and c.get("budget"):
        word = f"Contradicted {c['budget']}"
    return f"{word}: {c['claim']} ({c['reason']})."
