"""Execution fast paths for sampling: channels_last memory format, torch.compile, low-precision autocast.

None of them changes a model's parameters or its state_dict: they change how the same arithmetic is
executed, so images match the plain path within float tolerance (tests/test_fastpath.py states the
tolerances). ``accelerate(model)`` applies them in place and remembers what it did on the model;
``restore(model)`` undoes it exactly (contiguous weights, eager forward).

What "auto" picks, and why (measured by bench/bench_speed.py; numbers in bench/results/speed_cpu.json):
- channels_last: on CPU and CUDA for networks with 2-D convolutions. oneDNN (CPU) and cuDNN (GPU)
  run NHWC convolutions without the layout reorders that NCHW needs around them. On the 2-core
  test CPU (AMD EPYC, 1 thread, quiet machine, one guided UNet pass at batch 128, plain and NHWC
  interleaved, median of 6) it is 1.00x at 16x16x1, 1.04x at 28x28x1 and 1.14x at 32x32x3: the
  gain grows with the image and channel count, and on CPU some of it goes back to GroupNorm, whose
  NHWC kernel is slower for few channels per group (24% of the NHWC pass, bench/profile_unet.py).
  It never measured slower per pass, so "auto" keeps it on. Not on MPS (not measured).
- torch.compile: measured, not assumed. On CUDA (fusing GroupNorm / SiLU / scale-shift into few
  kernels) it is compiled, timed against eager on a probe call and kept only if at least 5% faster.
  On CPU it is off unless asked for (``compile=True``): compiling the 1.1M-parameter UNet took
  about 2.5 minutes on the 2-core test machine for passes about 8-10% faster, which only a long
  job recovers. Any compile failure falls back to eager with a one-line warning, never a crash.
- autocast: bfloat16 on CUDA (float16 where bf16 is unsupported). On CPU it depends on the chip:
  processors without native bf16 arithmetic run it slower than float32 (the UNet pass took 7x
  longer under bf16 autocast on an AVX2-only AMD EPYC), processors with it (AVX512-BF16, e.g.
  AMD Zen 4, or Intel AMX) run it faster (one guided UNet pass at batch 128, one thread, Zen 4
  EPYC: 1.33x at 28x28x1, 1.72x at 32x32x3). bf16 moves images by more than float noise (about a
  1 % relative change per network pass; bench/bench_quality.py measures what it does to sample
  quality), so on CPU it is never in the default path, only in ``dtype="fastest"``, which
  ``generate(fast=True)`` / ``sample --fast`` asks for: bf16 where the CPU has it natively
  (``cpu_native_bf16()``), float32 elsewhere.
``generate(fast=None)`` (the default) uses channels_last + autocast="auto" without compile on CPU
and CUDA (``AUTO_DEVICES``): float32 on CPU, so its images match the plain path within float
tolerance on every machine; ``generate(fast=True)`` / ``--fast`` adds compile="auto" and
dtype="fastest"; ``fast=False`` is the plain path.
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
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
    """True when a compiled forward of ``module`` (or of its targets) failed and fell back to eager."""
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
    probe: Callable[[], Any] | None = None,
    compile_options: dict[str, Any] | None = None,
) -> FastPlan:
    """Apply the fast paths to a GenerativeModel (its sampling networks) or any nn.Module, in place.

    Args:
        module: a ``GenerativeModel`` or a plain ``nn.Module`` (already on its device).
        channels_last: True, False or "auto" (on for conv nets on CPU / CUDA).
        compile: True, False or "auto" (CUDA only, and only if ``probe`` shows it helps; without
            a probe "auto" compiles on CUDA unmeasured).
        dtype: autocast dtype for sampling (``torch.bfloat16``, ``torch.float16``, "bf16", "fp16"),
            None for full precision, "auto" (bf16 / fp16 on CUDA, None elsewhere) or "fastest"
            ("auto", plus bf16 on CPUs with native bf16 arithmetic). Applied by ``plan.autocast()``
            (``generate(fast=...)`` does it).
        probe: a representative call (e.g. ``lambda: model.sample(64, steps=2)``) used to decide
            compile="auto" by timing eager against compiled.
        compile_options: extra keyword arguments of ``torch.compile``.

    Returns the FastPlan, also kept on the module; a second call with the same settings is free.
    Call ``restore(module)`` to go back to the plain path.
    """
    dev = _device_of(module)
    request = (channels_last, compile, dtype, dev, repr(sorted((compile_options or {}).items())))
    if current_plan(module) is not None and module.__dict__.get("_gda_fast_request") == request:
        return current_plan(module)  # already applied with these settings (and compiled, if so)
    if channels_last not in (True, False, "auto"):
        raise ConfigError(f"channels_last must be True, False or 'auto', got {channels_last!r}")
    if compile not in (True, False, "auto"):
        raise ConfigError(f"compile must be True, False or 'auto', got {compile!r}")
    asked_dtype = dtype
    dtype = _resolve_dtype(dtype, dev)
    restore(module)
    plan = FastPlan(device_type=dev.type)
    targets = _targets(module)
    sm = module.sampling_modules() if hasattr(module, "sampling_modules") else module

    # 1. Memory format.
    if channels_last == "auto":
        channels_last = dev.type in ("cpu", "cuda") and _has_conv(sm)
    if channels_last:
        sm.to(memory_format=torch.channels_last)  # 4-D weights only; values (and state_dict) unchanged
        plan.channels_last = True
        plan.notes.append("channels_last: convolution weights in NHWC layout")

    # 2. Autocast dtype.
    if dtype is not None:
        plan.dtype = dtype
        plan.notes.append(f"autocast: {str(dtype).replace('torch.', '')} matrix products and convolutions")
    elif dev.type == "cpu" and asked_dtype in ("auto", "fastest"):
        why = "this CPU has no native bf16 arithmetic" if asked_dtype == "fastest" else "float32 on CPU by default (bf16 only with fast=True, on CPUs with native bf16)"
        plan.notes.append(f"autocast: off, {why}")

    # 3. torch.compile.
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
    if want:
        eager_s = None
        if compile == "auto" and probe is not None:
            with plan.autocast():
                probe()  # warm-up (lazy init, cuDNN autotuning)
                eager_s = _time(probe, dev)
        installed = [t for t in targets if _install_compiled(t, dict(compile_options or {}))]
        plan.compile = len(installed) == len(targets)
        if not plan.compile:
            for t in installed:
                _uninstall_compiled(t)
            plan.notes.append("compile: torch.compile refused these options; eager")
        elif eager_s is not None:
            with plan.autocast():
                probe()  # compiles
                fast_s = _time(probe, dev)
            failed = compile_failed(module)
            if failed or eager_s / fast_s < MIN_COMPILE_GAIN:
                for t in targets:
                    _uninstall_compiled(t)
                plan.compile = False
                reason = "it failed" if failed else f"{eager_s / fast_s:.2f}x is under {MIN_COMPILE_GAIN}x"
                plan.notes.append(f"compile: measured and dropped ({reason})")
            else:
                plan.notes.append(f"compile: measured {eager_s / fast_s:.2f}x faster than eager, kept")
        else:
            plan.notes.append("compile: torch.compile on the sampling network(s), unmeasured")
    module.__dict__[_ATTR] = plan
    module.__dict__["_gda_fast_request"] = request
    _guard_deepcopy(module, top=True)
    return plan


def restore(module: nn.Module) -> None:
    """Undo ``accelerate``: contiguous (NCHW) weights, eager forward, no plan. No-op otherwise."""
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


@contextlib.contextmanager
def fast_sampling(module: nn.Module, enabled: bool = True, **options: Any) -> Iterator[FastPlan | None]:
    """``with fast_sampling(model) as plan: model.sample(...)``: accelerate (kept on the model for
    the next call) and run under the plan's autocast. With ``enabled=False`` the model is put back
    on the plain path."""
    if not enabled:
        restore(module)
        yield None
        return
    plan = accelerate(module, **options)  # free when already applied with the same options
    with plan.autocast():
        yield plan
