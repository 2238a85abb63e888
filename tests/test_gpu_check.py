"""benchmarks/gpu_check.py without its heavy steps: the refusal without CUDA, the flags, the
step selection and deadline, the parsing of the commands' output, the summary table, and the
noise drawn on the CPU for the parity step."""
import json
import sys
import time

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu_check import Outcome, Result, Skipped, Step

CONFORMANCE_OUTPUT = """== tests/fixtures/d3dp_reference_A
  denoiser_out           max |dev| 1.200e-02  (tol 1e-04)  FAIL
  denoiser_train_out     max |dev| 9.000e-03  (tol 1e-04)  FAIL
  betas                  max |dev| 2.200e-16  (tol 1e-10)  ok
  ddim_out               max |dev| 1.300e-02  (tol 1e-04)  FAIL
  ddim_flip_out          max |dev| {flip}  (tol 1e-04)  FAIL
  mpjpe                  max |dev| 0.000e+00  (tol 1e-06)  ok
  FAILED: denoiser_out, denoiser_train_out, ddim_out, ddim_flip_out
"""


def test_without_cuda_it_refuses_in_one_line_and_runs_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: CUDA is not available") and "--device cpu" in lines[0]
    assert not (tmp_path / "out").exists()
    assert gpu_check.device_refusal("cpu") is None
    assert gpu_check.device_refusal("nonsense").startswith("error: --device nonsense")


def test_flags_and_step_selection(capsys):
    args = gpu_check.parse_args([])
    assert args.device == "cuda" and not args.quick and args.out is None and args.deadline_s == gpu_check.DEADLINE_S
    assert args.selected == gpu_check.STEPS
    args = gpu_check.parse_args(["--device", "cpu", "--quick", "--steps", "conformance,tests", "--out", "x"])
    assert [s.key for s in args.selected] == ["conformance-fp32", "conformance-bf16", "conformance-fp16", "tests"]
    with pytest.raises(SystemExit) as e:
        gpu_check.parse_args(["--steps", "conform"])
    assert e.value.code == 2 and "unknown step 'conform'" in capsys.readouterr().err


def test_the_check_runs_every_step_keeps_going_and_writes_the_summary(monkeypatch, tmp_path, capsys):
    def passes(ctx, log):
        log.write("some output\n")
        return Outcome(True, "1.0 frames/s | 2 MiB")

    def breaks(ctx, log):
        raise RuntimeError("CUDA error: an illegal memory access")

    def cannot(ctx, log):
        raise Skipped("no checkpoint")

    suite = [sys.executable, "-c", "print('SKIPPED [1] t.py:1: needs a CUDA GPU'); print('3 passed, 1 skipped')"]
    steps = [Step("a", passes), Step("b", breaks), Step("c", cannot), Step("d", passes, needs_s=1e9),
             Step("tests", gpu_check.step_tests, early=lambda ctx: suite)]       # started at the beginning
    monkeypatch.setattr(gpu_check, "STEPS", steps)
    monkeypatch.setattr(gpu_check, "OVERLAP_MIN_CPUS", 1)
    assert gpu_check.main(["--device", "cpu", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "| a | PASS |" in out and "1.0 frames/s \\| 2 MiB" in out
    assert "| b | FAIL |" in out and "RuntimeError: CUDA error: an illegal memory access" in out
    assert "| c | SKIP |" in out and "| d | SKIP |" in out and "not started" in out
    assert "| tests | PASS |" in out and "3 passed, 1 skipped; skipped for want of CUDA: 1" in out
    assert "Traceback" in (tmp_path / "02-b.log").read_text()
    assert (tmp_path / "01-a.log").read_text() == "some output\n"
    assert "[exit code 0]" in (tmp_path / "05-tests.log").read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["result"] for s in summary["steps"]] == ["PASS", "FAIL", "SKIP", "SKIP", "PASS"]
    assert (tmp_path / "summary.md").read_text().count("\n| ") == 6      # header and five rows


def test_markdown_table_and_environment_line():
    rows = [Result("train", "PASS", 12.34, "max |weight difference| 0"), Result("tests", "FAIL", 1.0, "a\nb")]
    table = gpu_check.markdown_table(rows).splitlines()
    assert table[:2] == ["| step | result | seconds | key numbers |", "|---|---|---:|---|"]
    assert table[2] == "| train | PASS | 12.3 | max \\|weight difference\\| 0 |"
    assert table[3] == "| tests | FAIL | 1.0 | a b |"
    env = {"device": "cuda", "name": "NVIDIA H100", "torch": "2.13.0", "cuda": "12.8", "cudnn": 91000,
           "python": "3.11.7", "cpus": 16}
    assert gpu_check.environment_line(env).startswith("NVIDIA H100 (cuda); torch 2.13.0, CUDA 12.8, cuDNN 91000")
    assert "no CUDA build" in gpu_check.environment_line({**env, "cuda": None})


def test_conformance_and_pytest_output_are_judged():
    checks = gpu_check.conformance_checks(CONFORMANCE_OUTPUT.format(flip="1.100e-02"))
    assert len(checks) == 6 and checks["betas"] == (2.2e-16, 1e-10, True)
    ok, numbers = gpu_check.judge_conformance(checks, "bf16", rc=1)
    assert ok and "denoiser 1.2e-02 m, DDIM 1.3e-02 m" in numbers and "other 2/2" in numbers
    assert not gpu_check.judge_conformance(checks, "fp16", rc=1)[0]           # beyond fp16's bound
    assert not gpu_check.judge_conformance(checks, None, rc=1)[0]             # fp32 goes by the exit code
    nan = gpu_check.conformance_checks(CONFORMANCE_OUTPUT.format(flip="nan"))
    assert not gpu_check.judge_conformance(nan, "bf16", rc=1)[0]
    assert not gpu_check.judge_conformance({}, None, rc=0)[0]

    text = ("SKIPPED [3] tests/test_device.py:46: needs a CUDA GPU\n"
            "SKIPPED [1] tests/test_x.py:9: mediapipe is not installed\n"
            "5 passed, 4 skipped, 14 warnings in 17.20s\n")
    assert gpu_check.pytest_summary(text) == {"counts": {"passed": 5, "skipped": 4, "warnings": 14},
                                              "cuda_skipped": 3}


def test_a_command_past_its_time_limit_is_stopped(tmp_path):
    log_path = tmp_path / "x.log"
    start = time.monotonic()
    with open(log_path, "a") as log:
        rc, text = gpu_check.run_command([sys.executable, "-c", "print('started', flush=True); "
                                          "import time; time.sleep(60)"], log, timeout=3)
    assert rc == 124 and time.monotonic() - start < 30
    assert text.startswith("started") and "time limit" in text


def test_noise_drawn_on_cpu_replays_the_cpu_draws_and_is_undone():
    from common.inference import sampling

    original = sampling.group_noise
    expected = original(3, 2, (4, 9, 17, 3), 2, seed=1, device="cpu")
    with gpu_check.noise_drawn_on_cpu():
        drawn = sampling.group_noise(3, 2, (4, 9, 17, 3), 2, 1, "cpu")
    assert sampling.group_noise is original
    assert all(torch.equal(a, b) for a, b in zip(drawn, expected))
    assert gpu_check.worst([1.0, float("nan"), 2.0]) != gpu_check.worst([1.0, float("nan"), 2.0])   # NaN kept
    assert gpu_check.worst([]) != gpu_check.worst([]) and gpu_check.worst([], 0.0) == 0.0
