"""The paper's rankings, checked on your data: supported, contradicted or inconclusive.

"Beyond the Generative Learning Trilemma" (arXiv 2504.10555) ranks three families on four axes:
diffusion > GAN > VAE on fidelity and on utility, GAN > diffusion > VAE on privacy, and
VAE > GAN > diffusion on sampling speed. A ranking A > B > C holds here when every pair (A > B,
B > C, A > C) is a difference whose 95 % interval lies above 0 (``intervals.difference``); it is
contradicted when some pair's interval lies below 0; otherwise the data and budget cannot tell.
"""

from __future__ import annotations

from .intervals import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Estimate, difference

# Which registered families stand for the paper's three model kinds. Flow matching and the
# hybrids are left out: the paper makes no claim about them.
PAPER_GROUPS = {"vae": "VAE", "gan": "GAN", "stylegan2": "GAN", "ddpm": "diffusion", "ldm": "diffusion"}

PAPER_CLAIMS: tuple[tuple[str, tuple[str, str, str]], ...] = (
    ("fidelity", ("diffusion", "GAN", "VAE")),
    ("utility", ("diffusion", "GAN", "VAE")),
    ("privacy", ("GAN", "diffusion", "VAE")),
    ("speed", ("VAE", "GAN", "diffusion")),
)


def representatives(families: dict[str, str]) -> dict[str, str]:
    """The first model (in the given order) of each paper group: group -> model name."""
    out: dict[str, str] = {}
    for name, fam in families.items():
        group = PAPER_GROUPS.get(str(fam))
        if group is not None and group not in out:
            out[group] = name
    return out


def _pair(a: str, b: str, ea: Estimate | None, eb: Estimate | None, paired: bool) -> dict:
    if ea is None or eb is None:
        return {"a": a, "b": b, "verdict": INCONCLUSIVE, "delta": None, "ci95": None, "reason": "not measured"}
    d = difference(ea, eb, paired=paired)
    return {"a": a, "b": b, "verdict": d.verdict, "delta": d.delta, "ci95": [d.lo, d.hi]}


def check_claims(estimates: dict[str, dict[str, Estimate | None]], families: dict[str, str], *, paired: bool = False,
                 where: str = "") -> list[dict]:  # fmt: skip
    """One record per paper claim: ``claim`` (text), ``verdict``, the models used, each pair's
    difference and interval. ``estimates``: model name -> axis -> Estimate (higher is better on
    every axis); ``families``: model name -> family; ``paired``: replicates match one to one."""
    reps = representatives(families)
    out = []
    for axis, order in PAPER_CLAIMS:
        text = f"{' > '.join(order)} on {axis}" + (f" ({where})" if where else "")
        missing = [g for g in order if g not in reps]
        if missing:
            out.append({"claim": text, "axis": axis, "verdict": INCONCLUSIVE, "models": {g: reps.get(g) for g in order}, "pairs": [],
                        "reason": f"no {' or '.join(missing)} model in this comparison"})  # fmt: skip
            continue
        names = [reps[g] for g in order]
        pairs = [_pair(names[i], names[j], estimates[names[i]].get(axis), estimates[names[j]].get(axis), paired)
                 for i, j in ((0, 1), (1, 2), (0, 2))]  # fmt: skip
        verdicts = {p["verdict"] for p in pairs}
        verdict = CONTRADICTED if CONTRADICTED in verdicts else SUPPORTED if verdicts == {SUPPORTED} else INCONCLUSIVE
        out.append({"claim": text, "axis": axis, "verdict": verdict, "models": dict(zip(order, names, strict=True)), "pairs": pairs,
                    "reason": _reason(verdict, pairs)})  # fmt: skip
    return out


def _reason(verdict: str, pairs: list[dict]) -> str:
    def show(p):
        return f"{p['a']} - {p['b']} = {p['delta']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}]" if p["delta"] is not None else f"{p['a']} vs {p['b']}: not measured"

    if verdict == SUPPORTED:
        return "every pair clearly in the claimed order: " + "; ".join(show(p) for p in pairs)
    if verdict == CONTRADICTED:
        return "clearly reversed: " + "; ".join(show(p) for p in pairs if p["verdict"] == CONTRADICTED)
    return "within noise: " + "; ".join(show(p) for p in pairs if p["verdict"] == INCONCLUSIVE)


def claims_from_reports(reports: list, names: list[str]) -> list[dict]:
    """The paper's claims checked on evaluation reports (each axis's score and its interval)."""
    estimates = {n: {a: r.estimate(a) for a, _ in PAPER_CLAIMS} for n, r in zip(names, reports, strict=True)}
    families = {n: r.provenance.get("family", "") for n, r in zip(names, reports, strict=True)}
    return check_claims(estimates, families)


def claim_sentence(c: dict) -> str:
    word = {SUPPORTED: "Supported", CONTRADICTED: "Contradicted", INCONCLUSIVE: "Cannot tell"}[c["verdict"]]
    return f"{word}: {c['claim']} ({c['reason']})."
