"""Distributed training on the CPU (gloo, 2 processes): ranks stay identical and match one
process with the same global batch; torchrun drives main.py with only rank 0 writing."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from common.datasets.clips import ClipSampler
from common.model.denoiser import Denoiser, DenoiserConfig
from common.model.diffusion import Diffusion
from common.run.distributed import DistInfo, cleanup, init_from_env, wrap
from common.geometry.coco import input_layout
from common.run.train import Trainer, TrainConfig
from conftest import make_sequences

ROOT = Path(__file__).resolve().parents[1]
CFG = DenoiserConfig(frames=5, channels=16, depth=2, heads=2, drop_path=0.0)
BATCH = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(out_dir: Path, batch: int, info: DistInfo, device="cpu"):
    torch.manual_seed(0)
    model = Denoiser(CFG)
    clips = ClipSampler(make_sequences(3, 25), CFG.frames, batch, augment=True, layout=input_layout("h36m"),
                        seed=3, rank=info.rank, world_size=info.world_size)
    cfg = TrainConfig(epochs=2, lr=1e-3, seed=5, checkpoint_frequency=0, progress=False)
    trainer = Trainer(model, Diffusion(), clips, cfg, device, out_dir, dist=info,
                      ddp_model=wrap(model, info, torch.device(device)))
    trainer.fit(log=lambda *_: None)
    return model, clips.num_batches()


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info, _ = init_from_env(torch.device("cpu"))
    model, batches = _train(Path(out_dir) / f"run{rank}", BATCH, info)
    torch.save({"state": model.state_dict(), "batches": batches}, Path(out_dir) / f"rank{rank}.pt")
    cleanup(info)


def test_two_gloo_ranks_match_each_other_and_one_process_with_the_global_batch(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    single, batches = _train(tmp_path / "single", 2 * BATCH, DistInfo())
    assert r0["batches"] == r1["batches"] == batches > 1
    for name, w in single.state_dict().items():
        assert torch.equal(r0["state"][name], r1["state"][name]), name
        assert torch.allclose(r0["state"][name], w, atol=2e-5), name
    assert sorted(p.name for p in (tmp_path / "run0").iterdir()) == ["latest_epoch.bin"]
    assert not (tmp_path / "run1").exists()                       # only rank 0 writes


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun smoke test on Linux")
def test_torchrun_drives_main_py(tmp_path):
    from common.datasets.synthetic import write_synthetic_h36m

    write_synthetic_h36m(tmp_path, name="synthetic", frames_per_sequence=20)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(ROOT / "main.py"), "-d", "synthetic", "-k", "gt", "--data-dir", str(tmp_path), "-c", str(tmp_path / "ck"),
           "-f", "9", "-cs", "16", "-dep", "1", "--heads", "2", "-e", "1", "-b", "4", "-s", "1", "--nolog", "-a", "Walking",
           "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "x 2 processes" in proc.stdout
    assert (tmp_path / "ck" / "latest_epoch.bin").is_file()


def test_the_collective_timeout_is_hours_and_set_by_the_environment(monkeypatch):
    from datetime import timedelta

    from common.run.distributed import collective_timeout

    monkeypatch.delenv("D3DP_DIST_TIMEOUT", raising=False)
    assert collective_timeout() == timedelta(hours=6)           # far beyond NCCL's default 10 minutes
    monkeypatch.setenv("D3DP_DIST_TIMEOUT", "90")
    assert collective_timeout() == timedelta(minutes=90)
    for bad in ("soon", "0", "-5"):
        monkeypatch.setenv("D3DP_DIST_TIMEOUT", bad)
        with pytest.raises(ValueError, match="D3DP_DIST_TIMEOUT"):
            collective_timeout()
