"""Shared plumbing of the training scripts: run folders, config files, seeds, logs, checkpoints.

Every run writes into its output folder: ``config.json`` (every option, saved before training starts),
``train.log`` (the log lines), ``checkpoint.pt`` (latest, every ``--checkpoint-every`` steps) and
``final.pt``. ``--resume`` continues from ``checkpoint.pt`` with the saved optimiser and RNG states.
Checkpoints are read with ``torch.load(..., weights_only=True)``.

Under ``torchrun`` (:mod:`training.distributed`) only rank 0 writes these files and logs; every process
checks the configuration on ``--resume``, and a checkpoint holds the random state of every process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from braingui import atomic
from braingui.inference.predictor import DeviceError, resolve_device
from training import distributed


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Options every training script takes."""
    p.add_argument("--out", required=True, type=Path, help="run folder (config, log, checkpoints)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--checkpoint-every", type=int, default=100, help="save checkpoint.pt every N steps")
    p.add_argument("--log-every", type=int, default=10, help="log every N steps")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")


def pick_device(name: str) -> torch.device:
    """The device of ``--device`` by :func:`braingui.inference.predictor.resolve_device` (``auto`` -> CUDA,
    then MPS, then CPU); an unknown or unavailable device ends the script with its one-line message."""
    try:
        return resolve_device(name)
    except DeviceError as exc:
        raise SystemExit(str(exc)) from None


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return a numpy Generator for the run's own sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def setup_run(out: Path, config: dict[str, Any], resume: bool, main: bool = True) -> logging.Logger:
    """Create the run folder, save ``config.json`` (refusing a different config on resume), start the log.

    With ``main=False`` (a process other than rank 0) nothing is written: the configuration is checked
    and the logger returned prints warnings only, to stderr, marked with the rank.
    """
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if resume and cfg_path.exists():
        saved = json.loads(cfg_path.read_text())
        changed = {k for k in set(saved) | set(config)
                   if k not in ("resume", "threads", "log_every", "checkpoint_every", "device", "steps")
                   and saved.get(k) != config.get(k)}
        if changed:
            raise SystemExit(f"--resume with a different configuration ({', '.join(sorted(changed))}); use a new --out")
    if not main:
        return quiet_logger(f"training.{out.name}.rank{distributed.rank()}")
    write_json(cfg_path, config)
    return file_logger(f"training.{out.name}", out / "train.log")


def file_logger(name: str, path: Path) -> logging.Logger:
    """A logger writing time-stamped lines to ``path`` and to stdout (its old handlers dropped)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    for handler in (logging.FileHandler(path), logging.StreamHandler(sys.stdout)):
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


def quiet_logger(name: str) -> logging.Logger:
    """A logger printing warnings and errors only, to stderr, each line marked with ``name``."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.WARNING)
    logger.handlers.clear()
    logger.propagate = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s [{name}] %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    return logger


def optimiser_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, step: int, recent: list[float],
                   progress) -> int:
    """Backward pass and optimiser step; records the loss in ``recent``, stops the run on a non-finite
    loss, updates the progress bar; returns the new step count.

    Under a process group the gradients are averaged by DDP in ``backward()`` and the loss recorded is
    the mean over the processes, so every process sees the same numbers (and stops at the same step).
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    step += 1
    recent.append(distributed.all_reduce_mean(loss.detach()))
    if not np.isfinite(recent[-1]):
        raise SystemExit(f"loss is not finite at step {step}")
    progress.update(step, f"loss {np.mean(recent[-20:]):.4f}")
    return step


def check_in_sync(model: torch.nn.Module, log: logging.Logger) -> None:
    """Under a process group, log whether every process ends with rank 0's weights (a collective)."""
    if distributed.world_size() == 1:
        return
    diff = distributed.max_parameter_difference(model)
    if diff == 0.0:
        log.info("weights of the %d processes are identical", distributed.world_size())
    else:
        log.warning("weights of the %d processes differ: max |difference| %.3g", distributed.world_size(), diff)


def jsonable(obj: Any) -> Any:
    """Convert dataclasses, paths, tuples and numpy scalars for JSON."""
    if dataclasses.is_dataclass(obj):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (:func:`braingui.atomic.write_json`)."""
    atomic.write_json(jsonable(data), path)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """This process's random state: torch's CPU generator and ``rng`` (what a checkpoint keeps per rank)."""
    return {"torch": torch.get_rng_state(), "numpy": json.dumps(rng.bit_generator.state)}


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    rng: np.random.Generator, extra: dict[str, Any] | None = None,
                    rank_states: list[dict[str, Any]] | None = None) -> None:
    """Save model, optimiser, step and RNG states atomically.

    Args:
        model: the network (a DDP wrapper is unwrapped: the keys have no ``module.`` prefix).
        rank_states: :func:`rng_state` of every process, in rank order (from
            :func:`training.distributed.all_gather_objects`); default: this process's only.
    """
    state = {
        "model": distributed.unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "rank_rng": rank_states or [rng_state(rng)],
        "extra": json.dumps(jsonable(extra or {})),
    }
    atomic.write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    rng: np.random.Generator | None, rank: int = 0) -> tuple[int, dict[str, Any]]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns ``(step, extra)``.

    Every process loads it (to the CPU first; ``load_state_dict`` copies onto the model's device) and
    restores the random state saved for its ``rank``. A rank the checkpoint has no state for (the run
    now has more processes) gets a new stream from ``SeedSequence`` of the saved rank-0 state, the
    rank and the step; ``extra["rng_restored"]`` says which happened.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    distributed.unwrap(model).load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    ranks = state.get("rank_rng") or [{"torch": state["torch_rng"], "numpy": state["numpy_rng"]}]
    extra = json.loads(state["extra"])
    extra["rng_restored"] = rank < len(ranks)
    if rank < len(ranks):
        torch.set_rng_state(ranks[rank]["torch"])
        if rng is not None:
            rng.bit_generator.state = json.loads(ranks[rank]["numpy"])
    else:
        entropy = [int(json.loads(state["numpy_rng"])["state"]["state"]), rank, int(state["step"])]
        seed_everything(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]))
        if rng is not None:
            rng.bit_generator.state = np.random.default_rng(np.random.SeedSequence(entropy)).bit_generator.state
    return int(state["step"]), extra


def warn_on_resume(log: logging.Logger, extra: dict[str, Any]) -> None:
    """Warn when a run is resumed with another number of processes than wrote its checkpoint, and when
    this process found no random state of its own in it (``extra`` of :func:`load_checkpoint`)."""
    saved, world = extra.get("world_size", 1), distributed.world_size()
    if saved != world:
        log.warning("checkpoint written by %s process(es), now %d: the data order differs from an uninterrupted run",
                    saved, world)
    if not extra.get("rng_restored", True):
        log.warning("no random state for rank %d in the checkpoint: a new stream from its saved state, the rank and "
                    "the step", distributed.rank())


def poly_lr(base_lr: float, step: int, total: int, power: float = 0.9) -> float:
    """Polynomial learning-rate decay ``base * (1 - step/total)^power`` (Myronenko 2018)."""
    return base_lr * max(0.0, 1.0 - step / max(total, 1)) ** power


class Progress:
    """A text progress bar on stderr (one line, rewritten) for interactive runs."""

    def __init__(self, total: int, start: int = 0, label: str = "train", enabled: bool = True):
        self.total, self.start_step, self.label = total, start, label
        self.t0 = time.time()
        self.tty = enabled and sys.stderr.isatty()

    def update(self, step: int, info: str = "") -> None:
        if not self.tty:
            return
        frac = step / max(self.total, 1)
        done = step - self.start_step
        rate = (time.time() - self.t0) / max(done, 1)
        eta = rate * (self.total - step)
        bar = "#" * int(30 * frac)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {step}/{self.total} {info} eta {eta / 60:.1f} min ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
