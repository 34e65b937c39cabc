"""Data-parallel training (``training.distributed``) on the CPU: two processes, the gloo backend, toy data.

* the samplers deal disjoint shares of every epoch to the processes, reproducibly;
* two processes stepping on different data average their gradients: they end with identical weights,
  equal to one process stepping on the union batch and unlike a step on either share alone;
* both training scripts run in two processes (the classifier's DenseNet with batch norm; the SegResNetVAE,
  whose VAE branch must not leave DDP with unused parameters), each process training on its own data;
  only rank 0 writes ``config.json``, the log, the checkpoints and ``final.pt``;
* ``torchrun --standalone --nproc_per_node 2 -m training.train_classification ... --resume`` goes on
  from that checkpoint.

Everything is tiny (32-voxel volumes, toy networks, two steps, one torch thread per process).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

ROOT = Path(__file__).resolve().parents[2]
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, port: int) -> None:
    """Set the environment torchrun would set for ``rank`` of a 2-process world on this machine (each
    process group that is started and ended gets a port of its own)."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD),
                       "LOCAL_WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)


def _spawn(fn, *args) -> None:
    torch.multiprocessing.spawn(fn, args=args, nprocs=WORLD, join=True)


# --- samplers (no process group) -------------------------------------------------------------------

def test_epoch_sampler_deals_disjoint_shares_and_keeps_the_single_process_order():
    from training.data import EpochSampler
    from training.train_classification import epoch_order

    def order(e):
        return epoch_order(7, e, 9)

    one = EpochSampler(9, order)
    one.set_epoch(3)
    assert list(one) == order(3).tolist()  # one process: the order of a run without torchrun
    shares = []
    for r in range(WORLD):
        s = EpochSampler(9, order, WORLD, r)
        s.set_epoch(3)
        shares.append(list(s))
    assert [len(s) for s in shares] == [5, 5]  # padded: the same number of steps on every process
    assert sorted(shares[0] + shares[1]) == sorted(list(range(9)) + [order(3)[0]])
    assert len(set(shares[0]) & set(shares[1])) == 1  # only the padding sample is shared
    s = EpochSampler(9, order, WORLD, 0)
    s.set_epoch(4)
    assert list(s) != shares[0]


def test_weighted_draw_sampler_is_reproducible_per_epoch_and_rank_and_follows_the_weights():
    from training.data import WeightedDrawSampler, draw_weights

    def draws(weights, epoch, rank, world=WORLD):
        s = WeightedDrawSampler(weights, seed=5, num_replicas=world, rank=rank)
        s.set_epoch(epoch)
        return list(s)

    w = draw_weights(20, 20, None)
    assert draws(w, 0, 0) == draws(w, 0, 0) and draws(w, 0, 0) != draws(w, 1, 0) != draws(w, 1, 1)
    assert len(draws(w, 0, 0)) == 20 and len(draws(w, 0, 0, world=1)) == 40 and len(draws(w, 0, 0, world=3)) == 14
    assert set(draws(w, 0, 0) + draws(w, 0, 1)) <= set(range(40))
    only_synthetic = draw_weights(6, 4, 1.0)
    assert all(i >= 6 for r in range(WORLD) for e in range(3) for i in draws(only_synthetic, e, r))
    assert all(i < 6 for i in draws(draw_weights(6, 4, 0.0), 0, 0, world=1))
    # --synthetic-fraction 0.25 with 300 real and 100 synthetic cases: a quarter of all draws is synthetic
    mixed = draw_weights(300, 100, 0.25)
    synthetic = np.mean([i >= 300 for r in range(WORLD) for e in range(5) for i in draws(mixed, e, r)])
    assert abs(synthetic - 0.25) < 0.03  # 2000 seeded draws (one standard deviation: 0.01)


def test_checkpoint_keeps_a_random_state_per_rank(tmp_path):
    from training import common

    net = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(net.parameters())
    states = []
    for r in range(WORLD):
        torch.manual_seed(10 + r)
        states.append(common.rng_state(np.random.default_rng(10 + r)))
    common.save_checkpoint(tmp_path / "c.pt", net, opt, 7, np.random.default_rng(10), {"world_size": 2}, states)

    def resumed(rank):
        rng = np.random.default_rng(0)
        step, extra = common.load_checkpoint(tmp_path / "c.pt", net, opt, rng, rank)
        return step, extra, rng.random(), torch.rand(1).item()

    for r in range(WORLD):  # each rank goes on with its own streams
        torch.manual_seed(10 + r)
        expected = (np.random.default_rng(10 + r).random(), torch.rand(1).item())
        step, extra, *draws = resumed(r)
        assert (step, extra["rng_restored"], extra["world_size"]) == (7, True, 2) and tuple(draws) == expected
    # a rank the checkpoint has no state for (more processes now): a new stream, reproducible, not rank 0's
    third = resumed(2)
    assert third[1]["rng_restored"] is False and third[2:] == resumed(2)[2:] != resumed(0)[2:]


# --- gradient averaging: two processes vs one ------------------------------------------------------

def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(2, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(1))


def _batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(2, 2, 6, 6, 6, generator=g), torch.randn(2, 1, generator=g)


def _sgd_step(net: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    from training import common

    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    recent: list[float] = []
    common.optimiser_step(torch.nn.functional.mse_loss(model(x), y), opt, 0, recent, common.Progress(1, enabled=False))
    return recent[0]


def _averaging_step(rank: int, out: str) -> None:
    """One SGD step of the tiny network on this rank's batch through DDP; writes ``rank{rank}.pt``."""
    from training import distributed

    assert distributed.init(torch.device("cpu")) == torch.device("cpu") and distributed.world_size() == WORLD
    net = _tiny_net()
    x, y = _batch(rank)
    net(x)  # materialise the lazy layer (same shapes and seed on both processes)
    calls: list[int] = []
    made = distributed.map_sharded(lambda i: calls.append(i) or 10 * i, list(range(5)))
    with torch.no_grad():
        local_loss = float(torch.nn.functional.mse_loss(net(x), y))
    loss = _sgd_step(net, distributed.wrap_model(net), x, y)
    torch.save({"state": net.state_dict(), "loss": loss, "made": made, "calls": calls, "local_loss": local_loss},
               Path(out) / f"rank{rank}.pt")
    distributed.cleanup()


def test_two_processes_average_their_gradients(two_process_runs):
    tmp_path = two_process_runs[1] / "averaging"
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k  # the same weights after a step on different data
    # ... those of one process stepping on the union batch (DDP averages the two ranks' mean gradients)
    union, (x0, y0), (x1, y1) = _tiny_net(), _batch(0), _batch(1)
    union(x0)
    _sgd_step(union, union, torch.cat([x0, x1]), torch.cat([y0, y1]))
    for k, v in union.state_dict().items():
        assert torch.allclose(r0["state"][k], v, atol=1e-6), k
    # ... and not those of a step on rank 0's share alone
    local = _tiny_net()
    local(x0)
    _sgd_step(local, local, x0, y0)
    assert max(float((r0["state"][k] - v).abs().max()) for k, v in local.state_dict().items()) > 1e-3
    # the loss each process records is the mean over the processes
    assert r0["loss"] == pytest.approx(r1["loss"]) == pytest.approx((r0["local_loss"] + r1["local_loss"]) / 2)
    # map_sharded: each process first does its share (items r::2; the caches are made so), then all items
    assert r0["calls"] == [0, 2, 4, 0, 1, 2, 3, 4] and r1["calls"] == [1, 3, 0, 1, 2, 3, 4]
    assert r0["made"] == r1["made"] == [0, 10, 20, 30, 40]


# --- the training scripts in two processes ---------------------------------------------------------

def _cls_argv(data: Path, out: Path, steps: int) -> list[str]:
    return ["--cpm", str(data), "--tiny", "--shape", "32", "32", "32", "--batch", "2", "--steps", str(steps),
            "--log-every", "1", "--checkpoint-every", "1", "--val-every", "1", "--threads", "1", "--out", str(out)]


def _seg_argv(data: Path, out: Path) -> list[str]:
    return ["--brats", str(data), "--val-cases", "SYNTHETIC_tiny2", "--init-filters", "8", "--crop", "16", "16", "16",
            "--steps", "2", "--log-every", "1", "--checkpoint-every", "1", "--val-every", "2", "--threads", "1",
            "--vae-nz", "8", "--out", str(out)]


def _scripts_worker(rank: int, ports: list[int], cls_data: str, seg_data: str, out: str) -> None:
    """As rank ``rank``: the tiny averaging step, then both scripts' ``main``; record the files each script
    wrote (every file goes through ``braingui.atomic.atomic_path``), the inputs its networks saw in
    training, its final weights."""
    from braingui import atomic
    from training import distributed, train_classification, train_segmentation

    _join(rank, ports[0])
    (Path(out) / "averaging").mkdir(exist_ok=True)
    _averaging_step(rank, str(Path(out) / "averaging"))
    record = {"writes": [], "inputs": [], "nets": []}
    atomic_path, wrap = atomic.atomic_path, distributed.wrap_model

    def recording(path, *a, **k):
        record["writes"].append(Path(path).relative_to(out).as_posix())
        return atomic_path(path, *a, **k)

    def wrap_and_watch(net):  # record a checksum of every training input (not validation's) the network sees
        net.register_forward_pre_hook(lambda m, inp: record["inputs"].append(float(inp[0].double().sum()))
                                      if m.training else None)
        record["nets"].append(net)
        return wrap(net)

    atomic.atomic_path, distributed.wrap_model = recording, wrap_and_watch
    try:
        _join(rank, ports[1])
        assert train_classification.main(_cls_argv(Path(cls_data), Path(out) / "cls", 2)) == 0
        _join(rank, ports[2])
        assert train_segmentation.main(_seg_argv(Path(seg_data), Path(out) / "seg")) == 0
    finally:
        atomic.atomic_path, distributed.wrap_model = atomic_path, wrap
    params = [{k: v.detach().clone() for k, v in net.named_parameters()} for net in record["nets"]]
    torch.save({"writes": record["writes"], "inputs": record["inputs"], "params": params},
               Path(out) / f"record{rank}.pt")


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    from braingui.phantom import TumourSpec, write_case
    from training.synthetic_types import generate

    cls_data = tmp_path_factory.mktemp("cls_data")
    generate(cls_data, per_class=3, seed=3, shape=(32, 32, 24), spacing=(7.5, 7.5, 6.5), progress=False)
    seg_data = tmp_path_factory.mktemp("seg_data")
    for i in range(3):
        write_case(seg_data / f"case{i}", case_id=f"SYNTHETIC_tiny{i}", shape=(32, 36, 28), spacing=(6.0, 6.0, 6.0),
                   seed=i, tumour=TumourSpec(radius_mm=30.0, edema_mm=15.0))
    out = tmp_path_factory.mktemp("runs")
    _spawn(_scripts_worker, [_free_port() for _ in range(3)], str(cls_data), str(seg_data), str(out))
    records = [torch.load(out / f"record{r}.pt", weights_only=True) for r in range(WORLD)]
    return cls_data, out, records


def test_both_scripts_train_in_two_processes_with_identical_weights(two_process_runs):
    _, out, (r0, r1) = two_process_runs
    assert len(r0["params"]) == len(r1["params"]) == 2  # the DenseNet, then the SegResNetVAE
    for p0, p1 in zip(r0["params"], r1["params"]):
        assert p0.keys() == p1.keys()
        assert all(torch.equal(p0[k], p1[k]) for k in p0)
    # each process fed its network 2 classifier batches and 2 segmentation crops, all different
    assert len(r0["inputs"]) == len(r1["inputs"]) == 4
    assert all(a != b for a, b in zip(r0["inputs"], r1["inputs"]))
    for script in ("cls", "seg"):
        final = torch.load(out / script / "final.pt", weights_only=True)
        assert final["steps"] == 2 and final["world_size"] == 2
        log = (out / script / "train.log").read_text()
        assert "distributed: 2 processes (gloo)" in log and "weights of the 2 processes are identical" in log
        assert log.count("step 1/2 ") == 1 and log.count("step 2/2 ") == 1  # one process logs
        ckpt = torch.load(out / script / "checkpoint.pt", weights_only=True)
        assert ckpt["step"] == 2 and len(ckpt["rank_rng"]) == 2  # the random state of both processes
        assert ckpt["rank_rng"][0]["numpy"] != ckpt["rank_rng"][1]["numpy"]
    trained = r0["params"][1]
    assert any(k.startswith("vae_") for k in trained)  # the VAE branch was trained (and synchronised) too


def test_only_rank_0_writes_the_run_files(two_process_runs):
    _, out, (r0, r1) = two_process_runs
    run_files = [w for w in r0["writes"] if not w.split("/")[1] == "cache"]
    assert sorted(set(run_files)) == ["cls/best.pt", "cls/checkpoint.pt", "cls/config.json", "cls/final.pt",
                                      "seg/checkpoint.pt", "seg/config.json", "seg/final.pt"]
    assert run_files.count("cls/checkpoint.pt") == run_files.count("seg/checkpoint.pt") == 2  # steps 1 and 2
    # rank 1 wrote its share of the sample caches and nothing else; no cache file was made twice
    assert r1["writes"] and all(w.split("/")[1] == "cache" and w.endswith(".npz") for w in r1["writes"])
    cache0 = [w for w in r0["writes"] if w not in run_files]
    assert not set(cache0) & set(r1["writes"]) and len(set(cache0)) == len(cache0)
    assert len(cache0) + len(r1["writes"]) == len(list(out.glob("*/cache/*.npz")))


def test_torchrun_resumes_the_two_process_run(two_process_runs):
    cls_data, out, _ = two_process_runs
    run = out / "cls"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.train_classification", *_cls_argv(cls_data, run, 3), "--resume"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = run.joinpath("train.log").read_text()
    assert log.count("resumed at step 2") == 1 and log.count("step 3/3 ") == 1 and "step 1/3 " not in log
    assert "weights of the 2 processes are identical" in log.split("resumed at step 2")[1]
    assert torch.load(run / "final.pt", weights_only=True)["steps"] == 3
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3 and json.loads(ckpt["extra"])["world_size"] == 2
    assert "no random state" not in proc.stderr and "process(es), now" not in proc.stderr  # both ranks found theirs
    assert np.isfinite(json.loads(ckpt["extra"])["loss"])
