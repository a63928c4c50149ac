"""Hostile checkpoints and datasets through the API and the CLI, and a static check that nothing
unpickles user data. The corpus is generated here; a payload that would create a marker file proves
that nothing was unpickled when the marker never appears."""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from gda_core import checkpoints as ck
from gda_core.errors import CheckpointError
from gda_core.models import build_model

from .hostile import ROOT, assert_one_line_error, cli, main_inprocess, snapshot
from .test_models import TINY


class Evil:
    """Unpickling this creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _good_run(run: Path) -> None:
    torch.manual_seed(0)
    m = build_model("vae", **TINY["vae"], image_size=16, channels=1, num_classes=10)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ck.save_weights(run, m, {"step": "0"})
    cfg = ck.base_config(m, class_names=[str(i) for i in range(10)], data={"source": "digits", "image_size": 16, "per_class": 20}, seed=0, step=0)
    ck.write_config(run, cfg)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("template") / "run"
    _good_run(run)
    ck.load_run(run, device="cpu")  # the untouched template is valid
    return run


@pytest.fixture
def ctx(tmp_path, template):
    """A fresh copy of the valid run, and an 'outside' folder that must stay untouched."""
    run = tmp_path / "run"
    shutil.copytree(template, run)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched")
    return run, outside


# --- mutations ---------------------------------------------------------------------------


def _cfg(run: Path) -> dict:
    return json.loads((run / ck.CONFIG).read_text())


def _set_cfg(fn):
    def mutate(run: Path, outside: Path) -> None:
        cfg = _cfg(run)
        fn(cfg)
        (run / ck.CONFIG).write_text(json.dumps(cfg))  # NaN / Infinity literals allowed on purpose

    return mutate


def _mc(**kw):
    return _set_cfg(lambda c: c["model_config"].update(kw))


def _write(name: str, data: bytes | str):
    def mutate(run: Path, outside: Path) -> None:
        path = run / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())

    return mutate


def _weights(fn):
    def mutate(run: Path, outside: Path) -> None:
        state = load_file(str(run / ck.WEIGHTS))
        fn(state)
        save_file(state, str(run / ck.WEIGHTS))

    return mutate


def _st_bytes(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def _pickle_weights(name: str, remove_safetensors: bool = True):
    def mutate(run: Path, outside: Path) -> None:
        if remove_safetensors:
            (run / ck.WEIGHTS).unlink()
        (run / name).write_bytes(pickle.dumps(Evil(outside / "PWNED")))

    return mutate


def _torch_pickle_as_safetensors(run: Path, outside: Path) -> None:
    torch.save({"w": torch.zeros(3), "evil": Evil(outside / "PWNED")}, run / ck.WEIGHTS)


def _truncate(run: Path, outside: Path) -> None:
    data = (run / ck.WEIGHTS).read_bytes()
    (run / ck.WEIGHTS).write_bytes(data[: len(data) // 2])


def _weights_dir(run: Path, outside: Path) -> None:
    (run / ck.WEIGHTS).unlink()
    (run / ck.WEIGHTS).mkdir()


def _weights_dev_zero(run: Path, outside: Path) -> None:
    (run / ck.WEIGHTS).unlink()
    (run / ck.WEIGHTS).symlink_to("/dev/zero")


def _huge_config(run: Path, outside: Path) -> None:
    cfg = _cfg(run)
    cfg["padding"] = "x" * (ck.MAX_CONFIG_BYTES + 10)
    (run / ck.CONFIG).write_text(json.dumps(cfg))


def _unlink(name: str):
    return lambda run, outside: (run / name).unlink()


def _del(key: str, sub: str | None = None):
    return _set_cfg(lambda c: (c[sub] if sub else c).pop(key))


CFG, W, DIR = "config", "weights", "dir"

# (id, mutation, fragment of the message, which path the message must name)
CHECKPOINT_CORPUS = [
    # tampered config.json
    ("family-other", _set_cfg(lambda c: c.update(family="gan")), "unknown config keys", CFG),
    ("family-unknown", _set_cfg(lambda c: c.update(family="nope")), "unknown model 'nope'", CFG),
    ("family-not-a-string", _set_cfg(lambda c: c.update(family=["vae"])), "'family' must be a string", CFG),
    ("size-negative", _mc(latent_dim=-4), "latent_dim must be in 1..4096", CFG),
    ("size-zero", _mc(base_channels=0), "base_channels must be in 1..4096", CFG),
    ("size-absurd", _mc(base_channels=100_000), "base_channels must be in 1..4096", CFG),
    ("size-huge", _mc(base_channels=4000), "has shape", W),  # valid, but not these weights: checked on the meta device, no allocation
    ("int-absurd", _mc(class_dim=10**15), "implausibly large", CFG),
    ("type-string", _mc(image_size="16"), "must be an integer", CFG),
    ("type-list", _mc(latent_dim=[8]), "must be an integer", CFG),
    ("type-bool", _mc(channels=True), "must be an integer", CFG),
    ("float-nan", _mc(beta=float("nan")), "'beta' is nan", CFG),
    ("float-inf", _mc(beta=float("inf")), "'beta' is inf", CFG),
    ("extra-key", _mc(evil="__import__('os')"), "unknown config keys", CFG),
    ("missing-model-config", _del("model_config"), "missing 'model_config'", CFG),
    ("missing-family", _del("family"), "missing 'family'", CFG),
    ("missing-size-key-default-mismatch", _del("latent_dim", "model_config"), "has shape", W),
    ("model-config-not-object", _set_cfg(lambda c: c.update(model_config=[16, 1])), "must be an object", CFG),
    ("format-tag-missing", _del("format"), "format tag missing", CFG),
    ("format-tag-other", _set_cfg(lambda c: c.update(format="gda-run/999")), "format tag", CFG),
    ("class-names-wrong-type", _set_cfg(lambda c: c.update(class_names=7)), "'class_names' must be a list of strings", CFG),
    ("step-wrong-type", _set_cfg(lambda c: c.update(step="many")), "'step' must be a non-negative integer", CFG),
    ("config-a-list", _write(ck.CONFIG, "[1, 2, 3]"), "format tag", CFG),
    ("config-not-json", _write(ck.CONFIG, "{not json"), "not valid JSON", CFG),
    ("config-binary", _write(ck.CONFIG, bytes(range(256))), "not valid JSON", CFG),
    ("config-deeply-nested", _write(ck.CONFIG, "[" * 200_000 + "]" * 200_000), "not valid JSON", CFG),
    ("config-huge", _huge_config, "implausibly large", CFG),
    ("config-missing", _unlink(ck.CONFIG), "no config.json", DIR),
    # weights
    ("weights-missing", _unlink(ck.WEIGHTS), "no model.safetensors", DIR),
    ("weights-only-pickle-pt", _pickle_weights("model.pt"), "pickled weights are refused", DIR),
    ("weights-only-pickle-pkl", _pickle_weights("weights.pkl"), "pickled weights are refused", DIR),
    ("weights-pickle-named-safetensors", _pickle_weights(ck.WEIGHTS, remove_safetensors=False), "unreadable safetensors", W),
    ("weights-torch-save-named-safetensors", _torch_pickle_as_safetensors, "unreadable safetensors", W),
    ("weights-wrong-shapes", _mc(latent_dim=12), "has shape", W),
    ("weights-tensor-missing", _weights(lambda s: s.pop("dec_out.bias")), "1 missing", W),
    ("weights-tensor-extra", _weights(lambda s: s.update(evil=torch.zeros(2))), "1 unexpected", W),
    ("weights-nan", _weights(lambda s: s["dec_out.weight"].view(-1).__setitem__(0, float("nan"))), "NaN or inf", W),
    ("weights-inf", _weights(lambda s: s["enc_in.bias"].view(-1).__setitem__(1, float("inf"))), "NaN or inf", W),
    ("weights-truncated", _truncate, "unreadable safetensors", W),
    ("weights-empty", _write(ck.WEIGHTS, b""), "unreadable safetensors", W),
    ("weights-header-claims-huge", _write(ck.WEIGHTS, _st_bytes({"x": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}, b"\0" * 64)), "unreadable safetensors", W),  # fmt: skip
    ("weights-header-overflow", _write(ck.WEIGHTS, _st_bytes({"x": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 64]}}, b"\0" * 64)), "unreadable safetensors", W),  # fmt: skip
    ("weights-header-length-huge", _write(ck.WEIGHTS, struct.pack("<Q", 2**62) + b"{}"), "unreadable safetensors", W),
    ("weights-header-not-json", _write(ck.WEIGHTS, struct.pack("<Q", 10) + b"not json!!"), "unreadable safetensors", W),
    ("weights-a-folder", _weights_dir, "no model.safetensors", DIR),
    ("weights-symlink-dev-zero", _weights_dev_zero, "no model.safetensors", DIR),
]


def _named(run: Path, which: str) -> str:
    return str({CFG: run / ck.CONFIG, W: run / ck.WEIGHTS, DIR: run}[which])


@pytest.mark.parametrize("case", CHECKPOINT_CORPUS, ids=[c[0] for c in CHECKPOINT_CORPUS])
def test_hostile_checkpoint_api_and_cli(case, ctx, capfd):
    _, mutate, fragment, which = case
    run, outside = ctx
    mutate(run, outside)
    before_out, before_root = snapshot(outside), sorted(os.listdir(ROOT))
    with pytest.raises(CheckpointError) as err:
        ck.load_run(run, device="cpu")
    assert type(err.value) is CheckpointError
    msg = str(err.value)
    assert "\n" not in msg and fragment in msg and _named(run, which) in msg, msg
    rc, stderr = main_inprocess(["sample", "--checkpoint", run, "--n", "4", "--device", "cpu", "--out", outside / "s.png"], capfd)
    assert_one_line_error(rc, stderr, fragment, _named(run, which))
    assert snapshot(outside) == before_out and sorted(os.listdir(ROOT)) == before_root
    assert not (outside / "PWNED").exists() and not (outside / "s.png").exists()
    # The run pickers (which read config.json only) never fail on it.
    ck.list_runs(run.parent, include_shipped=False)


def test_checkpoint_path_that_is_a_pickle_file(ctx, capfd):
    run, outside = ctx
    evil = outside / "model.pt"
    evil.write_bytes(pickle.dumps(Evil(outside / "PWNED")))
    with pytest.raises(CheckpointError, match="not a checkpoint folder.*pickled .pt/.pkl weights are refused"):
        ck.load_run(evil)
    rc, err = main_inprocess(["sample", "--checkpoint", evil, "--out", outside / "s.png"], capfd)
    assert_one_line_error(rc, err, str(evil), "pickled")
    weird = outside / "evil\nname\rwith\tcontrol"
    rc, err = main_inprocess(["sample", "--checkpoint", weird, "--out", outside / "s.png"], capfd)
    assert_one_line_error(rc, err, "does not exist")
    assert not (outside / "PWNED").exists() and not (outside / "s.png").exists()


@pytest.mark.parametrize("case", ["weights-only-pickle-pt", "weights-header-claims-huge", "size-negative", "config-deeply-nested"])
@pytest.mark.slow
def test_hostile_checkpoint_cli_subprocess(case, ctx):
    """The same contract from a real process: exit 2, one line, no traceback, nothing written."""
    _, mutate, fragment, which = next(c for c in CHECKPOINT_CORPUS if c[0] == case)
    run, outside = ctx
    mutate(run, outside)
    before = snapshot(outside)
    p = cli("sample", "--checkpoint", str(run), "--n", "4", "--device", "cpu", "--out", str(outside / "s.png"), timeout=120)
    assert_one_line_error(p.returncode, p.stderr, fragment, _named(run, which))
    assert p.stdout == "" and snapshot(outside) == before and not (outside / "PWNED").exists()


# --- hostile resumable state (train --resume) --------------------------------------------


@pytest.fixture(scope="module")
def resumable(tmp_path_factory) -> Path:
    from gda_core.data import load_dataset
    from gda_core.models import TrainConfig
    from gda_core.training import train

    out = tmp_path_factory.mktemp("resumable") / "run"
    train("vae", load_dataset("digits", per_class=20), out=out, steps=2, model_config=TINY["vae"], train_config=TrainConfig(batch_size=16))
    return out


def _state_edit(fn):
    def mutate(run: Path, outside: Path) -> None:
        state = torch.load(run / ck.STATE, weights_only=True)
        state = fn(state)
        torch.save(state, run / ck.STATE)

    return mutate


def _state_pickle(run: Path, outside: Path) -> None:
    torch.save({"step": 1, "evil": Evil(outside / "PWNED")}, run / ck.STATE)


STATE_CORPUS = [
    ("state-evil-pickle", _state_pickle, "unreadable training state"),
    ("state-raw-pickle", lambda run, outside: (run / ck.STATE).write_bytes(pickle.dumps(Evil(outside / "PWNED"))), "unreadable training state"),
    ("state-garbage", lambda run, outside: (run / ck.STATE).write_bytes(b"\0garbage" * 100), "unreadable training state"),
    ("state-a-list", _state_edit(lambda s: [1, 2, 3]), "not a training state"),
    ("state-missing-model", _state_edit(lambda s: {k: v for k, v in s.items() if k != "model"}), "does not match this model"),
    ("state-wrong-shapes", _state_edit(lambda s: {**s, "model": {k: torch.zeros(3) for k in s["model"]}}), "does not match this model"),
    ("state-step-string", _state_edit(lambda s: {**s, "step": "many"}), "does not match this model"),
    ("state-step-negative", _state_edit(lambda s: {**s, "step": -5}), "does not match this model"),
    ("state-rng-wrong", _state_edit(lambda s: {**s, "rng_cpu": torch.zeros(3)}), "does not match this model"),
    ("state-window-wrong", _state_edit(lambda s: {**s, "window": 5}), "does not match this model"),
    ("state-optimizer-wrong", _state_edit(lambda s: {**s, "optimizers": {"nope": {}}}), "does not match this model"),
    ("state-missing", _unlink(ck.STATE), "nothing to resume"),
]


@pytest.mark.parametrize("case", STATE_CORPUS, ids=[c[0] for c in STATE_CORPUS])
def test_hostile_train_state_on_resume(case, resumable, tmp_path, capfd):
    _, mutate, fragment = case
    run = tmp_path / "run"
    shutil.copytree(resumable, run)
    outside = tmp_path / "outside"
    outside.mkdir()
    mutate(run, outside)
    before = {k: v for k, v in snapshot(run).items() if k != ".lock"}
    args = ["train", "--dataset", "digits", "--model", "vae", "--per-class", "20", "--batch-size", "16", "--steps", "4", "--resume", "--out", run]
    rc, err = main_inprocess(args, capfd)
    named = str(run / ck.STATE) if fragment != "nothing to resume" else str(run)
    assert_one_line_error(rc, err, fragment, named)
    assert not (outside / "PWNED").exists()
    assert {k: v for k, v in snapshot(run).items() if k != ".lock"} == before, "a refused resume writes nothing"
    ck.load_run(run, device="cpu")  # the sampling checkpoint is untouched


# --- hostile datasets through `train --dataset` --------------------------------------------


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip_slip(root: Path, outside: Path) -> tuple[Path, str]:
    z = root / "slip.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for c in "ab":
            for i in range(3):
                zf.writestr(f"{c}/{i}.png", _png())
        zf.writestr("../../outside/evil.png", _png())
    return z, "unsafe member path"


def _object_npz(root: Path, outside: Path) -> tuple[Path, str]:
    f = root / "evil.npz"
    rng = np.random.default_rng(0)
    np.savez(
        f,
        train_images=np.array([Evil(outside / "PWNED")] * 10, dtype=object),
        train_labels=(np.arange(10) % 2).astype(np.uint8),
        test_images=rng.integers(0, 256, (4, 8, 8), dtype=np.uint8),
        test_labels=np.array([0, 1, 0, 1], np.uint8),
    )
    return f, "pickled objects; refused"


def _text_as_png(root: Path, outside: Path) -> tuple[Path, str]:
    d = root / "ds"
    (d / "only").mkdir(parents=True)
    (d / "only" / "image.png").write_text("this is text, not a PNG")
    return d, "no readable images"


def _pickle_as_npz(root: Path, outside: Path) -> tuple[Path, str]:
    f = root / "data.npz"
    f.write_bytes(pickle.dumps(Evil(outside / "PWNED")))
    return f, "data.npz"


def _pickle_file(root: Path, outside: Path) -> tuple[Path, str]:
    f = root / "data.pkl"
    f.write_bytes(pickle.dumps(Evil(outside / "PWNED")))
    return f, "unsupported dataset file type '.pkl'"


DATA_CORPUS = [_zip_slip, _object_npz, _text_as_png, _pickle_as_npz, _pickle_file]


@pytest.mark.parametrize("make", DATA_CORPUS, ids=[f.__name__.strip("_") for f in DATA_CORPUS])
def test_hostile_dataset_cli_train(make, tmp_path, capfd):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    path, fragment = make(work, outside)
    before = snapshot(tmp_path)
    rc, err = main_inprocess(["train", "--dataset", path, "--model", "vae", "--steps", "2", "--out", work / "run"], capfd)
    assert_one_line_error(rc, err, fragment, str(path))
    assert snapshot(tmp_path) == before, "nothing extracted, no run folder created"
    assert not (outside / "PWNED").exists() and not (outside / "evil.png").exists()


def test_hostile_dataset_cli_subprocess(tmp_path):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    path, fragment = _object_npz(work, outside)
    p = cli("train", "--dataset", str(path), "--model", "vae", "--steps", "2", "--out", str(work / "run"), timeout=120)
    assert_one_line_error(p.returncode, p.stderr, fragment, str(path))
    assert not (outside / "PWNED").exists() and not (work / "run").exists()


# --- static check: no unpickling anywhere in the product -----------------------------------

PRODUCT = [ROOT / "app.py", *sorted((ROOT / "gda_core").rglob("*.py")), *sorted((ROOT / "pages").rglob("*.py"))]
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle"}


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<not a literal>"
    return "<missing>"


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def test_static_no_pickle_loading_in_product():
    problems = []
    torch_loads = np_loads = 0
    for path in PRODUCT:
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(ROOT)

        def where(n: ast.AST, rel=rel) -> str:
            return f"{rel}:{n.lineno}"

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                problems += [f"{where(node)} imports {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
            elif isinstance(node, ast.ImportFrom):
                mod = (node.module or "").split(".")[0]
                if mod in UNSAFE_MODULES:
                    problems.append(f"{where(node)} imports from {node.module}")
                if mod in ("torch", "numpy") and any(a.name in ("load", "read_pickle") for a in node.names):
                    problems.append(f"{where(node)} imports {mod}.load by name (use the qualified call)")
            elif isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name in ("torch.load",):
                    torch_loads += 1
                    if _kw(node, "weights_only") is not True:
                        problems.append(f"{where(node)} torch.load without weights_only=True")
                elif name in ("np.load", "numpy.load"):
                    np_loads += 1
                    if _kw(node, "allow_pickle") is not False:
                        problems.append(f"{where(node)} np.load without allow_pickle=False")
                elif name.endswith(("read_pickle", "Unpickler", "torch.jit.load", "yaml.load", "yaml.unsafe_load")):
                    problems.append(f"{where(node)} calls {name}")
                for k in node.keywords:
                    if (k.arg == "weights_only" and not (isinstance(k.value, ast.Constant) and k.value.value is True)) or (
                        k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                    ):
                        problems.append(f"{where(node)} passes {k.arg}={ast.unparse(k.value)}")
    assert not problems, "\n".join(problems)
    assert torch_loads >= 1 and np_loads >= 1, "the check found the known call sites"
    # The one torch.load is the project's own training state.
    src = (ROOT / "gda_core" / "checkpoints.py").read_text()
    assert 'torch.load(path, map_location="cpu", weights_only=True)' in src and "path = run_dir / STATE" in src


# -- reports are untrusted input; every string they carry is escaped on the way out -----------------


PLANTED = "<script>alert('planted')</script>"


def _planted_report():
    from gda_core.metrics import Report

    d = Report.from_raw({"precision": 0.8, "recall": 0.6, "images_per_s": 100.0, PLANTED: 0.5}, provenance={"family": PLANTED}).to_dict()
    d["per_class"] = {PLANTED: {"fidelity": 0.5, "intervals": {}}}
    d["units"][PLANTED] = PLANTED
    d["warnings"] = [PLANTED]
    d["scores"]["speed"] = "not a number"  # a hand-edited file: read as n/a, never trusted
    d["uncertainty"] = {"score:fidelity": {"mean": "x"}, "precision": {"mean": 0.8, "lo": 0.7, "hi": 0.9, "se": 0.05, "df": None, "n": 3,
                                                                        "method": PLANTED}}  # fmt: skip
    return Report.from_dict(json.loads(json.dumps(d)))


def test_html_exports_escape_every_string_from_a_report_file(tmp_path):
    from gda_core.metrics import write_comparison

    rep = _planted_report()
    assert rep.scores["speed"] is None and "score:fidelity" not in rep.uncertainty and rep.estimate("precision").mean == 0.8
    out = write_comparison([rep, rep], [PLANTED, "b"], tmp_path / "c.html")
    page = out.read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;planted&#x27;)&lt;/script&gt;" in page


@pytest.mark.parametrize("formula", ['=HYPERLINK("http://evil.example","x")', "@SUM(A1:A9)", "+1+1", "-2+3", "\t=1", "\r=1"])
def test_csv_export_neutralises_formulas_from_report_keys_and_names(tmp_path, formula):
    import csv

    from gda_core.metrics import Report, write_comparison

    d = Report.from_raw({"precision": 0.8, "recall": 0.6, formula: -0.5}).to_dict()
    d["units"][formula] = formula
    rep = Report.from_dict(json.loads(json.dumps(d)))
    out = write_comparison([rep, rep], [formula, "b"], tmp_path / "c.csv")
    cells = [c for row in csv.reader(out.open(newline="")) for c in row]
    assert formula not in cells and "'" + formula in cells
    assert not any(c.startswith(("=", "+", "@", "\t", "\r")) for c in cells)
    assert "-0.5" in cells  # a number stays a number


def test_compare_export_cache_key_is_the_reports_content_not_their_claimed_fields():
    """A run uploaded under a shipped name, with the shipped report's checkpoint hash and date copied
    into its own, must not share a cache entry with the real one (the page's cache is per server)."""
    from gda_core.metrics import Report
    from gda_core.metrics.comparison import reports_digest

    prov = {"name": "ddpm-digits", "checkpoint_sha256": "ab" * 32, "created": "2026-11-23T13:56:37+0000"}
    real = Report.from_raw({"precision": 0.8, "recall": 0.6}, provenance=prov)
    fake = Report.from_raw({"precision": 0.1, "recall": 0.1}, provenance=prov)
    assert reports_digest([real], ["ddpm-digits"]) != reports_digest([fake], ["ddpm-digits"])
    again = Report.from_dict(json.loads(json.dumps(real.to_dict())))
    assert reports_digest([real], ["ddpm-digits"]) == reports_digest([again], ["ddpm-digits"])
    assert reports_digest([real], ["a"]) != reports_digest([real], ["b"])
    assert "reports_digest(reps, names)" in (ROOT / "pages" / "5_Compare.py").read_text()
