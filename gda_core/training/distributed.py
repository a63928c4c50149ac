"""Data-parallel training with PyTorch's own engine (torch.distributed), and gradient accumulation.

``torchrun --nproc_per_node N -m gda_core train ...`` starts N copies of the trainer; each finds
its rank in the environment (RANK, WORLD_SIZE, LOCAL_RANK, set by torchrun) and joins one process
group: nccl on GPUs (one GPU per process, ``cuda:LOCAL_RANK``), gloo on CPU.

Why not ``nn.parallel.DistributedDataParallel``: our families own their optimisation steps (a GAN
steps its critic and its generator in one ``train_step``; the LDM switches networks halfway), so
wrapping one forward is the wrong seam. The seam that fits every family is the optimiser: the
trainer hands each family :class:`SyncedOptimizer` wrappers, and ``layers.optimizer_step`` calls
``sync()`` before clipping and stepping. ``sync()`` does what DDP's reducer does (average the
gradients over processes with one bucketed all-reduce) and what gradient accumulation does
(add up micro-batch gradients and step once per effective batch). Clipping then sees the
gradient of the whole effective batch, exactly as in one process.

Data: every process computes the same global batch of indices from ``(seed, step)`` and takes its
own slice (``shard``), so each global step covers the same images as a single-process run, the
data order survives resume, and no two processes see the same image in a step: the job of
``DistributedSampler``, for tensors already on the device.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError, TrainingError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ.get('WORLD_SIZE')!r}") from None


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[tuple[DistContext, torch.device]]:
    """Join the torchrun process group if the environment asks for one; yield (context, device).

    Single process (no WORLD_SIZE > 1): yields ``SINGLE`` and ``device`` unchanged. Under torchrun
    on CUDA every process takes ``cuda:LOCAL_RANK``. A group created here is destroyed on exit.
    """
    world = env_world_size()
    if world <= 1:
        yield SINGLE, device
        return
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s); use --nproc_per_node <= the GPU count")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"distributed training runs on cuda (nccl) or cpu (gloo), not {device.type}")
    created = False
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as exc:
            msg = str(exc).strip().splitlines()
            raise TrainingError(f"could not join the torchrun process group ({msg[0][:160] if msg else type(exc).__name__})") from None
        created = True
    try:
        yield DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend), device
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def shard(indices: torch.Tensor, ctx: DistContext, accum: int) -> list[torch.Tensor]:
    """This process's micro-batches of one global batch: ``accum`` near-equal slices of its share.

    The global batch is cut into ``world_size * accum`` contiguous pieces; process r takes pieces
    r*accum .. r*accum + accum - 1. With equal pieces the averaged gradient equals the full-batch
    gradient of a single process.
    """
    pieces = torch.tensor_split(indices, ctx.world_size * accum)
    return list(pieces[ctx.rank * accum : (ctx.rank + 1) * accum])


class SyncedOptimizer:
    """An optimiser wrapper for gradient accumulation and data-parallel gradient averaging.

    The trainer sets ``micro`` (0 .. accum-1) before each micro-batch's ``train_step``. The family
    calls ``zero_grad`` (acted on only at micro-batch 0, so gradients add up), ``backward``, and
    then ``layers.optimizer_step``, which calls :meth:`sync`: False until the last micro-batch;
    at the last one the summed gradients are divided by ``accum``, averaged over processes, and
    the caller clips and steps. Everything else (``param_groups``, ``state_dict``...) is the
    wrapped optimiser's.
    """

    def __init__(self, opt: torch.optim.Optimizer, *, accum: int = 1, ctx: DistContext = SINGLE):
        if accum < 1:
            raise ConfigError(f"gradient accumulation must be >= 1, got {accum}")
        self.opt = opt
        self.accum = int(accum)
        self.ctx = ctx
        self.micro = 0
        self._synced = False

    # The trainer and the families only use these.
    @property
    def param_groups(self):
        return self.opt.param_groups

    @property
    def state(self):
        return self.opt.state

    def state_dict(self):
        return self.opt.state_dict()

    def load_state_dict(self, state) -> None:
        self.opt.load_state_dict(state)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if self.micro == 0:
            self.opt.zero_grad(set_to_none=set_to_none)

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.opt.param_groups for p in g["params"]]

    def sync(self) -> bool:
        """Average the gradients when this is the last micro-batch; True when it is time to step."""
        if self.micro < self.accum - 1:
            return False
        grads = [p.grad for p in self._params() if p.grad is not None]
        scale = 1.0 / (self.accum * self.ctx.world_size)
        if self.ctx.distributed:
            # One flat buffer per dtype: a bucketed all-reduce, as DDP's reducer does.
            by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
            for g in grads:
                by_dtype.setdefault(g.dtype, []).append(g)
            for group in by_dtype.values():
                flat = torch._utils._flatten_dense_tensors(group)
                dist.all_reduce(flat)
                flat.mul_(scale)
                for g, synced in zip(group, torch._utils._unflatten_dense_tensors(flat, group), strict=True):
                    g.copy_(synced)
        elif scale != 1.0 and grads:
            torch._foreach_mul_(grads, scale)
        self._synced = True
        return True

    def step(self, closure=None):
        # A family that calls step() directly still gets synchronised gradients.
        if not self._synced and not self.sync():
            return None
        self._synced = False
        return self.opt.step(closure)


def broadcast_module(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every process (start of training)."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Keep buffers (e.g. spectral-norm vectors, updated by every forward) equal across processes."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        for b in module.buffers():
            if b.is_floating_point():
                dist.broadcast(b, src=0)


def reduce_logs(logs: list[dict[str, float]], stop: bool, ctx: DistContext, device: torch.device) -> tuple[dict[str, float], bool]:
    """Mean of each logged value over micro-batches and processes; stop if any process asks to."""
    keys = list(logs[0])
    local = torch.tensor([[float(d.get(k, float("nan"))) for k in keys] for d in logs], dtype=torch.float64).mean(0)
    if not ctx.distributed:
        return dict(zip(keys, local.tolist(), strict=True)), stop
    buf = torch.cat([local, torch.tensor([1.0 if stop else 0.0], dtype=torch.float64)]).to(device)
    dist.all_reduce(buf)
    vals = (buf[:-1] / ctx.world_size).tolist()
    return dict(zip(keys, vals, strict=True)), bool(buf[-1].item() > 0)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_agree(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """True on every process if ``flag`` is True on any process (errors, stop requests)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def check_in_sync(module: torch.nn.Module, ctx: DistContext, device: torch.device) -> None:
    """Raise if the processes' parameters have drifted apart (they must be equal after every step)."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        params = [p.detach().double().reshape(-1) for p in module.parameters()]
        flat = torch.cat(params) if params else torch.zeros(1, dtype=torch.float64)
        mine = torch.stack([flat.sum(), (flat * flat).sum(), (flat * torch.arange(1, len(flat) + 1, dtype=torch.float64)).sum()]).to(device)
        lo, hi = mine.clone(), mine.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.allclose(lo, hi, rtol=1e-9, atol=1e-9):
        raise TrainingError("data-parallel processes hold different weights (gradients were not synchronised); the run is not valid")
