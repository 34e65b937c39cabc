"""Data-parallel training across processes and machines: the plumbing both training scripts share.

The scripts run unchanged under ``torchrun`` (one process per GPU, on one or several nodes); a plain
``python -m training.<script>`` is a world of one process with no process group, exactly as before.

* :func:`init` reads torchrun's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` /
  ``MASTER_PORT``), starts the process group when ``WORLD_SIZE > 1`` (``nccl`` on CUDA, ``gloo`` on the
  CPU, chosen from the device) and puts each process on ``cuda:LOCAL_RANK``;
* :func:`wrap_model` wraps the network in ``DistributedDataParallel``: gradients are averaged across
  the processes in every ``backward()``, so every process holds the same weights after each step;
* :func:`is_main` (rank 0) — the one process that logs, validates, writes checkpoints, ``config.json``
  and the exported weights; :func:`barrier`, :func:`all_reduce_mean`, :func:`all_gather_objects`,
  :func:`map_sharded` (each process prepares its share of the sample cache), :func:`rank_generator`
  (a per-process random stream for augmentation), :func:`max_parameter_difference`, :func:`cleanup`.

Batch and learning rate: ``--batch`` is the batch of one process, so a step of N processes sees
N x batch samples and averages their gradients (the effective batch); the learning rate is used as
given (not scaled with N).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")

TIMEOUT = datetime.timedelta(minutes=60)
"""How long a process waits for the others in a collective: rank 0 validates and writes checkpoints
while the others wait in their next gradient all-reduce, so this is longer than torch's default."""

_device = torch.device("cpu")
_local_rank = 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def init(device: torch.device) -> torch.device:
    """Join the process group that torchrun describes in the environment, if there is one.

    Args:
        device: the device of ``--device`` (:func:`training.common.pick_device`).

    Returns:
        This process's device: ``cuda:LOCAL_RANK`` under torchrun on CUDA, else ``device``.

    Raises:
        SystemExit: an MPS device with several processes, or fewer GPUs than local processes.
    """
    global _device, _local_rank
    world = _env_int("WORLD_SIZE", 1)
    _local_rank = _env_int("LOCAL_RANK", 0)
    _device = device
    if world <= 1:
        return device
    if device.type == "mps":
        raise SystemExit("distributed training needs CUDA or the CPU (no process group on MPS); use --device cpu")
    if device.type == "cuda":
        if _local_rank >= torch.cuda.device_count():
            raise SystemExit(f"LOCAL_RANK {_local_rank} but only {torch.cuda.device_count()} CUDA device(s) here; "
                             "start at most that many processes per node (--nproc_per_node)")
        _device = torch.device("cuda", _local_rank)
        torch.cuda.set_device(_device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if _device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return _device


def active() -> bool:
    """Whether a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process is rank 0 (the one that logs and writes)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (nothing without a process group)."""
    if active():
        dist.barrier(**({"device_ids": [_device.index]} if _device.type == "cuda" else {}))


def all_reduce_mean(value: torch.Tensor | float) -> float:
    """The mean of a scalar over the processes (the value itself without a process group)."""
    if not active():
        return float(value)
    t = torch.as_tensor(value, dtype=torch.float64, device=_device).detach().clone().reshape(())
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` without a process group."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` under a process group, else ``model`` itself.

    The graph is declared static (``static_graph=True``): every training step uses the same parameters.
    Not all of them: SegResNetVAE computes its VAE branch whenever it is in training mode (it returns
    ``(logits, vae_loss)``, and the scripts add ``vae_loss`` to the loss), but MONAI builds its
    ``vae_fc2`` layer (the standard-deviation head) also when ``vae_estimate_std`` is off, the default,
    and never uses it. Without ``static_graph`` (or the slower ``find_unused_parameters=True``, which
    searches the graph every step) DDP stops at the second step ("Expected to have finished reduction
    in the prior iteration ... Parameter indices which did not receive grad"); a static graph records the
    unused ones in the first step. Validation calls the unwrapped network (:func:`unwrap`), in eval mode,
    outside DDP. Rank 0's initial weights and buffers are broadcast to the others here; batch-norm running
    statistics are those of rank 0, broadcast before every forward pass (DDP's default).
    """
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [_device.index] if _device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None, static_graph=True)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a ``DistributedDataParallel`` wrapper (its state dict has no ``module.``)."""
    return model.module if hasattr(model, "module") else model


def map_sharded(fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    """``[fn(x) for x in items]`` with the work shared out: each process first runs ``fn`` on its share
    (items ``rank::world``), all wait, then each runs it on every item.

    For functions that cache their result on disk (the sample caches), so each file is made by one
    process and read by the others; without a process group it is the plain list comprehension.
    """
    if not active():
        return [fn(x) for x in items]
    for x in items[rank()::world_size()]:
        fn(x)
    barrier()
    return [fn(x) for x in items]


def rank_generator(seed: int, rng: np.random.Generator) -> np.random.Generator:
    """The random stream of this process for sampling crops, augmentation, dropout and VAE noise.

    Rank 0 keeps ``rng`` (and torch's global seed) as they are, so a single process draws exactly as
    before; rank r > 0 gets a generator from ``SeedSequence([seed, r])`` and reseeds python, numpy and
    torch from it, so the processes augment differently but reproducibly.
    """
    r = rank()
    if r == 0:
        return rng
    from training.common import seed_everything

    return seed_everything(int(np.random.SeedSequence([seed, r]).generate_state(1, np.uint64)[0]))


@torch.no_grad()
def max_parameter_difference(model: torch.nn.Module) -> float:
    """The largest ``|w - w_rank0|`` over all parameters and processes (0.0 without a process group).

    A collective: every process must call it. DDP keeps parameters identical, so anything but 0.0
    means the processes diverged.
    """
    if not active():
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).to(torch.float64) for p in unwrap(model).parameters()])
    ref = flat.clone()
    dist.broadcast(ref, 0)
    diff = (flat - ref).abs().max().reshape(())
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


def cleanup() -> None:
    """Leave the process group (after a last barrier, so no process exits while others still talk)."""
    if active():
        barrier()
        dist.destroy_process_group()
