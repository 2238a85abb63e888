"""One training run per -c folder: a second run is refused while the first is alive, naming
its process and host; a killed run leaves nothing stuck."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.model.checkpoint import safe_load
from common.cli import h36m as main_script
from common.storage.locks import LOCK_NAME, FolderInUse, run_lock
from conftest import synthetic_as_h36m

ROOT = Path(__file__).resolve().parents[1]
TINY = ["-f", "9", "-cs", "16", "-dep", "1", "--heads", "2", "-b", "8", "-s", "1", "--nolog", "-a", "Walking",
        "-k", "cpn_ft_h36m_dbb", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
HOLD = "import sys, time; from common.storage.locks import run_lock\nwith run_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(600)"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_as_h36m(tmp_path_factory.mktemp("data"), frames_per_sequence=24)


def holder(folder: Path) -> subprocess.Popen:
    """Another process holding the lock of folder."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_run_into_a_folder_another_process_holds_is_refused_and_a_killed_holder_frees_it(data, tmp_path, capsys):
    ck = tmp_path / "ck"
    other = holder(ck)
    try:
        rc = main_script.main(["--data-dir", str(data), "-c", str(ck), "-e", "1", *TINY])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith("error:") and "\n" not in err
        assert f"pid {other.pid} on host {socket.gethostname()}" in err and "another -c folder" in err
        assert not list(ck.glob("*.bin"))                       # the refused run wrote nothing
    finally:
        other.send_signal(signal.SIGKILL)                       # killed: no clean-up of its own
        other.wait()
    assert main_script.main(["--data-dir", str(data), "-c", str(ck), "-e", "1", *TINY]) == 0
    assert (ck / "latest_epoch.bin").is_file()
    with run_lock(ck):                                          # the finished run let it go too
        pass


def test_the_lock_is_held_exactly_while_the_block_runs(tmp_path):
    with run_lock(tmp_path) as path:
        assert path == tmp_path / LOCK_NAME and f"pid {os.getpid()}" in path.read_text()
        probe = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(600)", "pass"), str(tmp_path)],
                               env=ENV, capture_output=True, text=True, timeout=60)
        assert probe.returncode != 0 and "FolderInUse" in probe.stderr and f"pid {os.getpid()}" in probe.stderr
        with pytest.raises(FolderInUse):                        # a second open file in this process, too
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):
        pass


def test_two_trainings_started_at_once_into_one_folder_one_runs_the_other_is_refused(data, tmp_path):
    ck = tmp_path / "ck"
    cmds = [[sys.executable, str(ROOT / "main.py"), "--data-dir", str(data), "-c", str(ck), "-e", "20",
             "--seed", str(seed), *TINY] for seed in (11, 12)]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in cmds]
    results = [(p.wait(timeout=600), p.communicate()[1]) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    winner = [rc for rc, _ in results].index(0)
    refused = results[1 - winner][1]
    # Refused by the lock while the other ran, or (had it already finished) by its checkpoints.
    assert (f"pid {procs[winner].pid} on host" in refused) or "holds the checkpoints of an earlier run" in refused
    assert safe_load(ck / "latest_epoch.bin")["args"]["seed"] == (11, 12)[winner]
    assert safe_load(ck / "best_epoch.bin")["args"]["seed"] == (11, 12)[winner]


def test_a_second_training_while_the_first_runs_names_the_first(data, tmp_path):
    ck = tmp_path / "ck"
    first = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--data-dir", str(data), "-c", str(ck), "-e",
                              "200", *TINY], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while f"pid {first.pid}" not in ((ck / LOCK_NAME).read_text() if (ck / LOCK_NAME).exists() else ""):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.01)
        second = subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(data), "-c", str(ck),
                                 "-e", "1", *TINY], env=ENV, capture_output=True, text=True, timeout=600)
        assert second.returncode == 2
        assert f"is in use by another training run: pid {first.pid} on host {socket.gethostname()}" in second.stderr
        assert first.poll() is None                             # the first run goes on
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 143
