"""The sampler registry, the shared sampling-control rules (SampleConfig) and the families' independence."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from gda_core.errors import ConfigError
from gda_core.models import BUILTIN_FAMILIES, SampleConfig, build_model, get_model_class
from gda_core.sampling import generate
from gda_core.schedulers import VELOCITY, VP_EPS, DiffusionSampler, FlowSampler, get_sampler, list_samplers, register_sampler, registry

from .test_models import TINY

DIFFUSION = ("ddpm", "ldm", "flow")


def tiny(family: str, **kw):
    torch.manual_seed(0)
    m = build_model(family, **{**TINY[family], "image_size": 8 if family != "ldm" else 16, "channels": 1, "num_classes": 3, **kw})
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


@pytest.fixture
def own_registry(monkeypatch):
    """A copy of the sampler registry for one test: what it registers is gone afterwards."""
    monkeypatch.setattr(registry, "_SAMPLERS", dict(registry._SAMPLERS))


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_builtin_samplers_by_process_and_families_offer_them():
    assert list_samplers(VP_EPS) == ["ddim", "dpmpp"] and list_samplers(VELOCITY) == ["heun", "euler"]
    assert get_model_class("ddpm").samplers == get_model_class("ldm").samplers == ("ddim", "dpmpp")
    assert get_model_class("flow").samplers == ("heun", "euler")
    assert get_model_class("vae").samplers == () and get_model_class("gan").sampler_help == {}
    assert set(get_model_class("flow").sampler_help) == {"heun", "euler"}
    assert (get_sampler("heun").evals_per_step, get_sampler("euler").evals_per_step) == (2, 1)


def test_duplicate_or_malformed_sampler_is_refused(own_registry):
    class AnotherDDIM(DiffusionSampler):
        name = "ddim"

    class Nameless(DiffusionSampler):
        pass

    class Elsewhere(DiffusionSampler):
        name = "elsewhere"
        process = "sde"

    with pytest.raises(ValueError, match="'ddim' is already registered"):
        register_sampler(AnotherDDIM)
    with pytest.raises(ValueError, match="no sampler name"):
        register_sampler(Nameless)
    with pytest.raises(ValueError, match="unknown process"):
        register_sampler(Elsewhere)
    assert get_sampler("ddim").__name__ == "DDIM"
    with pytest.raises(ConfigError, match="unknown sampler 'rk4'; choose one of heun, euler"):
        get_sampler("rk4", VELOCITY)


def test_a_new_diffusion_sampler_plugs_in_without_touching_the_others(own_registry):
    calls = []

    @register_sampler
    class PlainDDIM(DiffusionSampler):
        """Deterministic DDIM written anew (Song et al. 2021, eq. 12 with sigma = 0)."""

        name = "plain-ddim"
        help = "test sampler"

        def step(self, x, x0, eps, ab, ab_next, last):
            calls.append(last)
            return math.sqrt(ab_next) * x0 + math.sqrt(max(1 - ab_next, 0.0)) * eps

    m = tiny("ddpm")
    assert m.samplers == ("ddim", "dpmpp", "plain-ddim") and m.sampler_help["plain-ddim"] == "test sampler"
    assert "plain-ddim" not in get_model_class("flow").samplers, "a VP_EPS sampler is not offered to the flow model"
    out = m.sample(3, [0, 1, 2], seed=4, steps=5, sampler="plain-ddim")
    assert calls == [False] * 4 + [True], "the family's loop ran the new sampler's step, once per step"
    assert torch.equal(out, m.sample(3, [0, 1, 2], seed=4, steps=5, sampler="ddim")), "the same update as DDIM at eta 0"
    assert m.nfe_per_image(5, 1.0, "plain-ddim") == 5
    with pytest.raises(ConfigError, match="unknown sampler 'plain-ddim'; choose one of heun, euler"):
        tiny("flow").sample(1, sampler="plain-ddim")


def test_a_new_ode_solver_plugs_into_the_flow_model(own_registry):
    @register_sampler
    class Midpoint(FlowSampler):
        """Explicit midpoint rule (2nd-order Runge-Kutta): x + h v(x + h/2 v, t + h/2)."""

        name = "midpoint"
        evals_per_step = 2

        def step(self, velocity, x, t, t_next, v):
            h = t_next - t
            return x + h * velocity(x + 0.5 * h * v, t + 0.5 * h).float()

    m = tiny("flow")
    assert m.samplers == ("heun", "euler", "midpoint")
    rows = []
    hook = m.unet_ema.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))
    try:
        mid = m.sample(2, [0, 1], seed=0, steps=6, guidance=1.0, sampler="midpoint")
    finally:
        hook.remove()
    assert sum(rows) / 2 == m.nfe_per_image(6, 1.0, "midpoint") == 12
    heun = m.sample(2, [0, 1], seed=0, steps=6, guidance=1.0, sampler="heun")
    assert 0 < (mid - heun).abs().max() < 0.05, "two 2nd-order solvers of the same ODE nearly agree"


# ---------------------------------------------------------------------------------------------
# SampleConfig: the same rules and messages in every family
# ---------------------------------------------------------------------------------------------

BAD_CONTROLS = [
    ({"guidance": float("nan")}, "guidance must be a finite number >= 0, or None for the family default, got nan"),
    ({"guidance": float("inf")}, "guidance must be a finite number >= 0, or None for the family default, got inf"),
    ({"guidance": -1.0}, "guidance must be a finite number >= 0, or None for the family default, got -1.0"),
    ({"temperature": float("nan")}, "temperature must be a finite number in 0..10, got nan"),
    ({"temperature": 11}, "temperature must be a finite number in 0..10, got 11"),
    ({"steps": 0}, "steps must be an integer >= 1, or None for the family default, got 0"),
    ({"steps": 2.5}, "steps must be an integer >= 1, or None for the family default, got 2.5"),
    ({"steps": True}, "steps must be an integer >= 1, or None for the family default, got True"),
    ({"eta": 1.5}, "eta must be a number in 0..1, got 1.5"),
    ({"sampler": "nope"}, "unknown sampler 'nope'; choose one of ddim, dpmpp, heun, euler"),
    ({"sampler": 3}, "sampler must be a sampler's name or None for the family default, got 3"),
    ({"seed": 1.5}, "seed must be an integer, got 1.5"),
    ({"guidence": 2.0}, "unknown sampling control 'guidence'; the controls are temperature, guidance, steps, eta, sampler, seed"),
]


@pytest.mark.parametrize("controls,message", BAD_CONTROLS, ids=[next(iter(c)) + "=" + repr(next(iter(c.values()))) for c, _ in BAD_CONTROLS])
def test_bad_controls_give_the_same_one_line_error_in_every_diffusion_family(controls, message):
    seen = set()
    for family in DIFFUSION:
        m = tiny(family)
        if "eta" in controls and "eta" not in m.controls:
            continue  # the flow model has no eta: checked by the rule for unused controls below
        with pytest.raises(ConfigError) as err:
            m.sample(1, **controls)
        seen.add(str(err.value))
    assert seen == {message}
    with pytest.raises(ConfigError, match="^" + message.split(",")[0]):
        SampleConfig.from_kwargs(**controls)


@pytest.mark.parametrize("family", DIFFUSION)
def test_decode_encode_and_nfe_take_the_same_rules(family):
    m = tiny(family)
    z, y = m.initial_latents([0]), torch.tensor([1])
    for call in (lambda: m.decode(z, y, steps=0), lambda: m.encode(torch.rand(1, 1, *m.latent_shape()[1:]), y, steps=0), lambda: m.nfe_per_image(0)):
        with pytest.raises(ConfigError, match="steps must be an integer >= 1"):
            call()
    with pytest.raises(ConfigError, match="guidance must be a finite number"):
        m.decode(z, y, guidance=float("nan"))
    with pytest.raises(ConfigError, match=f"steps must be an integer in 1..{m.max_steps()} for this {family}"):
        m.sample(1, steps=m.max_steps() + 1)
    other = "heun" if family != "flow" else "ddim"
    with pytest.raises(ConfigError, match=f"unknown sampler '{other}'; choose one of {', '.join(m.samplers)}$"):
        m.sample(1, sampler=other)
    # None is the family default, in every family the same way.
    assert torch.equal(m.sample(2, seed=1, steps=None), m.sample(2, seed=1, steps=m.sample_defaults()["steps"]))


def test_a_control_the_family_does_not_use_must_stay_neutral():
    vae, flow = tiny("vae"), tiny("flow")
    plain = vae.sample(2, seed=0)
    assert torch.equal(vae.sample(2, seed=0, guidance=None, steps=None, eta=0.0, sampler=None), plain)
    for controls in ({"steps": 3}, {"guidance": 2.0}, {"sampler": "ddim"}, {"eta": 0.5}):
        name = next(iter(controls))
        with pytest.raises(ConfigError, match=f"^{name} does not apply to vae \\(its controls: temperature\\)"):
            vae.sample(2, seed=0, **controls)
    with pytest.raises(ConfigError, match="^eta does not apply to flow"):
        flow.sample(1, eta=0.5)
    # Callers with one set of controls for every family keep the applicable ones.
    used, ignored = vae.split_controls(steps=3, guidance=None, temperature=0.5)
    assert used == {"temperature": 0.5} and ignored == ["steps"]
    with pytest.raises(ConfigError, match="guidance must be a finite number"):
        vae.split_controls(guidance=float("nan"))  # invalid everywhere, used or not
    res = generate(vae, 2, seed=0, steps=3, fast=False)
    assert res.notes == ["steps does not apply to vae and was ignored"]
    assert (res.images == generate(vae, 2, seed=0, fast=False).images).all()


# ---------------------------------------------------------------------------------------------
# The families are peers
# ---------------------------------------------------------------------------------------------


def _imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved against ``package``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)  # from . import ddpm
    return names


def test_no_family_module_imports_another_family():
    models_dir = Path(__file__).resolve().parents[1] / "gda_core" / "models"
    families = {f"gda_core.models.{f}" for f in BUILTIN_FAMILIES}
    for family in BUILTIN_FAMILIES:
        imported = _imported_modules(models_dir / f"{family}.py", "gda_core.models")
        others = {m for m in imported if any(m == f or m.startswith(f + ".") for f in families - {f"gda_core.models.{family}"})}
        assert not others, f"models/{family}.py imports {sorted(others)}; shared pieces belong in models/unet.py, models/layers.py or schedulers/"
