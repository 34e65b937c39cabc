"""Shared plumbing of the training scripts: run folders, config files, seeds, logs, checkpoints.

Every run writes into its output folder: ``config.json`` (every option, saved before training starts),
``train.log`` (the log lines), ``checkpoint.pt`` (latest, every ``--checkpoint-every`` steps) and
``final.pt``. ``--resume`` continues from ``checkpoint.pt`` with the saved optimiser and RNG states.
Checkpoints are read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


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
    """``auto`` -> CUDA, then MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return a numpy Generator for the run's own sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def setup_run(out: Path, config: dict[str, Any], resume: bool) -> logging.Logger:
    """Create the run folder, save ``config.json`` (refusing a different config on resume), start the log."""
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if resume and cfg_path.exists():
        saved = json.loads(cfg_path.read_text())
        changed = {k for k in set(saved) | set(config)
                   if k not in ("resume", "threads", "log_every", "checkpoint_every", "device", "steps")
                   and saved.get(k) != config.get(k)}
        if changed:
            raise SystemExit(f"--resume with a different configuration ({', '.join(sorted(changed))}); use a new --out")
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


def optimiser_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, step: int, recent: list[float],
                   progress) -> int:
    """Backward pass and optimiser step; records the loss in ``recent``, stops the run on a non-finite
    loss, updates the progress bar; returns the new step count."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    step += 1
    recent.append(loss.item())
    if not np.isfinite(recent[-1]):
        raise SystemExit(f"loss is not finite at step {step}")
    progress.update(step, f"loss {np.mean(recent[-20:]):.4f}")
    return step


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
    """Write JSON atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(jsonable(data), indent=2) + "\n")
    os.replace(tmp, path)


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    rng: np.random.Generator, extra: dict[str, Any] | None = None) -> None:
    """Save model, optimiser, step and RNG states atomically."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "extra": json.dumps(jsonable(extra or {})),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    rng: np.random.Generator | None) -> tuple[int, dict[str, Any]]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns ``(step, extra)``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if rng is not None:
        rng.bit_generator.state = json.loads(state["numpy_rng"])
    return int(state["step"]), json.loads(state["extra"])


def poly_lr(base_lr: float, step: int, total: int, power: float = 0.9) -> float:
    """Polynomial learning-rate decay ``base * (1 - step/total)^power`` (Myronenko 2018)."""
    return base_lr * max(0.0, 1.0 - step / max(total, 1)) ** power


class Progress:
    """A text progress bar on stderr (one line, rewritten) for interactive runs."""

    def __init__(self, total: int, start: int = 0, label: str = "train"):
        self.total, self.start_step, self.label = total, start, label
        self.t0 = time.time()
        self.tty = sys.stderr.isatty()

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
