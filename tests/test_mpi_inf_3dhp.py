"""MPI-INF-3DHP: reading the release, the processed npz files, the Sequence loaders, the .mat
export and the Python port of the official scorer (on the real TS5 file where it is present, see conftest)."""
import csv
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from common.geometry.camera import image_coordinates, project_to_2d
from common.datasets.base import DatasetError
from common.datasets.mpi_inf_3dhp import (JOINTS_LEFT, JOINTS_RIGHT, ROOT_INDEX, TEST_NPZ, TRAIN_NPZ,
                                          load_3dhp_test, load_3dhp_train, mpi_inf_3dhp_metadata,
                                          mpi_inf_3dhp_skeleton, prepare_3dhp, read_test_annotations)
from common.evaluation.mpi_inf_3dhp import (ACTIVITY_NAMES, export_3dhp_mat, load_3dhp_ground_truth, read_3dhp_mat,
                                      score_prediction_files, score_predictions)
from conftest import MPI_INF_3DHP_TEST_DIR, require_3dhp_sequence

REPO = Path(__file__).resolve().parents[1]
TS5_FOLDER = MPI_INF_3DHP_TEST_DIR
TS5_FILE = TS5_FOLDER / "TS5" / "annot_data.mat"
NUM_THRESHOLDS = 31


@pytest.fixture(scope="module")
def ts5_gt():
    """{'TS5': (annot3 (320,17,3) mm, valid, activity)} from the real annotation file."""
    require_3dhp_sequence("TS5")
    return load_3dhp_ground_truth(TS5_FOLDER)


def _offset_non_root(annot3: np.ndarray, d: float, frames=slice(None)) -> np.ndarray:
    """annot3 with +d mm along x on every joint but the pelvis, in the given frames."""
    shift = np.full(17, float(d))
    shift[ROOT_INDEX] = 0
    pred = annot3.copy()
    pred[frames, :, 0] += shift
    return pred


# ---------------------------------------------------------------- loading

def test_ts5_loads_with_pelvis_root_valid_mask_and_activities(ts5_gt):
    (seq,) = load_3dhp_test(TS5_FOLDER)
    assert (seq.subject, seq.num_frames, int(seq.valid.sum())) == ("TS5", 320, 276)
    assert (seq.res_w, seq.res_h, seq.root_index) == (1920, 1080, 14)
    assert np.all(seq.pose_3d[:, 14] == 0) and seq.traj.shape == (320, 1, 3)
    assert 3.0 < seq.traj[:, 0, 2].min() and seq.traj[:, 0, 2].max() < 4.0  # metres from the camera
    assert set(np.unique(seq.extra["activity"])) == {1, 4, 5}
    assert np.abs(seq.pose_2d[..., 0]).max() <= 1


def test_linear_projection_of_annot3_reproduces_annot2(ts5_gt):
    def reprojection_error(seq):
        projected = project_to_2d(torch.from_numpy(seq.pose_3d + seq.traj), torch.from_numpy(seq.cam))
        return np.linalg.norm(image_coordinates(projected.numpy(), 1920, 1080)
                              - read_test_annotations(TS5_FILE)["data_2d"], axis=-1)  # (320, 17) px

    (seq,) = load_3dhp_test(TS5_FOLDER, calibrated_camera=True)
    error = reprojection_error(seq)
    annotated = [j for j in range(17) if j not in (8, 11, 15)]  # hips and spine are interpolated in 2D
    assert error.mean() < 0.5 and error.max() < 5
    assert error[:, annotated].max() < 0.05
    (authors,) = load_3dhp_test(TS5_FOLDER)                     # the authors' fx = fy camera, the default
    assert reprojection_error(authors)[:, annotated].mean() > 1.0


def test_skeleton_flip_swaps_named_left_and_right_joints():
    skeleton = mpi_inf_3dhp_skeleton()
    names = skeleton.names
    assert (skeleton.joints_left, skeleton.joints_right) == (JOINTS_LEFT, JOINTS_RIGHT)
    for left, right in zip(JOINTS_LEFT, JOINTS_RIGHT):
        assert names[left].replace("left", "") == names[right].replace("right", "")
    assert skeleton.parents[ROOT_INDEX] == -1 and names[ROOT_INDEX] == "pelvis"


# ---------------------------------------------------------------- preparation

def test_prepare_from_ts5_only_writes_the_authors_test_layout(ts5_gt, tmp_path):
    raw = tmp_path / "raw" / "mpi_inf_3dhp_test_set" / "TS5"
    raw.mkdir(parents=True)
    (raw / "annot_data.mat").symlink_to(TS5_FILE)
    written = prepare_3dhp(tmp_path / "raw", tmp_path / "data")
    assert written == {"test": tmp_path / "data" / TEST_NPZ}
    data = np.load(written["test"], allow_pickle=True)["data"].item()
    entry = data["TS5"]
    assert entry["data_3d"].shape == (320, 17, 3) and entry["data_2d"].shape == (320, 17, 2)
    assert entry["valid"].shape == (320,) and entry["valid"].sum() == 276
    assert 3000 < np.median(entry["data_3d"][:, 14, 2]) < 4000  # millimetres, absolute, like annot3

    (from_npz,) = load_3dhp_test(tmp_path / "data")
    (from_raw,) = load_3dhp_test(TS5_FOLDER)
    assert np.abs(from_npz.pose_3d - from_raw.pose_3d).max() < 1e-6
    assert np.abs(from_npz.pose_2d - from_raw.pose_2d).max() < 1e-6
    assert np.array_equal(from_npz.valid, from_raw.valid)
    assert np.array_equal(from_npz.extra["activity"], from_raw.extra["activity"])


def test_loader_accepts_an_authors_npz_in_metres_without_activities(ts5_gt, tmp_path):
    entry = read_test_annotations(TS5_FILE)
    np.savez(tmp_path / TEST_NPZ, data={"TS5": {"data_3d": (entry["data_3d"] / 1000).astype(np.float32),
                                                "data_2d": entry["data_2d"].astype(np.float32),
                                                "valid": entry["valid"].astype(np.float64)}})
    (seq,) = load_3dhp_test(tmp_path / TEST_NPZ)
    (reference,) = load_3dhp_test(TS5_FOLDER)
    assert np.abs(seq.pose_3d - reference.pose_3d).max() < 1e-6
    assert np.abs(seq.traj - reference.traj).max() < 1e-6
    assert seq.valid.dtype == bool and seq.valid.sum() == 276 and "activity" not in seq.extra


def test_prepare_names_what_is_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no MPI-INF-3DHP files"):
        prepare_3dhp(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_3dhp(tmp_path / "nowhere", tmp_path / "out")
    for load in (load_3dhp_test, load_3dhp_train):
        with pytest.raises(FileNotFoundError, match="neither a processed .*_3dhp_ori.npz nor the official release"):
            load(tmp_path / "empty")
    (tmp_path / "raw" / "TS5").mkdir(parents=True)
    if TS5_FILE.is_file():
        (tmp_path / "raw" / "TS5" / "annot_data.mat").symlink_to(TS5_FILE)
        with pytest.raises(FileNotFoundError, match="TS1, TS2 not found.*found: TS5"):
            prepare_3dhp(tmp_path / "raw", tmp_path / "out", test_sequences=["TS1", "TS2", "TS5"])


def test_test_file_without_annot3_is_rejected_by_name(tmp_path):
    (tmp_path / "TS1").mkdir()
    with h5py.File(tmp_path / "TS1" / "annot_data.mat", "w") as f:
        f["annot2"] = np.zeros((4, 1, 17, 2))
        f["valid_frame"] = np.ones((4, 1))
        f["activity_annotation"] = np.ones((4, 1))
    with pytest.raises(DatasetError, match="lacks the field.*annot3"):
        prepare_3dhp(tmp_path, tmp_path / "out")


def _write_train_sequence(folder: Path, frames: int, cells: int, calibrated) -> np.ndarray:
    """A tiny S*/Seq* release folder; returns annot3 (cells, frames, 28, 3) mm where joint j has x = 1000 c + j."""
    rng = np.random.default_rng(0)
    annot3 = rng.normal(0, 300, (cells, frames, 28, 3))
    annot3[..., 2] += 4000
    annot3[..., 0] = 1000 * np.arange(cells)[:, None, None] + np.arange(28)
    annot2 = annot3[..., :2] / annot3[..., 2:] * 1500 + 1024
    cell3, cell2 = np.empty((cells, 1), dtype=object), np.empty((cells, 1), dtype=object)
    for c in range(cells):
        cell3[c, 0], cell2[c, 0] = annot3[c].reshape(frames, 84), annot2[c].reshape(frames, 56)
    folder.mkdir(parents=True)
    scipy.io.savemat(str(folder / "annot.mat"), {"annot3": cell3, "annot2": cell2, "univ_annot3": cell3,
                                                 "cameras": np.arange(cells), "frames": np.arange(frames)})
    lines = ["Skeletool Camera Calibration File V1.0"]
    for c in calibrated:
        lines += [f"name          {c}", "  sensor      10 10", "  size        2048 2048", "  animated    0",
                  f"  intrinsic   {1500 + c} 0 {1020 + c} 0 0 {1501 + c} {1030 + c} 0 0 0 1 0 0 0 0 1 ",
                  "  extrinsic   1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1 ", "  radial      0"]
    (folder / "camera.calibration").write_text("\n".join(lines) + "\n")
    return annot3


def test_prepare_and_load_a_synthetic_training_sequence(tmp_path):
    annot3 = _write_train_sequence(tmp_path / "raw" / "S1" / "Seq1", frames=6, cells=14, calibrated=range(14))
    written = prepare_3dhp(tmp_path / "raw", tmp_path / "data")
    assert written == {"train": tmp_path / "data" / TRAIN_NPZ}
    data = np.load(written["train"], allow_pickle=True)["data"].item()
    assert list(data) == ["S1 Seq1"] and len(data["S1 Seq1"]) == 1
    views = data["S1 Seq1"][0]
    assert sorted(views) == [0, 1, 2, 4, 5, 6, 7, 8]
    joints = mpi_inf_3dhp_metadata()["joints_from_28"]
    assert np.allclose(views[4]["data_3d"], annot3[4][:, joints])  # mm, camera 4 from cell 4
    assert views[4]["data_2d"].shape == (6, 17, 2)

    sequences = load_3dhp_train(tmp_path / "data" / TRAIN_NPZ, cameras=[0, 4])
    assert [(s.subject, s.action, s.camera) for s in sequences] == [("S1", "Seq1", 0), ("S1", "Seq1", 4)]
    s = sequences[1]
    assert np.all(s.pose_3d[:, 14] == 0) and s.root_index == 14 and s.valid is None
    assert np.allclose(s.traj[:, 0] * 1000, annot3[4][:, joints[14]], atol=1e-3)
    assert np.allclose(s.cam[:4], [1504 / 1024, 1505 / 1024, 1024 / 1024 - 1, 1034 / 1024 - 1], atol=1e-6)
    assert np.allclose(s.pose_2d, views[4]["data_2d"] / 1024 - 1, atol=1e-6)


def test_training_preparation_names_missing_cameras(tmp_path):
    _write_train_sequence(tmp_path / "S2" / "Seq2", frames=3, cells=14, calibrated=range(8))
    with pytest.raises(DatasetError, match=r"S2/Seq2: camera\(s\) \[8\] missing"):
        prepare_3dhp(tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="S1 Seq1 not found"):
        prepare_3dhp(tmp_path, tmp_path / "out", train_sequences=["S1 Seq1"])


# ---------------------------------------------------------------- scoring

def test_ground_truth_scores_zero_error_and_full_pck(ts5_gt):
    (scores,) = score_predictions({"TS5": ts5_gt["TS5"][0]}, ts5_gt)
    assert scores.sequencewise.rows == ["TestSeq5"]
    assert np.all(scores.sequencewise.mpjpe == 0) and np.all(scores.sequencewise.pck == 100)
    # strict error < threshold: nothing counts at 0 mm, so a perfect prediction has AUC 30/31
    assert np.allclose(scores.sequencewise.auc, 100 * 30 / NUM_THRESHOLDS)
    assert scores.mean_over_sequences() == pytest.approx({"pck": 100, "auc": 100 * 30 / 31, "mpjpe": 0})


@pytest.mark.parametrize("d, pck, thresholds_above_d", [(102.5, 100, 10), (160, 0, 0)])
def test_known_offset_gives_hand_computed_scores(ts5_gt, d, pck, thresholds_above_d):
    pred = _offset_non_root(ts5_gt["TS5"][0], d)
    (scores,) = score_predictions({"TS5": pred}, ts5_gt)
    row = scores.sequencewise
    assert np.allclose(row.pck, pck)
    assert np.allclose(row.auc, 100 * thresholds_above_d / NUM_THRESHOLDS)  # thresholds 105..150 exceed 102.5
    assert np.allclose(row.mpjpe[0, :17], [0 if j == ROOT_INDEX else d for j in range(17)])
    assert row.mpjpe[0, 17] == pytest.approx(d * 16 / 17)


def test_threshold_comparison_is_strict():
    annot3 = np.zeros((2, 17, 3))
    gt = {"TS1": (annot3, np.ones(2, bool), None)}
    at_150, at_145 = _offset_non_root(annot3, 150.0), _offset_non_root(annot3, 145.0)
    (exact,) = score_predictions({"TS1": at_150}, gt)
    (below,) = score_predictions({"TS1": at_145}, gt)
    assert exact.sequencewise.headline("TestSeq1") == {"pck": 0, "auc": 0, "mpjpe": 150 * 16 / 17}
    assert below.sequencewise.headline("TestSeq1")["pck"] == 100
    assert below.sequencewise.headline("TestSeq1")["auc"] == pytest.approx(100 / 31)


def test_activity_table_pools_frames_and_marks_absent_activities_nan(ts5_gt, tmp_path):
    annot3, valid, activity = ts5_gt["TS5"]
    reaching = activity == 4
    (scores,) = score_predictions({"TS5": _offset_non_root(annot3, 160, reaching)}, ts5_gt)
    table = scores.activitywise
    assert table.rows == [*ACTIVITY_NAMES.values(), "All"]
    pck = dict(zip(table.rows, table.pck[:, -1]))
    assert pck["Standing/Walking"] == 100 and pck["On The Floor"] == 100 and pck["Reaching/Crouching"] == 0
    assert all(np.isnan(pck[a]) for a in ("Exercising", "Sitting", "Sports", "Miscellaneous"))
    assert np.isnan(table.mpjpe[1]).all() and np.isnan(table.auc[1]).all()
    assert pck["All"] == pytest.approx(100 * (valid & ~reaching).sum() / valid.sum())
    assert scores.pooled()["pck"] == pck["All"] == scores.sequencewise.pck[0, -1]

    table.write_csv(tmp_path / "activitywise.csv")
    rows = list(csv.reader(open(tmp_path / "activitywise.csv")))
    assert rows[0][0] == "MPJPE (mm)" and rows[0][-1] == "Average"
    assert rows[2][0] == "Exercising" and set(rows[2][1:]) == {"NaN"}


def test_gt_without_activities_leaves_only_the_all_row(ts5_gt):
    annot3, valid, _ = ts5_gt["TS5"]
    (scores,) = score_predictions({"TS5": annot3}, {"TS5": (annot3, valid, None)})
    assert np.isnan(scores.activitywise.pck[:7]).all() and scores.pooled()["pck"] == 100


def test_headline_is_the_mean_over_sequences_not_pooled_frames(ts5_gt):
    annot3, valid, activity = ts5_gt["TS5"]
    gt = {"TS5": ts5_gt["TS5"], "TS6": (annot3[:100], valid[:100], activity[:100])}
    (scores,) = score_predictions({"TS6": _offset_non_root(annot3[:100], 160), "TS5": annot3}, gt)
    assert scores.sequencewise.rows == ["TestSeq5", "TestSeq6"]
    assert scores.mean_over_sequences()["pck"] == 50
    assert scores.pooled()["pck"] == pytest.approx(100 * 276 / (276 + valid[:100].sum()))


def test_scoring_rejects_missing_gt_and_mismatched_frames(ts5_gt):
    annot3 = ts5_gt["TS5"][0]
    with pytest.raises(ValueError, match="no ground truth for TS1"):
        score_predictions({"TS1": annot3}, ts5_gt)
    with pytest.raises(ValueError, match="310 frames, the ground truth 320"):
        score_predictions({"TS5": annot3[:310]}, ts5_gt)
    with pytest.raises(ValueError, match=r"expected \(N, 17, 3\) or \(3, 17, N, K\)"):
        score_predictions({"TS5": annot3.transpose(1, 2, 0)}, ts5_gt)


# ---------------------------------------------------------------- .mat files and the CLI

def test_mat_export_round_trips_through_scipy_in_the_matlab_layout(tmp_path):
    rng = np.random.default_rng(1)
    pred = rng.normal(0, 0.3, (2, 5, 17, 3))  # (K, N, 17, 3) metres
    pred -= pred[:, :, ROOT_INDEX:ROOT_INDEX + 1]
    path = export_3dhp_mat(tmp_path / "inference_data_J_Agg.mat", {"TS3": pred})
    raw = scipy.io.loadmat(str(path))["TS3"]
    assert raw.shape == (3, 17, 5, 2) and raw.dtype == np.float64
    assert np.allclose(raw[:, :, 4, 1], pred[1, 4].T * 1000)  # MATLAB pred(:, :, frame, k), mm
    assert np.array_equal(read_3dhp_mat(path)["TS3"], raw)
    single = export_3dhp_mat(tmp_path / "single.mat", {"TS3": pred[:1]})
    assert read_3dhp_mat(single)["TS3"].shape == (3, 17, 5, 1)
    with pytest.raises(ValueError, match=r"expected \(K, N, 17, 3\)"):
        export_3dhp_mat(tmp_path / "bad.mat", {"TS3": pred[0]})


def test_scoring_files_needs_the_gt_file_of_every_predicted_sequence(ts5_gt, tmp_path):
    pred = np.zeros((1, 320, 17, 3))
    path = export_3dhp_mat(tmp_path / "inference_data_P_Agg.mat", {"TS1": pred, "TS5": pred})
    with pytest.raises(FileNotFoundError, match="TS1 not found"):
        score_prediction_files([path], TS5_FOLDER)


def test_cli_scores_every_mode_and_iteration_and_writes_csv_tables(ts5_gt, tmp_path):
    annot3 = ts5_gt["TS5"][0]
    exact = (annot3 - annot3[:, ROOT_INDEX:ROOT_INDEX + 1]) / 1000  # (320, 17, 3) metres
    shifted = _offset_non_root(annot3 - annot3[:, ROOT_INDEX:ROOT_INDEX + 1], 160) / 1000
    export_3dhp_mat(tmp_path / "pred" / "inference_data_J_Agg.mat", {"TS5": np.stack([shifted, exact])})
    export_3dhp_mat(tmp_path / "pred" / "inference_data_P_Agg.mat", {"TS5": np.stack([exact, exact])})
    result = subprocess.run([sys.executable, str(REPO / "3dhp_test" / "mpii_score.py"), "--pred",
                             str(tmp_path / "pred"), "--gt-dir", str(TS5_FOLDER), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for mode in ("P_Agg", "J_Agg"):
        for k in (1, 2):
            for table in ("sequencewise", "activitywise"):
                assert (tmp_path / "out" / f"{mode}_k{k}_{table}.csv").is_file()
    summary = {(r["mode"], r["iteration"]): r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert [key[0] for key in summary] == ["P_Agg", "P_Agg", "J_Agg", "J_Agg"]
    assert float(summary["J_Agg", "1"]["PCK"]) == 0 and float(summary["J_Agg", "2"]["PCK"]) == 100
    assert float(summary["J_Agg", "1"]["MPJPE"]) == pytest.approx(160 * 16 / 17, abs=1e-6)
    assert "J_Agg" in result.stdout and "mean over sequences" in result.stdout

    missing = subprocess.run([sys.executable, str(REPO / "3dhp_test" / "mpii_score.py"), "--pred",
                              str(tmp_path / "absent.mat"), "--gt-dir", str(TS5_FOLDER)],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "absent.mat not found" in missing.stderr
