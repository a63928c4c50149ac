"""Execution fast paths for sampling: channels_last memory format, torch.compile, low-precision autocast.

None of them changes a model's parameters or its state_dict: they change how the same arithmetic is
executed, so images match the plain path within float tolerance (tests/test_fastpath.py states the
tolerances).

Shared models are never changed. The app caches one model per run for every browser session, and
two sessions may ask for different settings at once, so the fast path runs on a private accelerated
copy (``accelerated``, built once per model, settings and weights, then reused) and
``fast_sampling(model)`` routes this thread's ``model.sample`` calls to it for the length of the
block (a context variable: other threads never see it). ``accelerate`` / ``restore`` change a module
in place, for a module the caller owns (a benchmark's, a test's); they refuse one marked
``mark_shared`` (the app's cached models).

What "auto" picks, and why (figures: docs/benchmarks.md, bench/results/speed_cpu.json):
- channels_last on CPU and CUDA for networks with 2-D convolutions: oneDNN and cuDNN run NHWC
  convolutions without layout reorders; the gain grows with image size and channels and it never
  measured slower per pass. Not on MPS (not measured).
- torch.compile only on CUDA, and only when a probe call measures it faster than eager; on CPU the
  compile time (minutes) outweighs the gain unless ``compile=True`` asks for it. A compile failure
  falls back to eager with one warning, never a crash.
- autocast: bf16 on CUDA (fp16 where bf16 is unsupported). On CPU bf16 is faster only on chips with
  native bf16 arithmetic (and much slower elsewhere) and moves images by a few uint8 levels, so it
  is never the default there: only ``dtype="fastest"`` (``generate(fast=True)``, ``sample --fast``)
  turns it on, where ``cpu_native_bf16()``.
``generate(fast=None)`` (the default) uses channels_last + autocast="auto" without compile on CPU
and CUDA (``AUTO_DEVICES``): float32 on CPU, so its images match the plain path within float
tolerance on every machine; ``fast=True`` adds compile="auto" and dtype="fastest"; ``fast=False``
is the plain path.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import ConfigError

_ATTR = "_gda_fastpath"  # the FastPlan in force on an accelerated model / module
# compile="auto" keeps the compiled forward only when the probe shows at least this speed-up.
MIN_COMPILE_GAIN = 1.05


# Where ``generate(fast=None)`` turns the fast path on (channels_last + autocast, never compile):
# measured to help on CPU (bench/results/speed_cpu.json: every shipped family samples faster) and
# the standard recipe on CUDA. MPS stays on the plain path (not measured).
AUTO_DEVICES = ("cpu", "cuda")


def auto_enabled(device: torch.device | str) -> bool:
    """Whether the default (``fast=None``) sampling path is the fast one on ``device``."""
    return torch.device(device).type in AUTO_DEVICES


@dataclass
class FastPlan:
    """What ``accelerate`` applied to a model, and why (``notes``: one line per decision)."""

    device_type: str
    channels_last: bool = False
    compile: bool = False
    dtype: torch.dtype | None = None
    notes: list[str] = field(default_factory=list)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context sampling should run in (a no-op when ``dtype`` is None)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def to_json(self) -> dict:
        return {
            "device_type": self.device_type,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "dtype": str(self.dtype).replace("torch.", "") if self.dtype is not None else None,
            "notes": list(self.notes),
        }

    @property
    def active(self) -> bool:
        return self.channels_last or self.compile or self.dtype is not None


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def _targets(module: nn.Module) -> list[nn.Module]:
    """The networks sampling calls: a family's ``sampling_modules()`` (split when it is a
    ModuleList), or the module itself. A family whose sampling network is the whole model (it
    samples through sub-modules, e.g. the VAE's decoder) gets no compiled forward."""
    sm = module.sampling_modules() if hasattr(module, "sampling_modules") else module
    parts = list(sm) if isinstance(sm, nn.ModuleList) else [sm]
    is_model = hasattr(module, "sampling_modules")
    return [m for m in parts if not (is_model and m is module)]


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in module.modules())


def cpu_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively (AVX512-BF16 or AMX tiles), the only CPUs
    where bf16 autocast is faster than float32. False when PyTorch cannot tell."""
    cpu = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except Exception:  # noqa: BLE001 - a private probe that changed shape: assume no native bf16
            continue
    return False


def _resolve_dtype(dtype: torch.dtype | str | None, dev: torch.device) -> torch.dtype | None:
    if isinstance(dtype, str) and dtype not in ("auto", "fastest"):
        names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16, "fp32": None, "float32": None}
        if dtype not in names:
            raise ConfigError(f"dtype must be one of {', '.join(names)}, 'auto' or 'fastest', got '{dtype}'")
        return names[dtype]
    if dtype in ("auto", "fastest"):
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if dtype == "fastest" and dev.type == "cpu" and cpu_native_bf16() else None
    if dtype is not None and dtype not in (torch.bfloat16, torch.float16):
        raise ConfigError(f"autocast dtype must be bfloat16 or float16, got {dtype}")
    return dtype


def compile_available() -> tuple[bool, str]:
    """Whether torch.compile can run here, and why not."""
    if not hasattr(torch, "compile"):
        return False, "this PyTorch has no torch.compile"
    try:
        import torch._dynamo as dynamo

        if hasattr(dynamo, "is_dynamo_supported") and not dynamo.is_dynamo_supported():
            return False, "torch.compile is not supported on this Python / platform"
    except Exception as exc:  # noqa: BLE001 - any import problem means: not available
        return False, f"torch.compile unavailable ({type(exc).__name__})"
    return True, ""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__


def _install_compiled(module: nn.Module, options: dict[str, Any]) -> bool:
    """Shadow ``module.forward`` with a compiled version that falls back to eager on any failure.

    torch.compile is lazy: most errors (no C++ compiler, an unsupported op, a backend bug) surface
    at the first call, so the guard is around each call as well as around torch.compile itself.
    Returns False (with a warning) when torch.compile refuses at once.
    """
    eager = module.forward  # the bound class method
    try:
        compiled = torch.compile(eager, **options)
    except Exception as exc:  # noqa: BLE001 - e.g. an unknown backend or option
        warnings.warn(f"torch.compile failed, sampling continues in eager mode ({_first_line(exc)})", RuntimeWarning, stacklevel=3)
        return False

    def forward(*args, **kwargs):
        if module.__dict__.get("_gda_compile_failed"):
            return eager(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compile/runtime failure of the compiled path
            module.__dict__["_gda_compile_failed"] = True
            warnings.warn(f"torch.compile failed, sampling continues in eager mode ({_first_line(exc)})", RuntimeWarning, stacklevel=2)
            return eager(*args, **kwargs)

    module.forward = forward  # instance attribute: nn.Module.__call__ (and its hooks) now call it
    module.__dict__["_gda_compiled"] = True
    _guard_deepcopy(module, top=False)
    return True


def _uninstall_compiled(module: nn.Module) -> None:
    if module.__dict__.pop("_gda_compiled", False):
        module.__dict__.pop("forward", None)
    module.__dict__.pop("_gda_compile_failed", None)
    module.__dict__.pop("__deepcopy__", None)


_FAST_KEYS = ("forward", "_gda_compiled", "_gda_compile_failed", _ATTR, "_gda_fast_request", "__deepcopy__")


def _guard_deepcopy(module: nn.Module, top: bool) -> None:
    """Make ``copy.deepcopy`` of an accelerated module give a PLAIN copy.

    The compiled forward is a closure over the original module: copied as is (deepcopy keeps
    functions by reference), the copy would silently run the original's weights. ``copy.deepcopy``
    looks ``__deepcopy__`` up on the instance, so this hook copies without the fast-path attributes
    (and, for the accelerated model itself, puts the copy's weights back in NCHW).
    """

    def deepcopy_plain(memo: dict) -> nn.Module:
        saved = {k: module.__dict__.pop(k) for k in _FAST_KEYS if k in module.__dict__}
        try:
            dup = copy.deepcopy(module, memo)
        finally:
            module.__dict__.update(saved)
        plan = saved.get(_ATTR)
        if top and plan is not None and plan.channels_last:
            (dup.sampling_modules() if hasattr(dup, "sampling_modules") else dup).to(memory_format=torch.contiguous_format)
        return dup

    module.__dict__["__deepcopy__"] = deepcopy_plain


def compile_failed(module: nn.Module) -> bool:
    """True when a compiled forward of ``module`` (or of its targets) failed and fell back to eager;
    inside ``fast_sampling(module)``, of the copy this thread samples."""
    module = active_copy(module) or module
    mods = [module, *_targets(module)]
    return any(m.__dict__.get("_gda_compile_failed") for m in mods)


def _time(fn: Callable[[], Any], device: torch.device, repeats: int = 3) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    best = float("inf")
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def current_plan(module: nn.Module) -> FastPlan | None:
    """The plan in force on ``module`` (None when it runs the plain path)."""
    return module.__dict__.get(_ATTR)


def accelerate(
    module: nn.Module,
    *,
    channels_last: bool | str = "auto",
    compile: bool | str = "auto",  # noqa: A002 - mirrors torch.compile
    dtype: torch.dtype | str | None = "auto",
    probe: Callable[[nn.Module], Any] | None = None,
    compile_options: dict[str, Any] | None = None,
) -> FastPlan:
    """Apply the fast paths to a GenerativeModel (its sampling networks) or any nn.Module, in place.

    For a module the caller owns: one that others use (``mark_shared``) is refused; sample those
    through ``fast_sampling`` / ``accelerated``, which work on a private copy.

    Args:
        module: a ``GenerativeModel`` or a plain ``nn.Module`` (already on its device).
        channels_last: True, False or "auto" (on for conv nets on CPU / CUDA).
        compile: True, False or "auto" (CUDA only, and only if ``probe`` shows it helps; without
            a probe "auto" compiles on CUDA unmeasured).
        dtype: autocast dtype for sampling (``torch.bfloat16``, ``torch.float16``, "bf16", "fp16"),
            None for full precision, "auto" (bf16 / fp16 on CUDA, None elsewhere) or "fastest"
            ("auto", plus bf16 on CPUs with native bf16 arithmetic). Applied by ``plan.autocast()``
            (``fast_sampling`` does it).
        probe: a representative call on the module being accelerated (e.g.
            ``lambda m: m.sample(64, steps=2)``), used to decide compile="auto" by timing eager
            against compiled.
        compile_options: extra keyword arguments of ``torch.compile``.

    Returns the FastPlan, also kept on the module; a second call with the same settings is free.
    Call ``restore(module)`` to go back to the plain path.
    """
    _refuse_shared(module, "accelerate")
    dev = _device_of(module)
    request = _request(module, channels_last, compile, dtype, compile_options)
    if current_plan(module) is not None and module.__dict__.get("_gda_fast_request") == request:
        return current_plan(module)  # already applied with these settings (and compiled, if so)
    if channels_last not in (True, False, "auto"):
        raise ConfigError(f"channels_last must be True, False or 'auto', got {channels_last!r}")
    if compile not in (True, False, "auto"):
        raise ConfigError(f"compile must be True, False or 'auto', got {compile!r}")
    resolved = _resolve_dtype(dtype, dev)
    restore(module)
    plan = FastPlan(device_type=dev.type)
    _apply_channels_last(module, plan, channels_last, dev)
    _apply_dtype(plan, resolved, dtype, dev)
    _apply_compile(module, plan, compile, dev, probe, compile_options)
    module.__dict__[_ATTR] = plan
    module.__dict__["_gda_fast_request"] = request
    _guard_deepcopy(module, top=True)
    return plan


def _request(module: nn.Module, channels_last="auto", compile="auto", dtype="auto", compile_options=None) -> tuple:  # noqa: A002
    """What identifies a set of fast-path settings on a module (the probe does not: it only measures)."""
    return (channels_last, compile, dtype, _device_of(module), repr(sorted((compile_options or {}).items())))


def _apply_channels_last(module: nn.Module, plan: FastPlan, channels_last: bool | str, dev: torch.device) -> None:
    sm = module.sampling_modules() if hasattr(module, "sampling_modules") else module
    if channels_last == "auto":
        channels_last = dev.type in ("cpu", "cuda") and _has_conv(sm)
    if channels_last:
        sm.to(memory_format=torch.channels_last)  # 4-D weights only; values (and state_dict) unchanged
        plan.channels_last = True
        plan.notes.append("channels_last: convolution weights in NHWC layout")


def _apply_dtype(plan: FastPlan, dtype: torch.dtype | None, asked: Any, dev: torch.device) -> None:
    if dtype is not None:
        plan.dtype = dtype
        plan.notes.append(f"autocast: {str(dtype).replace('torch.', '')} matrix products and convolutions")
    elif dev.type == "cpu" and asked in ("auto", "fastest"):
        why = "this CPU has no native bf16 arithmetic" if asked == "fastest" else "float32 on CPU by default (bf16 only with fast=True, on CPUs with native bf16)"
        plan.notes.append(f"autocast: off, {why}")


def _apply_compile(module: nn.Module, plan: FastPlan, compile: bool | str, dev: torch.device, probe, compile_options) -> None:  # noqa: A002
    targets = _targets(module)
    want = compile
    ok, why = compile_available()
    if want == "auto" and dev.type != "cuda":
        plan.notes.append(f"compile: off on {dev.type} by default (compile time outweighs the gain; pass compile=True to force)")
        want = False
    if want and not ok:
        plan.notes.append(f"compile: skipped, {why}")
        want = False
    if want and not targets:
        plan.notes.append("compile: skipped, this family has no separate sampling network to compile")
        want = False
    if not want:
        return
    eager_s = None
    if compile == "auto" and probe is not None:
        with plan.autocast():
            probe(module)  # warm-up (lazy init, cuDNN autotuning)
            eager_s = _time(lambda: probe(module), dev)
    installed = [t for t in targets if _install_compiled(t, dict(compile_options or {}))]
    plan.compile = len(installed) == len(targets)
    if not plan.compile:
        for t in installed:
            _uninstall_compiled(t)
        plan.notes.append("compile: torch.compile refused these options; eager")
    elif eager_s is None:
        plan.notes.append("compile: torch.compile on the sampling network(s), unmeasured")
    else:
        _keep_compiled_if_faster(module, plan, targets, eager_s, probe, dev)


def _keep_compiled_if_faster(module, plan: FastPlan, targets, eager_s: float, probe, dev: torch.device) -> None:
    with plan.autocast():
        probe(module)  # compiles
        fast_s = _time(lambda: probe(module), dev)
    failed = compile_failed(module)
    if failed or eager_s / fast_s < MIN_COMPILE_GAIN:
        for t in targets:
            _uninstall_compiled(t)
        plan.compile = False
        reason = "it failed" if failed else f"{eager_s / fast_s:.2f}x is under {MIN_COMPILE_GAIN}x"
        plan.notes.append(f"compile: measured and dropped ({reason})")
    else:
        plan.notes.append(f"compile: measured {eager_s / fast_s:.2f}x faster than eager, kept")


def restore(module: nn.Module) -> None:
    """Undo ``accelerate``: contiguous (NCHW) weights, eager forward, no plan. No-op otherwise."""
    _refuse_shared(module, "restore")
    plan = module.__dict__.pop(_ATTR, None)
    module.__dict__.pop("_gda_fast_request", None)
    module.__dict__.pop("__deepcopy__", None)
    if plan is None:
        return
    for t in _targets(module):
        _uninstall_compiled(t)
    if plan.channels_last:
        sm = module.sampling_modules() if hasattr(module, "sampling_modules") else module
        sm.to(memory_format=torch.contiguous_format)


# ---------------------------------------------------------------------------------------------
# Shared models: never changed. Private accelerated copies, and a per-thread context that uses them.
# ---------------------------------------------------------------------------------------------

_SHARED = "_gda_shared"


def mark_shared(module: nn.Module) -> nn.Module:
    """Mark ``module`` as used by others (the app's process-wide model cache): ``accelerate`` and
    ``restore`` refuse it from now on, so no caller can change what the others run. Returns it."""
    module.__dict__[_SHARED] = True
    return module


def _refuse_shared(module: nn.Module, what: str) -> None:
    if module.__dict__.get(_SHARED):
        raise ConfigError(f"{what}: this model is shared (cached for every session) and stays as loaded; sample it with fast_sampling(model)")


# model -> {settings request: (weights state, accelerated copy, plan)}; weak, so an evicted model frees its copies.
_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_COPIES_LOCK = threading.Lock()


def _weights_state(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or changed in place (version counter), or the
    model is moved or switched between train and eval: when the copy would no longer match."""

    def version(t: torch.Tensor):
        try:
            return t._version
        except RuntimeError:  # an inference-mode tensor has no version counter (and cannot be changed outside it)
            return None

    tensors = [*model.parameters(), *model.buffers()]
    return (model.training, tuple((t.data_ptr(), version(t), t.device, t.dtype) for t in tensors))


def accelerated(model: nn.Module, *, probe: Callable[[nn.Module], Any] | None = None, **options: Any) -> tuple[nn.Module, FastPlan]:
    """A private copy of ``model`` with ``accelerate(copy, **options)`` applied, and its plan; ``model``
    itself is not touched. Built once per model, settings and weights (a probe-measured compile is
    paid once), and rebuilt when the model's weights change."""
    request = _request(model, **options)
    state = _weights_state(model)
    with _COPIES_LOCK:
        cached = _COPIES.get(model, {}).get(request)
        if cached is not None and cached[0] == state:
            return cached[1], cached[2]
        dup = copy.deepcopy(model)  # plain, even from an accelerated original (_guard_deepcopy)
        dup.__dict__.pop(_SHARED, None)  # the copy is this module's own
        plan = accelerate(dup, probe=probe, **options)
        _COPIES.setdefault(model, {})[request] = (state, dup, plan)
        return dup, plan


def discard(model: nn.Module) -> None:
    """Forget the accelerated copies of ``model`` (e.g. after one failed)."""
    with _COPIES_LOCK:
        _COPIES.pop(model, None)


# id(model) -> the accelerated copy this thread's model.sample runs on (only inside fast_sampling).
_ACTIVE: contextvars.ContextVar[dict[int, nn.Module] | None] = contextvars.ContextVar("gda_fast_copies", default=None)


def active_copy(model: nn.Module) -> nn.Module | None:
    """The copy ``model.sample`` runs on in this thread (inside ``fast_sampling(model)``), else None."""
    return (_ACTIVE.get() or {}).get(id(model))


@contextlib.contextmanager
def fast_sampling(model: nn.Module, enabled: bool = True, **options: Any) -> Iterator[FastPlan | None]:
    """``with fast_sampling(model, **options) as plan: model.sample(...)``: inside the block, this
    thread's ``model.sample`` calls run on the private accelerated copy (``accelerated``) under the
    plan's autocast. ``model`` is not changed, and other threads (other sessions sampling the same
    cached model with other settings) are not affected. ``enabled=False``: the plain path (yields None)."""
    routes = dict(_ACTIVE.get() or {})
    if enabled:
        fast, plan = accelerated(model, **options)
        routes[id(model)] = fast
    else:
        plan = None
        routes.pop(id(model), None)
    token = _ACTIVE.set(routes)
    try:
        with plan.autocast() if plan is not None else contextlib.nullcontext():
            yield plan
    finally:
        _ACTIVE.reset(token)
