"""Real signals to real processes: SIGTERM (what SLURM, Kubernetes and torchrun send before a
kill) and SIGINT (Ctrl-C) stop training and evaluation cleanly, print how to continue, exit
with 128 + the signal's number, and the resumed run ends with the weights of a run never
stopped, bit for bit; a signal during a checkpoint write waits until the write is complete."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common.model.checkpoint import safe_load
from conftest import synthetic_as_h36m

ROOT = Path(__file__).resolve().parents[1]
TINY = ["-f", "9", "-cs", "16", "-dep", "1", "--heads", "2", "-b", "8", "-s", "1", "--nolog", "-a", "Walking",
        "-k", "cpn_ft_h36m_dbb", "--device", "cpu"]
EPOCHS = 20
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
HINT = re.compile(r"interrupted by (SIG\w+): training interrupted during epoch (\d+); continue from the end of "
                  r"epoch (\d+) with: -r (\S+)")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_as_h36m(tmp_path_factory.mktemp("data"), frames_per_sequence=24)


def main_py(data, ck, *extra):
    return [sys.executable, str(ROOT / "main.py"), "--data-dir", str(data), "-c", str(ck), *extra]


def default_sigint() -> None:
    """In the child: SIGINT handled as Python does by default, also when this test runs in a job a
    non-interactive shell started in the background (which ignores SIGINT, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.005)


def weights(path: Path) -> dict:
    return safe_load(path)["model_pos"]


@pytest.fixture(scope="module")
def straight_run(data, tmp_path_factory):
    """The -c folder of a run never stopped."""
    ck = tmp_path_factory.mktemp("straight") / "ck"
    proc = subprocess.run(main_py(data, ck, "-e", str(EPOCHS), *TINY), env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return ck


@pytest.fixture(scope="module")
def straight(straight_run):
    return weights(straight_run / "latest_epoch.bin")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_training_with_the_resume_command_and_the_resumed_run_is_exact(data, straight, tmp_path,
                                                                                       sig, code):
    ck = tmp_path / "ck"
    proc = subprocess.Popen(main_py(data, ck, "-e", str(EPOCHS), *TINY), env=ENV, preexec_fn=default_sigint,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(ck / "latest_epoch.bin", proc)                   # training is past its first epoch
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    hint = HINT.search(err)
    assert hint, err
    name, during, done, resume = hint.groups()
    assert name == signal.Signals(sig).name and int(during) == int(done) + 1 and 1 <= int(done) < EPOCHS
    saved = safe_load(resume)
    assert saved["epoch"] == int(done)                        # the file the hint names holds that epoch
    assert not list(ck.glob("*.tmp"))                         # no half-written checkpoint left

    # The printed command continues the run (no -e, no architecture: all from the file).
    proc = subprocess.run(main_py(data, ck, "-r", resume, "--nolog", "--device", "cpu"), env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"resumed from {resume} after epoch {done}" in proc.stdout
    resumed = weights(ck / "latest_epoch.bin")
    assert safe_load(ck / "latest_epoch.bin")["epoch"] == EPOCHS
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


EVAL_STOPPED = "interrupted by SIGTERM: evaluation interrupted before its tables were complete; nothing was written"


def start_long_evaluation(command, data, out_dir: Path, checkpoint: Path) -> subprocess.Popen:
    """An evaluation (command: main_py or torchrun) that lasts long enough to be stopped (-b 1:
    one window per group, many groups), started and waited for until it is about to sample."""
    proc = subprocess.Popen(command(data, out_dir, "--evaluate", str(checkpoint), "-a", "Walking", "-k",
                                    "cpn_ft_h36m_dbb", "--device", "cpu", "-num_proposals", "20",
                                    "-sampling_timesteps", "200", "-b", "1", "--nolog", "--engine", "eager",
                                    "--compile", "off"),
                            env={**ENV, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for(out_dir, proc)                                   # created by the writability check, before sampling
    return proc


def test_sigterm_during_evaluation_stops_it_with_143_and_writes_no_tables(data, straight_run, tmp_path):
    out_dir = tmp_path / "eval"
    proc = start_long_evaluation(main_py, data, out_dir, straight_run / "best_epoch.bin")
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert EVAL_STOPPED in err
    assert "Traceback" not in err and "Protocol #1" not in out
    assert not list(out_dir.glob("eval_*"))


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def torchrun(data, ck, *extra):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
            str(_free_port()), str(ROOT / "main.py"), "--data-dir", str(data), "-c", str(ck), *extra]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform != "linux", reason="reads the worker processes from /proc")
def test_sigterm_under_torchrun_stops_every_rank_with_143_and_the_resumed_run_is_exact(data, tmp_path):
    """SLURM signals every task of a job: SIGTERM to both ranks of a torchrun job. Both stop
    at the same batch (no rank left waiting in a collective) with exit code 143, rank 0 says
    how to continue, and the resumed two-process run ends with the weights of one never
    stopped (every rank resumes its own drop-path generator)."""
    # Two blocks and a high drop-path rate: the ranks draw different drop-path masks.
    epochs = ["-e", str(EPOCHS), *TINY, "-dep", "2", "--drop-path", "0.5"]
    straight = subprocess.run(torchrun(data, tmp_path / "straight", *epochs), env=ENV, capture_output=True,
                              text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]

    ck = tmp_path / "ck"
    proc = subprocess.Popen(torchrun(data, ck, *epochs), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(ck / "latest_epoch.bin", proc)
    workers = _children(proc.pid)
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "rank 1 stopped with the others" in err
    for pid in workers:                                       # torchrun's report of each worker's exit code
        assert f"exitcode  : 143 (pid: {pid})" in err, err[-3000:]
    hint = HINT.search(err)
    assert hint and hint.group(1) == "SIGTERM", err[-3000:]
    resume = hint.group(4)
    assert 1 <= int(hint.group(3)) < EPOCHS

    resumed = subprocess.run(torchrun(data, ck, "-r", resume, "--nolog", "--device", "cpu"), env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = weights(tmp_path / "straight" / "latest_epoch.bin"), weights(ck / "latest_epoch.bin")
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key


# In-process checks of common.run.signals, each run in a fresh child process: a signal sent to a
# process that earlier tests filled with native thread pools (OpenVINO, torch) may land on one
# of their threads (in the whole suite it once crashed the test process).
CHECKPOINT_WRITE = """
import os, signal, sys, time
from pathlib import Path
import torch
from common.run import signals, train
from common.model.checkpoint import safe_load
from common.datasets.clips import ClipSampler
from common.model.denoiser import Denoiser, DenoiserConfig
from common.model.diffusion import Diffusion
from conftest import make_sequences

out = Path(sys.argv[1])
torch.manual_seed(0)
model = Denoiser(DenoiserConfig(frames=5, channels=16, depth=1, heads=2))
clips = ClipSampler(make_sequences(2, 10), 5, 2, seed=3)
trainer = train.Trainer(model, Diffusion(), clips, train.TrainConfig(epochs=3, progress=False), "cpu", out,
                        validate=lambda m: 1.0)
atomic_save, written = train.atomic_save, []

def slow_save(obj, path):
    if not written:
        os.kill(os.getpid(), signal.SIGTERM)      # arrives while latest_epoch.bin is being written
        time.sleep(0.05)
    atomic_save(obj, path)
    written.append(Path(path).name)

train.atomic_save = slow_save
try:
    with signals.handle_signals():
        trainer.fit(log=lambda *_: None)
    raise SystemExit("not interrupted")
except signals.Interrupted as stop:
    assert stop.signum == signal.SIGTERM and stop.exit_code == 143
assert written == ["latest_epoch.bin", "best_epoch.bin"] and trainer.epoch == 1, written
assert safe_load(out / "best_epoch.bin")["epoch"] == 1
assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL     # the handler is gone after the block
print("ok")
"""

IGNORED_SIGINT = """
import os, signal, time
from common.run import signals
signal.signal(signal.SIGINT, signal.SIG_IGN)
with signals.handle_signals():
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGINT)                         # nothing happens
    time.sleep(0.05)
print("ok")
"""

SECOND_SIGNAL = """
import os, signal, time
from common.run import signals
unwound = []
try:
    with signals.handle_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)                # arrives while the first one unwinds
            time.sleep(0.05)
            unwound.append(True)
except signals.Interrupted:
    pass
assert unwound and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
print("ok")
"""

ENTRY_POINT_TEARDOWN = """
import os, signal, sys, time
from common.run import signals
from common.run.experiment import entry_point

def main():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)

code = entry_point(main)
assert code == 143, code
os.kill(os.getpid(), signal.SIGTERM)        # torchrun's signal to a rank that is already shutting down
time.sleep(0.05)
print("ok")
sys.exit(code)
"""


def _in_child(code: str, *argv, returncode: int = 0) -> None:
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300,
                          env={**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"})
    assert proc.returncode == returncode and proc.stdout.strip() == "ok", (proc.returncode, proc.stdout + proc.stderr)


def test_a_signal_during_a_checkpoint_write_waits_until_every_file_is_written(tmp_path):
    """The signal comes while latest_epoch.bin is being written: best_epoch.bin is still
    written, then the run stops."""
    _in_child(CHECKPOINT_WRITE, str(tmp_path))


def test_an_ignored_sigint_stays_ignored():
    _in_child(IGNORED_SIGINT)


def test_a_second_signal_during_the_stop_is_ignored():
    """torchrun signals the remaining ranks again when the first one ends: the clean stop
    already under way must not be cut short by it."""
    _in_child(SECOND_SIGNAL)


def test_a_signal_after_the_stop_cannot_change_the_exit_code():
    """After an interrupted entry point has printed its hint, a further SIGTERM (torchrun sends
    one to every rank still alive when the first one exits) arrives while the process shuts
    down: it still exits with 143, not killed by the signal."""
    _in_child(ENTRY_POINT_TEARDOWN, returncode=143)


@pytest.mark.skipif(sys.platform != "linux", reason="reads the worker processes from /proc")
def test_sigterm_under_torchrun_evaluation_stops_every_rank_with_143_and_writes_no_tables(data, straight_run,
                                                                                          tmp_path):
    """SLURM signals every task: SIGTERM to both ranks of a torchrun evaluation. Both stop with
    143 (no rank left waiting in a collective), and no table is written."""
    out_dir = tmp_path / "eval"
    proc = start_long_evaluation(torchrun, data, out_dir, straight_run / "best_epoch.bin")
    time.sleep(2.0)
    workers = _children(proc.pid)
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    for pid in workers:                                       # torchrun's report of each worker's exit code
        assert f"exitcode  : 143 (pid: {pid})" in err, err[-3000:]
    assert err.count(EVAL_STOPPED) == 2 and "Protocol #1" not in out, err[-3000:]   # both ranks, mid-evaluation
    assert not list(out_dir.glob("eval_*"))
