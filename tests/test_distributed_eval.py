"""Evaluation across processes: the plan, the per-group merge (bit-identical to one process),
main.py and main_3dhp.py under torchrun with gloo (1, 2 and 3 processes give the same JSON
tables and .mat files), and failures (a rank that raises, a rank that is killed)."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.evaluation import distributed as de
from common.evaluation import merge as dmerge
from common.evaluation import plan as dplan
from common.model.checkpoint import atomic_save, make_checkpoint
from common.evaluation import collectors
from common.evaluation.collectors import collectors_for
from common.datasets.mpi_inf_3dhp import ROOT_INDEX, TEST_NPZ, camera_pixels_of_test_sequence
from common.model.diffusion import DDIMSampler, Diffusion
from common.evaluation.evaluate import EvalSettings
from common.inference.core import InferenceCore
from common.evaluation.metrics import AGGREGATION_MODES
from conftest import evaluate, make_sequences, synthetic_as_h36m, tiny_model

ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="torchrun tests on Linux")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_thread():
    """Single-process references with the thread count of torchrun's workers (CPU kernels
    round differently with other thread counts)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- the plan

def test_balance_is_longest_processing_time_first_and_deterministic():
    assert dplan.balance([5, 4, 3, 3, 3], 2) == [0, 1, 1, 0, 1]          # loads 8 and 10
    assert dplan.balance([1, 1, 1], 5) == [0, 1, 2]
    rng = np.random.default_rng(0)
    costs = rng.integers(1, 40, size=200).tolist()
    for world in (2, 3, 7):
        owner = dplan.balance(costs, world)
        assert owner == dplan.balance(costs, world)
        loads = np.bincount(owner, weights=costs, minlength=world)
        assert loads.max() - loads.min() <= max(costs)                  # the greedy bound
        assert loads.max() <= sum(costs) / world + max(costs)
    with pytest.raises(ValueError, match="at least 1 process"):
        dplan.balance([1], 0)


def test_plan_spreads_groups_of_very_different_sizes():
    # one long sequence (25 calls of 4 windows) and many short ones (1 window each)
    lengths = [900] + [20] * 30
    plan = dplan.plan_evaluation(lengths, frames=9, group=4, compute_batch=0, world_size=3)
    loads = plan.loads()
    assert sum(loads) == 100 + 30 * 3 and max(loads) - min(loads) <= max(plan.costs)
    assert sorted(i for r in range(3) for i in plan.batches_of(r)) == list(range(len(plan.batches)))
    # every process computes the same plan from the same lengths
    again = dplan.plan_evaluation(lengths, frames=9, group=4, compute_batch=0, world_size=3)
    assert again.owner == plan.owner and again.costs == plan.costs
    assert plan.imbalance() < 0.1
    # the authors' -b 1024: a group is a whole sequence and a call packs up to 1024 windows
    coarse = dplan.plan_evaluation(lengths, frames=9, group=1024, compute_batch=0, world_size=3)
    assert len(coarse.batches) == 1 and coarse.imbalance() > de.PLAN_WARNING_SHARE


# ---------------------------------------------------------------- the merge, in one process

def _shard_and_merge(model, sampler, seqs, fields, world):
    """What the ranks of a distributed run compute and rank 0 merges, without processes."""
    lengths = [s.num_frames for s in seqs]
    plan = dplan.plan_evaluation(lengths, model.cfg.frames, fields["group"], fields.get("compute_batch", 0), world)
    collectors = collectors_for(fields["keep"])
    settings = SimpleNamespace(exact_frames=fields["exact_frames"])
    owners = dmerge.writers(plan, lengths, collectors, settings)
    headers, blobs, rank0 = [], [], None
    for rank in range(world):
        shard = dmerge.Shard(plan.batches_of(rank))
        results = evaluate(model, sampler, seqs, shard=shard, **fields)
        header, blob = dmerge.payload(shard, results, collectors, owners, rank)
        headers.append(header)
        blobs.append(blob)
        rank0 = rank0 or results
    sampling = SimpleNamespace(iterations=sampler.iterations, hypotheses=fields["hypotheses"])
    return dmerge.merge(headers, blobs, seqs, plan, collectors, owners, rank0, sampling)


@pytest.mark.parametrize("exact_frames", [False, True])
def test_shards_merge_into_the_single_process_results_bit_for_bit(exact_frames, one_thread):
    # 23 and 26 frames: 3 windows, the end-aligned last one in a group of its own (overlapping the
    # group before, which may run elsewhere); 5 frames: shorter than F
    seqs = make_sequences(3, 23, valid=True) + make_sequences(1, 5, seed=2)
    model, sampler = tiny_model(frames=9), DDIMSampler(Diffusion(), 2)
    settings = dict(hypotheses=3, group=2, protocol2=True, exact_frames=exact_frames, seed=3,
                    keep={"poses", "hypotheses", "frame_poses"}, progress=False)
    single = evaluate(model, sampler, seqs, **settings)
    for world in (2, 3, 5, 16):                                 # 16: more processes than calls
        merged = _shard_and_merge(model, sampler, seqs, settings, world)
        for a, b in zip(single, merged):
            assert a.weight == b.weight > 0
            assert list(a.sums) == list(b.sums) and len(a.sums) == 5 * len(AGGREGATION_MODES)   # p1 p2 mpjve accel bone_cv
            for key in a.sums:
                assert np.array_equal(a.sums[key], b.sums[key]), (world, key)
            for mode in AGGREGATION_MODES:
                assert np.array_equal(a.poses[mode], b.poses[mode]), (world, mode)
            assert np.array_equal(a.hypotheses, b.hypotheses)
            assert np.abs(a.poses["J-Agg"]).sum() > 0
            for name in ("spread", "error", "seen", "j_agg", "p_agg"):   # the per-frame uncertainty records
                assert np.array_equal(getattr(a.frames, name), getattr(b.frames, name), equal_nan=name == "error"), \
                    (world, name)
            assert a.frames.seen.all() and np.nanmax(a.frames.spread) > 0


class _Spread(collectors.Collector):
    """A per-frame consumer added from outside: each frame's mean hypothesis spread (N,), written
    by every window that covers it, so the overlap's last writer matters."""

    name = "test_spread"

    def new(self, seq, sampling):
        return np.full(seq.num_frames, np.nan, np.float32)

    def add(self, state, view):
        spread = view.hyps[:, -1].std(dim=1).mean(dim=(-1, -2)).cpu().numpy()     # (n, F)
        for frames, values, slots in zip(view.group.windows, spread, self.slots(view.group, 0, view.settings)):
            state[frames[slots]] = values[slots]

    def slots(self, group, num_frames, settings):
        return np.ones_like(group.new)

    def arrays(self, state):
        return [("spread", state)]


class _Windows(collectors.Collector):
    """A per-group consumer added from outside: windows and valid frames seen, per group in order."""

    name = "test_windows"
    per_group = True

    def new(self, seq, sampling):
        return {"windows": np.zeros(1), "weights": np.zeros(1)}

    def add(self, state, view):
        state["windows"] += len(view.group.windows)
        state["weights"] = state["weights"] * 0.5 + view.weights.sum()    # order-dependent on purpose

    def arrays(self, state):
        return list(state.items())

    def load(self, state, named):
        state.update({n: a.copy() for n, a in named})

    def combine(self, total, part):
        total["windows"] += part["windows"]
        total["weights"] = total["weights"] * 0.5 + part["weights"]


def test_a_collector_added_to_the_registry_is_kept_and_merged_across_ranks(monkeypatch, one_thread):
    monkeypatch.setitem(collectors.COLLECTORS, "test_spread", _Spread())
    monkeypatch.setitem(collectors.COLLECTORS, "test_windows", _Windows())
    seqs = make_sequences(2, 23) + make_sequences(1, 5, seed=2)
    model, sampler = tiny_model(frames=9), DDIMSampler(Diffusion(), 2)
    settings = dict(hypotheses=3, group=1, exact_frames=False, seed=3, keep={"test_spread", "test_windows"},
                    progress=False)
    single = evaluate(model, sampler, seqs, **settings)
    assert [r.kept["test_windows"]["windows"][0] for r in single] == [3, 3, 1]
    for world in (2, 3):
        merged = _shard_and_merge(model, sampler, seqs, settings, world)
        for a, b in zip(single, merged):
            assert np.isfinite(a.kept["test_spread"]).all() and a.kept["test_spread"].max() > 0
            assert np.array_equal(a.kept["test_spread"], b.kept["test_spread"]), world
            assert a.kept["test_windows"] == b.kept["test_windows"], world
            assert np.array_equal(a.sums[("p1", "J-Agg")], b.sums[("p1", "J-Agg")])


def test_an_unknown_output_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown evaluation output.*'posse'.*choose from"):
        EvalSettings(keep={"posse"})


# ---------------------------------------------------------------- torchrun, end to end

TINY = ["-f", "9", "-cs", "16", "-dep", "1", "--heads", "2", "--nolog", "-num_proposals", "3",
        "-sampling_timesteps", "2", "--device", "cpu"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _torchrun(nproc: int, script, args, timeout=180):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(_free_port()), str(script), *args]
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def _checkpoint(path: Path, frames=9) -> Path:
    """A tiny checkpoint (-f 9 -cs 16 -dep 1 --heads 2), every parameter randomised."""
    from common.model.denoiser import Denoiser, DenoiserConfig

    torch.manual_seed(0)
    model = Denoiser(DenoiserConfig(frames=frames, channels=16, depth=1, heads=2, drop_path=0.0))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    atomic_save(make_checkpoint(model), path)
    return path


@pytest.fixture(scope="module")
def h36m_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("h36m")
    synthetic_as_h36m(d / "data", frames_per_sequence=40)
    return d / "data", _checkpoint(d / "tiny.bin")


def _tables(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


@linux_only
def test_main_py_gives_the_same_tables_with_1_2_and_3_processes(h36m_setup, tmp_path, one_thread):
    from common.cli import h36m

    data, ckpt = h36m_setup
    args = ["--data-dir", str(data), "--evaluate", str(ckpt), *TINY, "-b", "2", "--p2", "--by-subject",
            "-a", "Walking,Eating,Sitting"]
    assert h36m.main([*args, "-c", str(tmp_path / "one")]) == 0
    single = (tmp_path / "one" / "eval_tiny.json").read_text()
    tables = json.loads(single)
    assert set(tables["actions"]) == {"p1", "p2", "mpjve", "accel", "bone_cv"} and "S9" in tables["subjects"]["p1"]["J-Agg"]
    for nproc in (2, 3):
        out = tmp_path / f"n{nproc}"
        proc = _torchrun(nproc, ROOT / "main.py", [*args, "-c", str(out)])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert f"evaluating across {nproc} processes" in proc.stdout
        assert (out / "eval_tiny.json").read_text() == single, nproc
        assert proc.stdout.count("Protocol #1 (MPJPE, mm), iteration k=2") == 1          # rank 0 alone prints
        assert sorted(p.name for p in out.iterdir()) == ["eval_tiny.json", "eval_tiny.log"]


def write_3dhp_test_file(folder: Path, lengths: dict) -> Path:
    """A processed MPI-INF-3DHP test file (data_test_3dhp_ori.npz, the authors' layout) of
    generated motion: absolute camera-space 3D in mm 3-5 m from each sequence's test camera,
    its exact pinhole projection in pixels, every fifth frame invalid, activity labels."""
    rng = np.random.default_rng(7)
    data = {}
    for i, (seq, n) in enumerate(lengths.items()):
        c = camera_pixels_of_test_sequence(seq)
        base = rng.normal(scale=250.0, size=(1, 17, 3))
        wave = np.sin(np.linspace(0, 4, n))[:, None, None] * rng.normal(scale=40.0, size=(1, 17, 3))
        pose = base + wave
        pose -= pose[:, ROOT_INDEX:ROOT_INDEX + 1]
        root = np.stack([np.linspace(-300, 300, n), np.full(n, 100.0), np.full(n, 3500.0 + 500 * i)], axis=1)
        p3d = pose + root[:, None]
        p2d = np.stack([c["fx"] * p3d[..., 0] / p3d[..., 2] + c["cx"], c["fy"] * p3d[..., 1] / p3d[..., 2] + c["cy"]],
                       axis=-1)
        data[seq] = {"data_3d": p3d.astype(np.float32), "data_2d": p2d.astype(np.float32),
                     "valid": (np.arange(n) % 5 != 0).astype(np.float64), "activity": (np.arange(n) // 7) % 7 + 1}
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / TEST_NPZ, data=data)
    return folder / TEST_NPZ


@linux_only
def test_main_3dhp_writes_the_same_mat_files_with_1_2_and_3_processes(tmp_path, one_thread):
    from common.cli import mpi_inf_3dhp
    from common.evaluation.mpi_inf_3dhp import MAT_STEMS, read_3dhp_mat

    write_3dhp_test_file(tmp_path / "data", {"TS1": 50, "TS3": 23, "TS5": 7, "TS6": 31})   # TS5 shorter than F
    ckpt = _checkpoint(tmp_path / "tiny.bin")
    args = ["--data-dir", str(tmp_path / "data"), "--evaluate", str(ckpt), *TINY]
    assert mpi_inf_3dhp.main([*args, "-c", str(tmp_path / "one")]) == 0
    files = [f"inference_data_{stem}.mat" for stem in MAT_STEMS.values()]
    single = {f: read_3dhp_mat(tmp_path / "one" / f) for f in files}
    assert set(single[files[0]]) == {"TS1", "TS3", "TS5", "TS6"}
    assert single[files[0]]["TS1"].shape == (3, 17, 50, 2)
    for nproc in (2, 3):
        out = tmp_path / f"n{nproc}"
        proc = _torchrun(nproc, ROOT / "main_3dhp.py", [*args, "-c", str(out)])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert (out / "eval_tiny.json").read_text() == (tmp_path / "one" / "eval_tiny.json").read_text()
        for f in files:
            got = read_3dhp_mat(out / f)
            for seq, pred in single[f].items():
                assert np.array_equal(got[seq], pred), (nproc, f, seq)
        assert (out / "3dhp_scores" / "summary.csv").read_text() == \
            (tmp_path / "one" / "3dhp_scores" / "summary.csv").read_text()


# ---------------------------------------------------------------- failures

FAULT_DRIVER = """
import atexit, os, signal, sys, time
import common.evaluation.evaluate as ev
from common.cli import {module} as cli

original, calls = ev._view, []
def faulty(*args, **kwargs):
    calls.append(1)
    if os.environ["RANK"] == "0":
        time.sleep(0.25)                     # rank 0 is slow: it is still at work when rank 1 fails
    elif len(calls) == 2:
        if "{fault}" == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("injected failure in rank 1")
    return original(*args, **kwargs)
ev._view = faulty
atexit.register(lambda: open("{counts}" + os.environ["RANK"], "w").write(str(len(calls))))
sys.exit(cli.main(sys.argv[1:]))
"""


def _fault_run(tmp_path, module, fault, args):
    driver = tmp_path / f"driver_{fault}.py"
    driver.write_text(FAULT_DRIVER.format(module=module, fault=fault, counts=tmp_path / "groups_scored_by_rank"))
    start = time.perf_counter()
    proc = _torchrun(2, driver, [*args, "-c", str(tmp_path / "out")], timeout=120)
    return proc, time.perf_counter() - start


@linux_only
def test_a_rank_that_raises_ends_the_run_with_its_error_on_rank_0_and_nothing_written(h36m_setup, tmp_path):
    data, ckpt = h36m_setup
    proc, _ = _fault_run(tmp_path, "h36m", "raise",
                         ["--data-dir", str(data), "--evaluate", str(ckpt), *TINY, "-b", "2", "-a", "Walking,Eating"])
    assert proc.returncode != 0
    assert "error: the evaluation failed on 1 of 2 processes, nothing was written: rank 1" in proc.stderr
    assert "RuntimeError: injected failure in rank 1" in proc.stderr
    assert "Protocol #1" not in proc.stdout
    assert not list((tmp_path / "out").glob("eval_*"))
    # rank 0 stopped at its next group instead of finishing its share (24 groups of 2 windows; when
    # rank 1 fails first, rank 0 may stop before scoring any)
    assert int((tmp_path / "groups_scored_by_rank0").read_text()) < 12


@linux_only
def test_a_killed_rank_ends_the_run_without_tables_or_mat_files(tmp_path):
    write_3dhp_test_file(tmp_path / "data", {"TS1": 60, "TS2": 40})
    ckpt = _checkpoint(tmp_path / "tiny.bin")
    proc, seconds = _fault_run(tmp_path, "mpi_inf_3dhp", "kill",
                               ["--data-dir", str(tmp_path / "data"), "--evaluate", str(ckpt), *TINY])
    assert proc.returncode != 0
    assert "Signal 9 (SIGKILL)" in proc.stderr and "rank      : 1" in proc.stderr   # torchrun's report
    assert seconds < 100                                                          # no hang
    out = tmp_path / "out"
    assert not list(out.glob("eval_*")) and not list(out.glob("*.mat")) and not (out / "3dhp_scores").exists()


def _spawned_rank(rank: int, port: int, out: str, fault: str) -> None:
    """Without torchrun (as on another node). fault 'kill': rank 1 dies mid-evaluation;
    'data': rank 1 has other 2D input of the same lengths. Writes seconds and the error."""
    import signal

    import common.evaluation.evaluate as ev
    from common.run.distributed import init_from_env

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info, _ = init_from_env(torch.device("cpu"))
    if rank == 1 and fault == "kill":
        ev._view = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    seqs = make_sequences(4, 30)
    if rank == 1 and fault == "data":
        seqs[2].pose_2d = seqs[2].pose_2d + 1e-3
    model, sampler = tiny_model(frames=9), DDIMSampler(Diffusion(), 1)
    core = InferenceCore.of_sampler(model, sampler, hypotheses=2, group=2)
    start = time.perf_counter()
    try:
        de.evaluate_distributed(core, seqs, EvalSettings(progress=False), info, log=lambda *_: None)
        Path(out).write_text("no error")
    except dmerge.DistributedEvaluationError as e:
        Path(out).write_text(f"{time.perf_counter() - start:.1f}\n{e}")


def _spawn_two(tmp_path, fault):
    import torch.multiprocessing as mp

    ctx, port = mp.get_context("spawn"), _free_port()
    procs = [ctx.Process(target=_spawned_rank, args=(r, port, str(tmp_path / f"rank{r}.txt"), fault))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    return [p.exitcode for p in procs]


@linux_only
def test_without_torchrun_rank_0_names_a_killed_rank_instead_of_hanging(tmp_path):
    assert _spawn_two(tmp_path, "kill") == [0, -9]
    seconds, message = (tmp_path / "rank0.txt").read_text().split("\n", 1)
    assert "failed: rank 1 stopped (crashed or was killed) before finishing its share" in message
    assert "nothing was written" in message
    assert float(seconds) < 30


@linux_only
def test_a_rank_with_other_input_is_refused_instead_of_merged(tmp_path):
    assert _spawn_two(tmp_path, "data") == [0, 0]
    message = (tmp_path / "rank0.txt").read_text()
    assert "rank(s) 1 evaluated other data, settings or weights than rank 0" in message
    assert "failed on another process" in (tmp_path / "rank1.txt").read_text()
