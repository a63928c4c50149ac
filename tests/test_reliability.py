"""Reliability of real training runs driven through the CLI: SIGKILL at random moments (also inside a
checkpoint write) then --resume, full disk / unwritable output, NaN losses, two jobs on one folder.

Every run here is the tiny digits VAE of ``hostile.TINY_TRAIN`` on one CPU thread."""

from __future__ import annotations

import errno
import json
import os
import random
import resource
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gda_core import checkpoints as ck
from gda_core import runtime
from gda_core.data import load_dataset
from gda_core.errors import GDAError
from gda_core.models import TrainConfig
from gda_core.training import train

from .hostile import assert_one_line_error, cli, events, main_inprocess, popen, run_kill_in_write, snapshot, train_args
from .test_models import TINY

STEPS = 400
EVERY = 25  # --checkpoint-every
LOG_EVERY = 10  # the trainer's default log_every
# One seed for every random choice here; override to explore other kill moments.
SEED = int(os.environ.get("GDA_KILL_SEED", "20240611"))


def _kill_when(out: Path, rng: random.Random, lo: int, hi: int, *extra: str, jitter: float = 0.0) -> tuple[list[dict], int, int]:
    """Start a run (or a resume), SIGKILL it once a step event >= a random target in lo..hi arrives
    (plus up to ``jitter`` s, to land anywhere, including inside a checkpoint write).
    Returns (events read, the target, the exit code)."""
    target = rng.randint(lo, hi)
    delay = rng.uniform(0, jitter)
    p = popen(*train_args(out, STEPS, *extra, checkpoint_every=EVERY))
    evs: list[dict] = []
    deadline = time.monotonic() + 300
    try:
        for line in p.stdout:
            evs.append(json.loads(line))
            if evs[-1]["kind"] == "step" and evs[-1]["step"] >= target:
                time.sleep(delay)
                p.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() < deadline, "run too slow"
        else:
            raise AssertionError(f"run ended before step {target}: {p.stderr.read()}")
        rest, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    evs += [json.loads(line) for line in rest.splitlines() if line.startswith("{")]  # flushed before it died
    return evs, target, p.returncode


def _assert_consistent_after_kill(out: Path, last_reported: int) -> int:
    """A killed run folder loads; its sampling checkpoint is the last reported one (or the next, when
    the kill fell between two renames of that checkpoint); the resumable state is never behind it
    (it is written first, so after a kill inside a checkpoint it can be ahead)."""
    run = ck.load_run(out, device="cpu")  # validates config, header, every shape, finiteness
    cfg_step = run.config["step"]
    assert cfg_step % EVERY == 0 and cfg_step in (last_reported, last_reported + EVERY), (cfg_step, last_reported)
    state = ck.load_train_state(out)
    assert state["step"] % EVERY == 0 and state["step"] >= cfg_step, (state["step"], cfg_step)
    assert [h["step"] for h in state["history"]] == list(range(LOG_EVERY, state["step"] + 1, LOG_EVERY))
    # Temp files of an interrupted write may remain; they are never read and never named like a real file.
    for tmp in out.glob(".*.tmp"):
        assert tmp.name.startswith((f".{ck.STATE}.", f".{ck.WEIGHTS}.", f".{ck.CONFIG}.", f".{ck.HISTORY}.", f".{ck.PREVIEW}."))
    return state["step"]


def _resume_to_end(out: Path, from_step: int) -> list[dict]:
    p = cli(*train_args(out, STEPS, "--resume", checkpoint_every=EVERY))
    assert p.returncode == 0, p.stderr
    evs = events(p.stdout)
    assert evs[0]["kind"] == "start" and evs[0]["step"] == from_step
    steps = [e["step"] for e in evs if e["kind"] == "step"]
    assert steps and steps[0] == from_step - from_step % LOG_EVERY + LOG_EVERY, "resume must continue from the saved step"
    assert evs[-1]["kind"] == "done" and evs[-1]["step"] == STEPS
    assert not list(out.glob(".*.tmp")), "stale temp files are cleaned when the run is opened again"
    return evs


def _assert_same_as_reference(out: Path, ref: Path) -> None:
    hist, ref_hist = json.loads((out / ck.HISTORY).read_text()), json.loads((ref / ck.HISTORY).read_text())
    steps = [h["step"] for h in hist]
    assert steps == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY)), "history: strictly increasing, no gap, no duplicate"
    strip = [{k: v for k, v in h.items() if k != "time_s"} for h in hist]
    assert strip == [{k: v for k, v in h.items() if k != "time_s"} for h in ref_hist], "losses identical to the uninterrupted run"
    a, b = load_file(str(out / ck.WEIGHTS)), load_file(str(ref / ck.WEIGHTS))
    assert a.keys() == b.keys()
    # Batches are a pure function of (seed, step); the snapshot restores weights, AdamW moments, the
    # RNG and the partial loss window: on one CPU thread the result is bit-identical.
    diff = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a if not torch.equal(a[k], b[k])}
    assert not diff, f"weights differ from the uninterrupted run: {diff}"
    cfg = json.loads((out / ck.CONFIG).read_text())
    assert cfg["step"] == STEPS and cfg["finished"] is True


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same run, never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "run"
    p = cli(*train_args(out, STEPS, checkpoint_every=EVERY))
    assert p.returncode == 0, p.stderr
    assert events(p.stdout)[-1]["step"] == STEPS
    return out


@pytest.mark.slow
def test_sigkill_at_random_step_then_resume_equals_uninterrupted(tmp_path, reference):
    rng = random.Random(SEED)
    out = tmp_path / "run"
    evs, target, rc = _kill_when(out, rng, 60, 200)
    assert rc == -signal.SIGKILL
    reported = [e["step"] for e in evs if e["kind"] == "checkpoint"]
    assert reported[0] == 0 and reported[-1] >= 50 and reported[-1] <= target
    saved = _assert_consistent_after_kill(out, reported[-1])
    # Work lost is at most what was done since that checkpoint.
    assert max(e["step"] for e in evs) - saved < EVERY + LOG_EVERY
    # A second job cannot start a fresh run over it by mistake.
    p = cli(*train_args(out, STEPS, checkpoint_every=EVERY))
    assert_one_line_error(p.returncode, p.stderr, "already holds a run", "--resume")
    _resume_to_end(out, saved)
    _assert_same_as_reference(out, reference)


@pytest.mark.slow
def test_repeated_kills_including_inside_checkpoint_writes(tmp_path, reference):
    rng = random.Random(SEED + 1)
    out = tmp_path / "run"
    # 1. killed from outside at a random moment (the jitter can land inside a checkpoint write).
    evs, _, rc = _kill_when(out, rng, 30, 120, jitter=0.3)
    assert rc == -signal.SIGKILL
    saved = _assert_consistent_after_kill(out, [e["step"] for e in evs if e["kind"] == "checkpoint"][-1])

    # 2. killed right after train_state.pt of the next checkpoint was renamed into place, before the
    #    weights and config.json of that checkpoint were written: the folder mixes two checkpoints.
    p = run_kill_in_write(train_args(out, STEPS, "--resume", checkpoint_every=EVERY), f"{ck.STATE}:1:after")
    assert p.returncode == -signal.SIGKILL, p.stderr
    reported = [e["step"] for e in events(p.stdout) if e["kind"] == "checkpoint"]
    assert not reported  # it died inside its first checkpoint
    prev_cfg_step = ck.load_run(out, device="cpu").config["step"]
    new = _assert_consistent_after_kill(out, prev_cfg_step)
    assert new == saved - saved % EVERY + EVERY and prev_cfg_step < new  # state ahead, sampling weights behind
    saved = new

    # 3. killed with a half-written model.safetensors temp file, not yet renamed.
    p = run_kill_in_write(train_args(out, STEPS, "--resume", checkpoint_every=EVERY), f"{ck.WEIGHTS}:1:before")
    assert p.returncode == -signal.SIGKILL, p.stderr
    leftovers = list(out.glob(f".{ck.WEIGHTS}.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0
    run = ck.load_run(out, device="cpu")  # the complete previous weights, not the torn temp file
    assert run.config["step"] == prev_cfg_step
    new = _assert_consistent_after_kill(out, prev_cfg_step)
    assert new == saved + EVERY  # train_state.pt of that checkpoint had been renamed before the kill
    saved = new

    # 4. one more random kill from outside, then run to the end.
    evs, _, rc = _kill_when(out, rng, saved + 10, saved + 80, "--resume", jitter=0.3)
    assert rc == -signal.SIGKILL
    reported = [e["step"] for e in evs if e["kind"] == "checkpoint"] or [ck.load_run(out, device="cpu").config["step"]]
    saved = _assert_consistent_after_kill(out, reported[-1])
    _resume_to_end(out, saved)
    _assert_same_as_reference(out, reference)


# ---------------------------------------------------------------------------------------------
# Unwritable output, full disk
# ---------------------------------------------------------------------------------------------


def test_unwritable_output_folder_is_one_line_error(tmp_path, capfd):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc, err = main_inprocess(train_args(blocker / "run", 5), capfd)
    assert_one_line_error(rc, err, "cannot create output folder", str(blocker / "run"))
    if os.geteuid() != 0:  # root ignores permission bits: the case above simulates it
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            rc, err = main_inprocess(train_args(ro / "run", 5), capfd)
            assert_one_line_error(rc, err, str(ro / "run"))
        finally:
            ro.chmod(0o755)
        # An existing run whose folder became read-only: --resume refuses, the checkpoint is intact.
        run = tmp_path / "run"
        train("vae", load_dataset("digits", per_class=20), out=run, steps=2, model_config=TINY["vae"], train_config=TrainConfig(batch_size=16))
        before = snapshot(run)
        run.chmod(0o555)
        try:
            rc, err = main_inprocess(train_args(run, 4, "--resume"), capfd)
            assert_one_line_error(rc, err, f"output folder {run} is not writable")
        finally:
            run.chmod(0o755)
        assert snapshot(run) == before
        assert ck.load_run(run, device="cpu").config["step"] == 2


def _fail_replace_of(monkeypatch, name: str, after: int, err: int = errno.ENOSPC) -> None:
    """os.replace onto ``name`` succeeds ``after`` times, then fails like a full disk."""
    real = os.replace
    calls = [0]

    def replace(src, dst, *a, **kw):
        if Path(dst).name == name:
            calls[0] += 1
            if calls[0] > after:
                raise OSError(err, os.strerror(err))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(runtime.os, "replace", replace)


@pytest.mark.parametrize("name", [ck.STATE, ck.WEIGHTS, ck.CONFIG])
def test_full_disk_mid_run_keeps_previous_checkpoint(tmp_path, monkeypatch, name):
    ds = load_dataset("digits", per_class=20)
    out = tmp_path / "run"
    _fail_replace_of(monkeypatch, name, after=2)  # step 0 and step 10 are written, step 20 is not
    with pytest.raises(GDAError) as err:
        train("vae", ds, out=out, steps=30, model_config=TINY["vae"], train_config=TrainConfig(batch_size=16), checkpoint_every=10)
    msg = str(err.value)
    assert "\n" not in msg and f"could not write {out / name}: No space left on device" in msg
    monkeypatch.undo()
    assert not list(out.glob(".*.tmp")), "a failed write removes its temp file"
    run = ck.load_run(out, device="cpu")
    state = ck.load_train_state(out)
    assert run.config["step"] == 10  # weights may be newer than config.json, never torn
    assert state["step"] == (10 if name == ck.STATE else 20)  # written first: ahead unless it failed
    # Space is back: --resume goes on from the saved state.
    train("vae", ds, out=out, steps=30, model_config=TINY["vae"], train_config=TrainConfig(batch_size=16), checkpoint_every=10, resume=True)
    assert ck.load_run(out, device="cpu").config["step"] == 30


def test_full_disk_cli_in_process(tmp_path, monkeypatch, capfd):
    out = tmp_path / "run"
    _fail_replace_of(monkeypatch, ck.STATE, after=1)
    rc, err = main_inprocess(train_args(out, 30, checkpoint_every=10), capfd)
    assert_one_line_error(rc, err, f"could not write {out / ck.STATE}", "No space left on device")
    monkeypatch.undo()
    assert ck.load_run(out, device="cpu").config["step"] == 0


def _limit_file_size(limit: int):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


@pytest.mark.slow
def test_real_write_failure_inside_torch_save_cli(tmp_path):
    """A real kernel write error in the middle of torch.save (RLIMIT_FSIZE: files may not grow past
    200 kB). The step-0 snapshot (~110 kB: no optimiser moments yet) fits; the step-25 one (~340 kB)
    does not. torch.save would report it as a RuntimeError; the CLI must still give one line."""
    out = tmp_path / "run"
    p = cli(*train_args(out, 50), preexec_fn=_limit_file_size(200_000))
    assert_one_line_error(p.returncode, p.stderr, f"could not write {out / ck.STATE}", "File too large")
    assert [e["step"] for e in events(p.stdout) if e["kind"] == "checkpoint"] == [0]
    assert not list(out.glob(".*.tmp"))
    assert ck.load_run(out, device="cpu").config["step"] == 0
    assert ck.load_train_state(out)["step"] == 0


# ---------------------------------------------------------------------------------------------
# NaN, locks
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_nan_loss_cli_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "nan"
    p = cli(*train_args(out, 60, "--lr", "1e12"))
    line = assert_one_line_error(p.returncode, p.stderr, "training diverged", "last good checkpoint", str(out))
    assert "became nan" in line or "became inf" in line
    good = [e["step"] for e in events(p.stdout) if e["kind"] == "checkpoint"][-1]
    assert f"(step {good})" in line
    run = ck.load_run(out, device="cpu")  # refuses NaN weights: what is kept is finite
    assert run.config["step"] == good and ck.load_train_state(out)["step"] == good


@pytest.mark.slow
def test_two_jobs_one_folder_second_fails_fast(tmp_path):
    out = tmp_path / "shared"
    a = popen(*train_args(out, 60, checkpoint_every=20))
    try:
        first = json.loads(a.stdout.readline())
        assert first["kind"] == "start", first
        a.send_signal(signal.SIGSTOP)  # A holds the lock and stands still while B tries
        before = {k: v for k, v in snapshot(out).items() if k != ".lock"}
        t0 = time.monotonic()
        b = cli(*train_args(out, 60, checkpoint_every=20))
        assert_one_line_error(b.returncode, b.stderr, "in use by another job", str(out))
        b2 = cli(*train_args(out, 60, "--resume", checkpoint_every=20))
        assert_one_line_error(b2.returncode, b2.stderr, "in use by another job")
        assert time.monotonic() - t0 < 240
        assert {k: v for k, v in snapshot(out).items() if k != ".lock"} == before, "the refused job wrote nothing"
        # A third job into its own folder runs beside A.
        c = popen(*train_args(tmp_path / "other", 20, checkpoint_every=10))
        a.send_signal(signal.SIGCONT)
        rest, err = a.communicate(timeout=300)
        c_out, c_err = c.communicate(timeout=300)
    finally:
        for proc in (a,):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
    assert a.returncode == 0, err
    assert events(rest)[-1]["kind"] == "done"
    assert c.returncode == 0, c_err
    assert ck.load_run(out, device="cpu").config["step"] == 60
    assert ck.load_run(tmp_path / "other", device="cpu").config["step"] == 20
