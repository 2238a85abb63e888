"""The Python API (d3dp.Lifter, d3dp.evaluate_checkpoint): the same numbers as the command lines, the same
errors, and the package as it installs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import common as d3dp
from common.cli import h36m as main_script
from common.cli import in_the_wild as wild_script
from common.geometry.coco import coco_to_h36m
from common.datasets.synthetic import write_synthetic_h36m
from conftest import save_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
W, H = 640, 480


def _checkpoint(folder: Path, layout: str) -> Path:
    return save_tiny_checkpoint(folder / f"tiny_{layout}.bin", layout)


def _coco_keypoints(frames: int = 23, gaps: bool = True) -> np.ndarray:
    """A person-like COCO-17 track in pixels with confidences; with gaps, a missing joint, a
    missing frame and a joint below the confidence threshold."""
    rng = np.random.default_rng(2)
    base = np.array([[320, 100], [310, 90], [330, 90], [300, 95], [340, 95], [280, 150], [360, 150], [260, 210],
                     [380, 210], [250, 260], [390, 260], [295, 270], [345, 270], [290, 350], [350, 350],
                     [285, 430], [355, 430]], np.float32)
    xy = base[None] + np.cumsum(rng.normal(0, 2, (frames, 17, 2)), axis=0).astype(np.float32)
    conf = rng.uniform(0.5, 1.0, (frames, 17, 1)).astype(np.float32)
    kp = np.concatenate([xy, conf], axis=-1)
    if not gaps:
        return kp
    kp[5, 9] = np.nan                  # a wrist not found
    kp[11, :, :] = np.nan              # a frame without a detection
    kp[7, 3, 2] = 0.1                  # below the confidence threshold
    return kp


@pytest.mark.parametrize("layout", ["coco", "h36m"])
def test_lift_gives_the_poses_of_the_keypoint_file_command(tmp_path, layout):
    ckpt = _checkpoint(tmp_path, layout)
    coco = _coco_keypoints(gaps=layout == "coco")   # the h36m case maps a fully detected clip both ways
    np.save(tmp_path / "kp.npy", coco)
    out = tmp_path / "cli_3d.npz"
    rc = wild_script.main(["--evaluate", str(ckpt), "--keypoints-file", str(tmp_path / "kp.npy"), "--width", str(W),
                           "--height", str(H), "-num_proposals", "3", "-sampling_timesteps", "2", "--seed", "4",
                           "--output", str(out), "--no-progress"])
    assert rc == 0
    lifter = d3dp.Lifter.from_checkpoint(ckpt, device="cpu")
    assert lifter.layout == layout
    if layout == "coco":
        given = coco
    else:   # an h36m-input model takes Human3.6M-17 keypoints
        pixels, conf = coco_to_h36m(coco[..., :2], coco[..., 2])
        given = np.concatenate([pixels, conf[..., None]], axis=-1)
    result = lifter.lift(given, image_size=(W, H), hypotheses=3, iterations=2, seed=4)
    saved = d3dp.read_result(out)
    assert result.hypotheses.shape == (23, 2, 3, 17, 3) and result.j_agg.shape == (23, 17, 3)
    assert result.trajectory.shape == (23, 3)
    for key in ("hypotheses", "j_agg", "p_agg", "trajectory"):
        np.testing.assert_array_equal(getattr(result, key), saved[key])
    assert np.abs(result.j_agg).max() > 0                   # real poses, not zeros
    result.save(tmp_path / "api.npz")
    np.testing.assert_array_equal(d3dp.read_result(tmp_path / "api.npz")["j_agg"], result.j_agg)


def test_lift_settings_change_the_result_and_a_seed_repeats_it(tmp_path):
    lifter = d3dp.Lifter.from_checkpoint(_checkpoint(tmp_path, "coco"))
    kp = _coco_keypoints()
    a = lifter.lift(kp, (W, H), hypotheses=2, iterations=1, seed=0)
    b = lifter.lift(kp, (W, H), hypotheses=2, iterations=1, seed=0)
    c = lifter.lift(kp, (W, H), hypotheses=2, iterations=1, seed=1)
    np.testing.assert_array_equal(a.j_agg, b.j_agg)
    assert np.abs(a.hypotheses - c.hypotheses).max() > 1e-4
    more = lifter.lift(kp, (W, H), hypotheses=4, iterations=3)
    assert more.hypotheses.shape == (23, 3, 4, 17, 3)
    # the per-joint uncertainty travels with the poses: mm, from the last iteration's spread (uncalibrated here)
    assert more.uncertainty.shape == (23, 17) and not more.uncertainty_calibrated
    spread = np.median(np.linalg.norm(more.hypotheses[:, -1] - more.j_agg[:, None], axis=-1), axis=1)
    np.testing.assert_allclose(more.uncertainty[:, 1:], 1000 * spread[:, 1:], rtol=1e-4, atol=1e-3)
    assert a.uncertainty is not None and lifter.lift(kp, (W, H), hypotheses=1, iterations=1).uncertainty is None


@pytest.mark.parametrize("bad, message", [
    (np.zeros((10, 16, 2)), r"shape \(10, 16, 2\).*\(frames, 17, 2\)"),
    (np.zeros((0, 17, 2)), "no frames"),
    (np.full((10, 17, 3), np.nan), "no detection"),
])
def test_bad_keypoints_raise_the_command_lines_errors(tmp_path, bad, message):
    lifter = d3dp.Lifter.from_checkpoint(_checkpoint(tmp_path, "coco"))
    with pytest.raises(ValueError, match=message):
        lifter.lift(bad, (W, H))


def test_bad_settings_and_files_raise_value_errors_with_the_fix(tmp_path):
    lifter = d3dp.Lifter.from_checkpoint(_checkpoint(tmp_path, "coco"))
    kp = _coco_keypoints()
    with pytest.raises(ValueError, match="image_size"):
        lifter.lift(kp, 640)
    with pytest.raises(ValueError, match="positive"):
        lifter.lift(kp, (0, 480))
    with pytest.raises(ValueError, match="hypotheses=0"):
        lifter.lift(kp, (W, H), hypotheses=0)
    with pytest.raises(FileNotFoundError, match="not found"):
        d3dp.Lifter.from_checkpoint(tmp_path / "missing.bin")
    (tmp_path / "text.bin").write_text("hello")
    with pytest.raises(d3dp.CheckpointError, match="not a PyTorch checkpoint"):
        d3dp.Lifter.from_checkpoint(tmp_path / "text.bin")
    with pytest.raises(ValueError, match="layout"):
        d3dp.Lifter.from_checkpoint(_checkpoint(tmp_path, "coco"), layout="openpose")
    with pytest.raises(ValueError, match="CUDA is not available|cuda"):
        if torch.cuda.is_available():
            raise ValueError("cuda present: nothing to check")
        d3dp.Lifter.from_checkpoint(_checkpoint(tmp_path, "coco"), device="cuda")


def test_evaluate_returns_the_report_main_py_writes(tmp_path):
    data = tmp_path / "data"
    write_synthetic_h36m(data, name="synthetic", frames_per_sequence=30, subjects=("S1", "S9"), actions=("Walking",))
    ckpt = _checkpoint(tmp_path, "h36m")
    flags = dict(num_proposals=3, sampling_timesteps=2, batch_size=2, subjects_test="S9", seed=3)
    rc = main_script.main(["-d", "synthetic", "-k", "gt", "--data-dir", str(data), "-c", str(tmp_path),
                           "--evaluate", ckpt.name, "-num_proposals", "3", "-sampling_timesteps", "2", "-b", "2",
                           "-ste", "S9", "--seed", "3", "--no-progress"])
    assert rc == 0
    written = json.loads((tmp_path / f"eval_{ckpt.stem}.json").read_text())
    report = d3dp.evaluate_checkpoint(ckpt, d3dp.H36MDataset(data, "gt", "synthetic"), **flags)
    assert report.to_json()["actions"] == written["actions"]
    assert 0 < report.headline() < 5                        # metres, an untrained model
    assert "J-Agg" in report.text()
    with pytest.raises(TypeError, match="num_proposal"):
        d3dp.evaluate_checkpoint(ckpt, d3dp.H36MDataset(data, "gt", "synthetic"), num_proposal=3)


def test_one_dataset_interface_for_every_source(tmp_path):
    data = tmp_path / "data"
    synthetic = d3dp.SyntheticDataset(data)
    assert isinstance(synthetic, d3dp.Dataset) and isinstance(synthetic, d3dp.H36MDataset)
    selection = d3dp.Selection(subjects_train=["S1"], subjects_test=["S9"], actions=["Walking"], downsample=2)
    train, test = synthetic.train_sequences(selection), synthetic.test_sequences(selection)
    assert {s.subject for s in train} == {"S1"} and {s.subject for s in test} == {"S9"}
    assert {s.action_group for s in test} == {"Walking"}
    full = synthetic.test_sequences(d3dp.Selection(subjects_test=["S9"], actions=["Walking"]))
    assert test[0].num_frames == (full[0].num_frames + 1) // 2
    assert synthetic.layout.joints_left == synthetic.layout.kps_left and synthetic.layout.input_name == "h36m"
    assert issubclass(d3dp.MPIINF3DHPDataset, d3dp.Dataset)
    with pytest.raises(d3dp.DatasetError, match="training data"):
        d3dp.MPIINF3DHPDataset().train_sequences(d3dp.Selection())


def test_import_d3dp_is_light_and_lists_its_names():
    out = subprocess.run([sys.executable, "-c", "import sys, common; print('torch' in sys.modules); "
                          "print(sorted(common.__all__))"], capture_output=True, text=True, cwd=ROOT, check=True)
    light, names = out.stdout.splitlines()
    assert light == "False"
    assert {"Lifter", "LiftResult", "evaluate_checkpoint", "RunConfig", "Report", "Dataset", "H36MDataset"} <= set(eval(names))


def test_pip_install_builds_the_d3dp_package_and_its_console_scripts(tmp_path):
    """`pip install .` as a user runs it (into a folder instead of a venv, with this venv's torch):
    the package is d3dp, nothing named common or in_the_wild lands at the top, and
    `import d3dp` and the console scripts work from any folder."""
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "--target", str(target), str(ROOT)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-2000:]
    top = {p.name for p in target.iterdir()}
    assert "d3dp" in top and not {"common", "in_the_wild", "tests", "benchmarks"} & top
    assert (target / "d3dp" / "constants" / "h36m_metadata.json").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import d3dp, d3dp.in_the_wild.lifting as l, d3dp.cli.h36m; "
            "from d3dp.geometry.skeleton import h36m_metadata; h36m_metadata(); print(d3dp.__file__)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().startswith(str(target))
    for script, words in (("d3dp-train", "Human3.6M"), ("d3dp-lift", "keypoints-file"), ("d3dp-3dhp", "raw-dir"),
                          ("d3dp-motion-set", "held-out")):
        helped = subprocess.run([str(target / "bin" / script), "--help"], capture_output=True, text=True, env=env,
                                cwd=tmp_path)
        assert helped.returncode == 0 and words in helped.stdout, (script, helped.stderr[-500:])
    refused = subprocess.run([str(target / "bin" / "d3dp-evaluate")], capture_output=True, text=True, env=env,
                             cwd=tmp_path)
    assert refused.returncode == 2 and "--evaluate" in refused.stderr


def test_the_readme_python_example_runs(tmp_path):
    """The README's Python API block, run as written, with the demo's checkpoint replaced by a
    tiny untrained one of the same (Human3.6M) layout."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    ckpt = _checkpoint(tmp_path, "h36m")
    assert block.count("checkpoint/demo/best_epoch.bin") == 2
    code = block.replace("checkpoint/demo/best_epoch.bin", str(ckpt)).replace(
        "tests/fixtures/keypoints_h36m.npy", str(ROOT / "tests/fixtures/keypoints_h36m.npy")).replace(
        "import d3dp\n", "import common as d3dp\n")         # this checkout's code, installed or not
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(60, 17, 3) (60, 5, 5, 17, 3)" in run.stdout and "Walking" in run.stdout
    with np.load(tmp_path / "lifted.npz", allow_pickle=False) as saved:
        assert saved["j_agg"].shape == (60, 17, 3)


def test_keypoints_in_human36m_order_mean_the_same_to_the_command_line_and_the_api(tmp_path):
    """A Human3.6M-17 array lifts to the same poses through --keypoints-layout h36m, a file's
    'layout' entry and Lifter.lift(layout='h36m'); COCO-17 given to the API with layout='coco'
    is mapped as the command line maps it; a mismatch is refused with the fix."""
    ckpt = _checkpoint(tmp_path, "h36m")
    coco = _coco_keypoints(gaps=False)
    pixels, conf = coco_to_h36m(coco[..., :2], coco[..., 2])
    h36m = np.concatenate([pixels, conf[..., None]], axis=-1)
    np.save(tmp_path / "h36m.npy", h36m)
    np.savez(tmp_path / "named.npz", keypoints=h36m, layout="h36m")
    common = ["--evaluate", str(ckpt), "--width", str(W), "--height", str(H), "-num_proposals", "2",
              "-sampling_timesteps", "1", "--seed", "3", "--no-progress"]
    assert wild_script.main([*common, "--keypoints-file", str(tmp_path / "h36m.npy"), "--keypoints-layout", "h36m",
                             "--output", str(tmp_path / "flag.npz")]) == 0
    assert wild_script.main([*common, "--keypoints-file", str(tmp_path / "named.npz"),
                             "--output", str(tmp_path / "named_3d.npz")]) == 0
    lifter = d3dp.Lifter.from_checkpoint(ckpt)
    api = lifter.lift(h36m, (W, H), hypotheses=2, iterations=1, seed=3, layout="h36m")
    mapped = lifter.lift(coco, (W, H), hypotheses=2, iterations=1, seed=3, layout="coco")
    for saved in (d3dp.read_result(tmp_path / "flag.npz"), d3dp.read_result(tmp_path / "named_3d.npz")):
        np.testing.assert_array_equal(saved["j_agg"], api.j_agg)
        assert str(saved["keypoints_layout"]) == "h36m"
    np.testing.assert_allclose(mapped.j_agg, api.j_agg, atol=1e-6)
    assert mapped.keypoints_layout == "coco" and api.keypoints_layout == "h36m"

    # Read as COCO-17 by default, the Human3.6M-17 array is refused (its joints 1-4 are legs).
    out = tmp_path / "never.npz"
    with pytest.raises(ValueError, match="look like Human3.6M-17.*--keypoints-layout h36m"):
        wild_script.run([*common, "--keypoints-file", str(tmp_path / "h36m.npy"), "--output", str(out)])
    with pytest.raises(ValueError, match="'layout' entry.*--keypoints-layout says coco"):
        wild_script.run([*common, "--keypoints-file", str(tmp_path / "named.npz"), "--keypoints-layout", "coco",
                         "--output", str(out)])
    assert not out.exists()
    coco_model = d3dp.Lifter.from_checkpoint(_checkpoint(tmp_path, "coco"))
    with pytest.raises(ValueError, match="Human3.6M-17 order but the model takes COCO-17"):
        coco_model.lift(h36m, (W, H), hypotheses=1, iterations=1, layout="h36m")


def test_layout_guess_tells_detector_keypoints_from_human36m_order():
    from common.geometry.coco import guess_layout

    coco = _coco_keypoints(gaps=False)
    assert guess_layout(coco[..., :2], coco[..., 2]) == "coco"
    assert guess_layout(coco_to_h36m(coco[..., :2])) == "h36m"
    fixture = np.load(ROOT / "tests/fixtures/keypoints_h36m.npy")
    assert guess_layout(fixture[..., :2]) == "h36m"
    assert guess_layout(np.full((3, 17, 2), np.nan)) is None            # nothing to tell by
