"""Real short training runs on digits: losses fall, resume continues, divergence and locks are handled."""

from __future__ import annotations

import json
import math
import re
import threading

import numpy as np
import pytest
import torch

from gda_core import checkpoints as ck
from gda_core.data import load_dataset
from gda_core.errors import Cancelled, ConfigError, TrainingError
from gda_core.models import TrainConfig
from gda_core.runtime import run_lock
from gda_core.training import train
from gda_core.training.trainer import _batch_indices

from .test_models import TINY, attach_tiny_teacher


@pytest.fixture(scope="module")
def digits40():
    """40 images per class: enough for the short runs below to learn, small enough to stay quick."""
    return load_dataset("digits", per_class=40)


@pytest.mark.parametrize("family,steps,key", [("vae", 120, "loss"), ("ddpm", 120, "loss"), ("gan", 150, "d_real")])
@pytest.mark.slow
def test_short_run_learns(family, steps, key, digits40, tmp_path):
    events = []
    out = train(family, digits40, out=tmp_path / family, steps=steps, model_config=TINY.get(family) if family != "ddpm" else {"base_channels": 16, "channel_mults": (1, 2)},
                train_config=TrainConfig(batch_size=32), callback=events.append, log_every=10)  # fmt: skip
    hist = json.loads((out / "history.json").read_text())
    first, last = np.mean([h[key] for h in hist[:2]]), np.mean([h[key] for h in hist[-2:]])
    if family == "gan":
        # An adversarial loss need not fall; what must happen is that D separates real from fake.
        d_gap = np.mean([h["d_real"] - h["d_fake"] for h in hist[-3:]])
        assert d_gap > 0, hist[-3:]
    else:
        assert last < 0.8 * first, (first, last)
    kinds = {e.kind for e in events}
    assert {"start", "step", "preview", "checkpoint", "done"} <= kinds
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["step"] == steps and cfg["finished"] is True and cfg["data"]["source"] == "digits"
    run = ck.load_run(out)
    assert run.model.sample(2, seed=0).shape[1:] == (1, 16, 16)
    assert (out / "preview.png").stat().st_size > 0


def test_resume_continues_from_saved_step(digits40, tmp_path):
    out = tmp_path / "run"
    kw = dict(model_config=TINY["vae"], train_config=TrainConfig(batch_size=16), seed=3, log_every=5)
    cancel = threading.Event()

    def stop_at_40(ev):
        if ev.kind == "step" and ev.step >= 40:
            cancel.set()

    with pytest.raises(Cancelled, match="cancelled at step 40"):
        train("vae", digits40, out=out, steps=80, cancel=cancel, callback=stop_at_40, **kw)
    assert json.loads((out / "config.json").read_text())["step"] == 40
    with pytest.raises(ConfigError, match="already holds a run"):
        train("vae", digits40, out=out, steps=80, **kw)
    train("vae", digits40, out=out, steps=80, resume=True, **kw)
    hist = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in hist] == list(range(5, 85, 5))
    # The same 80 steps without interruption give the same final weights (same data order + RNG).
    ref = train("vae", digits40, out=tmp_path / "ref", steps=80, **kw)
    a, b = ck.load_run(out).model.state_dict(), ck.load_run(ref).model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_resume_checks_a_hand_edited_config_and_takes_its_settings(digits40, tmp_path):
    """Resuming takes the run's saved training settings (here its gradient accumulation, whatever the
    caller passes) and refuses a config.json edited into something a new run would refuse, naming
    the file, before touching the weights."""
    out = tmp_path / "run"
    kw = dict(model_config=TINY["vae"], seed=1)
    train("vae", digits40, out=out, steps=4, train_config=TrainConfig(batch_size=16, grad_accum=2), **kw)
    path = out / "config.json"
    saved = path.read_text()
    train("vae", digits40, out=out, steps=6, resume=True, train_config=TrainConfig(batch_size=16), **kw)
    cfg = json.loads(path.read_text())
    assert cfg["step"] == 6 and cfg["train_config"]["grad_accum"] == 2
    weights = (out / "model.safetensors").read_bytes()
    for key, value, fragment in [
        ("lr", -1.0, "learning rate must be a positive number"),
        ("ema_decay", 1.5, "ema_decay must be a number in [0, 1)"),
        ("cpu_bf16", "yes", "cpu_bf16 must be true, false or null"),
        ("grad_accum", 0, "gradient accumulation must be a positive integer"),
        ("warmup", 10, "unknown keys ['warmup']"),
    ]:
        bad = json.loads(saved)
        bad["train_config"][key] = value
        path.write_text(json.dumps(bad))
        with pytest.raises(ck.CheckpointError, match=re.escape(fragment)) as info:
            train("vae", digits40, out=out, steps=8, resume=True, **kw)
        assert "config.json" in str(info.value)
    bad = json.loads(saved)
    bad["seed"] = "three"
    path.write_text(json.dumps(bad))
    with pytest.raises(ck.CheckpointError, match="'seed' must be an integer"):
        train("vae", digits40, out=out, steps=8, resume=True, **kw)
    assert (out / "model.safetensors").read_bytes() == weights, "a refused resume leaves the run as it was"


def test_train_config_is_validated_before_anything_runs(digits40, tmp_path):
    for tc, fragment in [
        (TrainConfig(lr=0.0), "learning rate must be a positive number"),
        (TrainConfig(lr=float("inf")), "learning rate must be a positive number"),
        (TrainConfig(ema_decay=1.0), "ema_decay must be a number in [0, 1)"),
        (TrainConfig(batch_size=2.5), "batch size must be a positive integer"),
        (TrainConfig(amp="no"), "amp must be true or false"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            train("vae", digits40, out=tmp_path / "x", steps=1, model_config=TINY["vae"], train_config=tc)
    assert not (tmp_path / "x" / "model.safetensors").exists()


def test_batches_are_a_function_of_step():
    a = torch.cat([_batch_indices(s, 10, 4, seed=1) for s in range(5)])
    assert torch.equal(a, torch.cat([_batch_indices(s, 10, 4, seed=1) for s in range(5)]))
    # Each epoch visits every index once.
    assert sorted(a[:10].tolist()) == list(range(10))


def test_divergence_stops_and_keeps_last_checkpoint(digits40, tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"diverged: .* became (nan|inf).*last good checkpoint \(step 0\)"):
        train("vae", digits40, out=out, steps=50, model_config=TINY["vae"], train_config=TrainConfig(batch_size=16, lr=1e12))
    run = ck.load_run(out)
    assert all(math.isfinite(float(v.float().abs().sum())) for v in run.model.state_dict().values())


def test_run_folder_lock(tmp_path, digits40):
    with run_lock(tmp_path / "busy"):
        with pytest.raises(TrainingError, match="in use by another job"):
            train("vae", digits40, out=tmp_path / "busy", steps=5, model_config=TINY["vae"])


def test_budget_validation(digits40, tmp_path):
    with pytest.raises(ConfigError, match="training budget"):
        train("vae", digits40, out=tmp_path / "x")
    with pytest.raises(ConfigError, match="unknown model"):
        train("transformer", digits40, out=tmp_path / "x", steps=1)


def test_minutes_budget(digits40, tmp_path):
    out = train("vae", digits40, out=tmp_path / "m", minutes=0.05, model_config=TINY["vae"], train_config=TrainConfig(batch_size=16))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["finished"] and cfg["step"] > 0 and cfg["train_time_s"] >= 3.0


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.slow
def test_cpu_bf16_trains_in_bf16_only_where_the_cpu_does_it_natively(native, digits40, tmp_path, monkeypatch):
    from gda_core import fastpath
    from gda_core.training import cpu_bf16_offered

    # The hardware probe is patched; the training is real (on a CPU without native bf16 the "native"
    # case runs emulated bf16: slower, same arithmetic).
    monkeypatch.setattr(fastpath, "cpu_native_bf16", lambda: native)
    assert cpu_bf16_offered("cpu") is native
    kw = dict(steps=20, model_config={"base_channels": 16, "channel_mults": (1, 2)}, seed=1, device="cpu", log_every=1)
    plain = train("ddpm", digits40, out=tmp_path / "fp32", train_config=TrainConfig(batch_size=32, cpu_bf16=False), **kw)
    events = []
    low = train("ddpm", digits40, out=tmp_path / "bf16", train_config=TrainConfig(batch_size=32, cpu_bf16=True), callback=events.append, **kw)
    cfg = json.loads((low / "config.json").read_text())
    assert cfg["train_config"]["cpu_bf16"] is True
    assert cfg["train_precision"] == ("bfloat16" if native else "float32")
    assert json.loads((plain / "config.json").read_text())["train_precision"] == "float32"
    start = next(e.message for e in events if e.kind == "start")
    assert ("bfloat16 autocast" in start) if native else ("cpu_bf16 ignored" in start), start
    h32 = [h["loss"] for h in json.loads((plain / "history.json").read_text())]
    h16 = [h["loss"] for h in json.loads((low / "history.json").read_text())]
    assert all(math.isfinite(v) for v in h16)
    if native:
        # Same seed, same batches: only the arithmetic differs, so the losses differ slightly.
        assert h16 != h32 and abs(h16[0] - h32[0]) < 0.05 * h32[0]
    else:
        assert h16 == h32  # ignored: the very same float32 run
    # The master weights stay float32 and the run samples like any other.
    run = ck.load_run(low, "cpu")
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    assert torch.isfinite(run.model.sample(2, seed=0, steps=4)).all()


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_default_is_the_familys(native, digits40, tmp_path, monkeypatch):
    """TrainConfig() (cpu_bf16=None) trains the DDPM in bf16 where the CPU does it natively, and the
    families without a measured bf16 time to quality in float32; an explicit False always wins."""
    from gda_core import fastpath
    from gda_core.models import get_model_class, list_models

    monkeypatch.setattr(fastpath, "cpu_native_bf16", lambda: native)
    assert TrainConfig().cpu_bf16 is None
    assert get_model_class("ddpm").cpu_bf16_default and not get_model_class("vae").cpu_bf16_default
    assert {m for m in list_models() if get_model_class(m).cpu_bf16_default} == {"ddpm", "flow"}
    kw = dict(steps=2, seed=0, device="cpu", checkpoint_every=10)
    cases = [("ddpm", TrainConfig(batch_size=16), native), ("ddpm", TrainConfig(batch_size=16, cpu_bf16=False), False),
             ("vae", TrainConfig(batch_size=16), False), ("vae", TrainConfig(batch_size=16, cpu_bf16=True), native)]  # fmt: skip
    for i, (family, tc, bf16) in enumerate(cases):
        events = []
        out = train(family, digits40, out=tmp_path / f"r{i}", model_config=TINY[family], train_config=tc, callback=events.append, **kw)
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["train_config"]["cpu_bf16"] == tc.cpu_bf16, "the setting is recorded as given (null: the family's default)"
        assert cfg["train_precision"] == ("bfloat16" if bf16 else "float32"), (family, tc)
        start = next(e.message for e in events if e.kind == "start")
        assert ("cpu_bf16 ignored" in start) == (tc.cpu_bf16 is True and not native), start
    with pytest.raises(ConfigError, match="cpu_bf16 must be true, false or null"):
        train("vae", digits40, out=tmp_path / "bad", steps=1, model_config=TINY["vae"], train_config=TrainConfig(cpu_bf16="yes"))


@pytest.mark.parametrize("family", sorted(TINY))
def test_every_family_trains_under_cpu_bf16(family, digits40, tmp_path, monkeypatch):
    from gda_core import fastpath

    # Native bf16 is assumed (patched) so the autocast path runs on every CI machine; where the CPU
    # lacks it, the arithmetic is emulated: slower, the same results.
    monkeypatch.setattr(fastpath, "cpu_native_bf16", lambda: True)
    prepare = attach_tiny_teacher if family == "distilled" else None  # a student trains against a teacher
    out = train(family, digits40, out=tmp_path / family, steps=6, model_config=TINY[family], device="cpu", log_every=1,
                train_config=TrainConfig(batch_size=16, cpu_bf16=True), prepare=prepare)  # fmt: skip
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train_precision"] == "bfloat16"
    hist = json.loads((out / "history.json").read_text())
    assert hist and all(math.isfinite(v) for h in hist for k, v in h.items() if isinstance(v, float)), hist
    run = ck.load_run(out, "cpu")
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    assert torch.isfinite(run.model.sample(2, seed=0)).all()
