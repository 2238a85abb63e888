"""In-the-wild input: keypoint readers, COCO -> Human3.6M mapping, camera and root estimation."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.geometry.camera import image_coordinates, normalize_screen_coordinates, project_to_2d
from common.geometry.coco import COCO_JOINTS_LEFT, COCO_JOINTS_RIGHT, coco_to_h36m, keypoints_for_model
from common.in_the_wild.keypoints import fill_missing_joints, frame_number, read_keypoints
from common.in_the_wild.root_depth import default_intrinsics, estimate_root_trajectory


def person(frame: int, offset: float = 0.0) -> np.ndarray:
    """(17, 3) keypoints whose x encodes frame and joint: x = 10 frame + j + offset, y = 100 + j."""
    j = np.arange(17, dtype=np.float32)
    return np.stack([10 * frame + j + offset, 100 + j, np.full(17, 0.9)], axis=-1)


def detection(image_id, kpts: np.ndarray, score: float, **extra) -> dict:
    return {"image_id": image_id, "category_id": 1, "keypoints": kpts.reshape(-1).tolist(),
            "score": score, **extra}


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def alphapose_file(tmp_path):
    """Frames 0, 1, 3 (frame 2 has no detection); two people in frame 0; frame 1 joint 5 has
    low confidence and a wrong position; frame 3 joint 0 is NaN-free but confidence 0."""
    low = person(1)
    low[5] = [999, 999, 0.1]
    last = person(3)
    last[0, 2] = 0.0
    dets = [detection("0.jpg", person(0), 2.5, idx=1),
            detection("0.jpg", person(0, offset=500), 1.5, idx=2),
            detection("1.jpg", low, 2.4, idx=1),
            detection("1.jpg", person(1, offset=500), 1.4, idx=2),
            detection("3.jpg", last, 2.6, idx=1)]
    return write_json(tmp_path / "alphapose-results.json", dets)


def test_alphapose_keeps_best_score_and_interpolates_missing_frames_and_joints(alphapose_file):
    kp = read_keypoints(alphapose_file)
    assert kp.keypoints.shape == (4, 17, 2) and kp.confidence.shape == (4, 17)
    np.testing.assert_array_equal(kp.frame_ids, [0, 1, 2, 3])
    assert kp.res_w is None and kp.res_h is None
    expected = np.stack([person(f)[:, :2] for f in range(4)])
    expected[2:, 0] = person(1)[0, :2]            # frame 3 joint 0 invalid: frame 1 value held
    np.testing.assert_allclose(kp.keypoints, expected)
    np.testing.assert_array_equal(kp.confidence[2], 0)          # missing frame
    assert kp.confidence[1, 5] == pytest.approx(0.1)             # low confidence kept as reported


def test_alphapose_track_id_selects_the_other_person(alphapose_file):
    kp = read_keypoints(alphapose_file, track_id=2)
    np.testing.assert_array_equal(kp.frame_ids, [0, 1])
    np.testing.assert_allclose(kp.keypoints[:, :, 0], [person(0, 500)[:, 0], person(1, 500)[:, 0]])


def test_fill_missing_joints_interpolates_linearly_and_holds_edges():
    x = np.array([np.nan, 10, np.nan, 0, 40, 0], dtype=np.float32)
    keypoints = np.stack([x, 2 * x], axis=-1)[:, None, :]       # (6, 1, 2)
    confidence = np.array([[1], [1], [1], [0.1], [1], [0]], dtype=np.float32)
    filled, conf = fill_missing_joints(keypoints, confidence, threshold=0.3)
    np.testing.assert_allclose(filled[:, 0, 0], [10, 10, 20, 30, 40, 40])
    np.testing.assert_allclose(filled[:, 0, 1], [20, 20, 40, 60, 80, 80])
    np.testing.assert_allclose(conf[:, 0], [0, 1, 0, 0.1, 1, 0])


def test_coco_results_list_with_track_ids(tmp_path):
    dets = [detection(7, person(0), 0.3, track_id=4), detection(7, person(0, 500), 0.9, track_id=5),
            detection(8, person(1), 0.3, track_id=4)]
    path = write_json(tmp_path / "results.json", dets)
    np.testing.assert_allclose(read_keypoints(path, track_id=4).keypoints[:, 0, 0], [0, 10])
    np.testing.assert_array_equal(read_keypoints(path).frame_ids, [7, 8])
    untracked = read_keypoints(path)          # the longest track (id 4), not the best score of each frame
    np.testing.assert_allclose(untracked.keypoints[:, 0, 0], [0, 10])
    assert "following track id 4" in untracked.warnings[0]


def test_coco_dict_lists_frames_from_images_and_returns_size(tmp_path):
    images = [{"id": i, "file_name": f"{i:06d}.jpg", "width": 1920, "height": 1080} for i in (3, 1, 2)]
    annotations = [detection(1, person(1), 0.8), detection(3, person(3), 0.8)]
    path = write_json(tmp_path / "coco.json", {"images": images, "annotations": annotations})
    kp = read_keypoints(path)
    assert (kp.res_w, kp.res_h) == (1920, 1080)
    np.testing.assert_array_equal(kp.frame_ids, [1, 2, 3])
    np.testing.assert_allclose(kp.keypoints[:, 3, 0], [13, 23, 33])
    np.testing.assert_array_equal(kp.confidence[1], 0)


def test_npy_without_confidence_and_npz_named_key(tmp_path):
    array = np.stack([person(f)[:, :2] for f in range(3)])        # (3, 17, 2)
    array[1, 2] = np.nan
    np.save(tmp_path / "kp.npy", array)
    kp = read_keypoints(tmp_path / "kp.npy", layout="coco")       # a line of points: no body to tell the order by
    np.testing.assert_allclose(kp.keypoints[1, 2], [12, 102])
    np.testing.assert_array_equal(kp.confidence[0], 1)
    assert kp.confidence[1, 2] == 0

    with_conf = np.stack([person(f) for f in range(3)])           # (3, 17, 3)
    np.savez(tmp_path / "kp.npz", other=np.zeros(3), keypoints=with_conf)
    np.testing.assert_allclose(read_keypoints(tmp_path / "kp.npz", layout="coco").confidence, 0.9)
    np.savez(tmp_path / "first.npz", with_conf, layout="coco")
    assert read_keypoints(tmp_path / "first.npz").num_frames == 3


def test_videopose3d_custom_npz(tmp_path):
    array = np.stack([person(f)[:, :2] for f in range(4)])
    positions = {"clip.mp4": {"custom": [array]}}
    metadata = {"layout_name": "coco", "video_metadata": {"clip.mp4": {"w": 640, "h": 480}}}
    np.savez(tmp_path / "data_2d_custom.npz", positions_2d=positions, metadata=metadata)
    kp = read_keypoints(tmp_path / "data_2d_custom.npz")
    assert (kp.num_frames, kp.res_w, kp.res_h) == (4, 640, 480)


@pytest.mark.parametrize("name, content, message", [
    ("empty.json", [], "no person"),
    ("dict.json", {"foo": 1}, "expected an AlphaPose"),
    ("short.json", [{"image_id": 0, "keypoints": [1, 2, 3] * 5, "score": 1}], "51 numbers"),
    ("noname.json", [{"image_id": "cat.jpg", "keypoints": [1, 2, 1] * 17, "score": 1}], "frame number"),
])
def test_json_errors_name_the_file_and_the_expectation(tmp_path, name, content, message):
    path = write_json(tmp_path / name, content)
    with pytest.raises(ValueError, match=message):
        read_keypoints(path)


def test_errors_for_unknown_track_never_valid_joint_shape_and_format(tmp_path, alphapose_file):
    with pytest.raises(ValueError, match=r"track id 9.*\[1, 2\]"):
        read_keypoints(alphapose_file, track_id=9)
    never = np.stack([person(f) for f in range(3)])
    never[:, 15, 2] = 0.2
    np.save(tmp_path / "never.npy", never)
    with pytest.raises(ValueError, match=r"never\.npy: joint 15 \(left_ankle\) never"):
        read_keypoints(tmp_path / "never.npy")
    np.save(tmp_path / "shape.npy", np.zeros((3, 18, 2)))
    with pytest.raises(ValueError, match=r"shape\.npy.*\(frames, 17, 2\)"):
        read_keypoints(tmp_path / "shape.npy")
    (tmp_path / "kp.csv").write_text("1,2")
    with pytest.raises(ValueError, match=r"kp\.csv: unknown keypoint format"):
        read_keypoints(tmp_path / "kp.csv")
    with pytest.raises(FileNotFoundError):
        read_keypoints(tmp_path / "missing.json")


def test_frame_number_from_ids_and_file_names():
    assert [frame_number(x) for x in (5, "12.jpg", "frame_000034.png", "cam2/v1_0007.jpg")] == [5, 12, 34, 7]


def test_coco_to_h36m_on_hand_example():
    coco = np.stack([np.arange(17.0), 10 * np.arange(17.0)], axis=-1)   # joint j at (j, 10 j)
    conf = np.linspace(0.1, 0.9, 17)
    h36m, h36m_conf = coco_to_h36m(coco, conf)
    expected_x = [11.5, 12, 14, 16, 11, 13, 15, 8.5, 5.5, 0, 1.5, 5, 7, 9, 6, 8, 10]
    np.testing.assert_allclose(h36m[:, 0], expected_x)
    np.testing.assert_allclose(h36m[:, 1], 10 * np.array(expected_x))
    assert h36m_conf[0] == pytest.approx(conf[11]) and h36m_conf[7] == pytest.approx(conf[5])
    assert h36m_conf[10] == pytest.approx(conf[1])
    batched = coco_to_h36m(np.broadcast_to(coco, (2, 3, 17, 2)))
    np.testing.assert_allclose(batched[1, 2], h36m)


def test_keypoints_for_model_passes_coco_through_and_maps_h36m():
    coco = np.random.default_rng(0).normal(size=(4, 17, 2))
    assert keypoints_for_model(coco, "coco") is coco
    np.testing.assert_allclose(keypoints_for_model(coco, "h36m"), coco_to_h36m(coco))
    assert COCO_JOINTS_LEFT == [1, 3, 5, 7, 9, 11, 13, 15] and COCO_JOINTS_RIGHT == [2, 4, 6, 8, 10, 12, 14, 16]
    with pytest.raises(ValueError, match="unknown keypoint layout"):
        keypoints_for_model(coco, "mpii")


def test_default_intrinsics_focal_is_0_9_of_the_larger_side_and_centre_is_image_centre():
    np.testing.assert_allclose(default_intrinsics(1000, 500), [1.8, 1.8, 0, 0, 0, 0, 0, 0, 0])
    # portrait: the long side (1920) sets the focal length, 1728 px; normalised by the width
    np.testing.assert_allclose(default_intrinsics(1080, 1920)[:4], [1728 / 540, 1728 / 540, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(default_intrinsics(1000, 500, focal_px=1500)[:2], [3, 3])


@pytest.mark.parametrize("noise_px", [0.0, 2.0])
def test_root_trajectory_recovers_known_translation(noise_px):
    rng = np.random.default_rng(1)
    w, h, frames = 1920, 1080, 8
    poses = rng.normal(0, 0.3, size=(frames, 17, 3)).astype(np.float32)
    poses -= poses[:, :1]                                           # root-relative metres
    traj = np.stack([rng.uniform(-1, 1, frames), rng.uniform(-0.5, 0.5, frames),
                     rng.uniform(3, 8, frames)], axis=-1)[:, None].astype(np.float32)  # (F, 1, 3)
    cam = default_intrinsics(w, h, focal_px=1400)
    pixels = project_to_2d(torch.from_numpy(poses + traj), torch.from_numpy(cam)).numpy()
    pixels = image_coordinates(pixels, w, h)
    pixels += rng.normal(0, noise_px, size=pixels.shape)
    uv = normalize_screen_coordinates(pixels, w, h)
    estimate = estimate_root_trajectory(poses, uv, cam, confidence=np.ones((frames, 17)))
    assert estimate.shape == (frames, 1, 3)
    depth_error = np.abs(estimate[..., 2] - traj[..., 2]) / traj[..., 2]
    assert depth_error.max() < (1e-5 if noise_px == 0 else 0.01)
    np.testing.assert_allclose(estimate[..., :2], traj[..., :2], atol=1e-4 if noise_px == 0 else 0.03)


def test_root_trajectory_ignores_zero_confidence_joints_and_survives_empty_frames():
    rng = np.random.default_rng(2)
    poses = rng.normal(0, 0.3, size=(2, 17, 3))
    poses -= poses[:, :1]
    cam = default_intrinsics(1000, 1000)
    uv = cam[:2] * (poses[..., :2] + [0.2, 0.1]) / (poses[..., 2:] + 5) + cam[2:4]
    uv[0, 3] += 0.5                                                  # an outlier with weight 0
    confidence = np.ones((2, 17))
    confidence[0, 3] = 0
    confidence[1] = 0                                                # no weights: equal weights
    uv[1, 3] += 0.5                                                  # counted: frame 1 is off
    traj = estimate_root_trajectory(poses, uv, cam, confidence)
    np.testing.assert_allclose(traj[0, 0], [0.2, 0.1, 5], atol=1e-4)
    assert np.abs(traj[1, 0] - [0.2, 0.1, 5]).max() > 1e-2


def test_root_trajectory_of_a_collapsed_detection_is_finite_and_leaves_other_frames_alone():
    rng = np.random.default_rng(3)
    poses = rng.normal(0, 0.3, size=(3, 17, 3))
    poses -= poses[:, :1]
    cam = default_intrinsics(1000, 1000)
    uv = cam[:2] * (poses[..., :2] + [0.2, 0.1]) / (poses[..., 2:] + 5) + cam[2:4]
    alone = estimate_root_trajectory(poses[[0, 2]], uv[[0, 2]], cam)
    uv[1] = 0.3                                                      # every joint of frame 1 at one point
    traj = estimate_root_trajectory(poses, uv, cam)
    assert np.isfinite(traj).all()
    np.testing.assert_array_equal(traj[[0, 2]], alone)
    np.testing.assert_allclose(traj[0, 0], [0.2, 0.1, 5], atol=1e-4)


def test_keypoint_file_layout_from_the_flag_or_the_file(tmp_path):
    """Human3.6M-17 arrays are read in their order when the flag or the file says so; a JSON
    results file is COCO-17 only; an order the geometry contradicts is read as stated, with a warning."""
    fixture = np.load(Path(__file__).parent / "fixtures" / "keypoints_h36m.npy")
    np.save(tmp_path / "h36m.npy", fixture)
    kp = read_keypoints(tmp_path / "h36m.npy", layout="h36m")
    assert kp.layout == "h36m" and kp.layout_name == "Human3.6M-17" and not kp.warnings
    np.testing.assert_array_equal(kp.keypoints, fixture[..., :2])
    stated_wrong = read_keypoints(tmp_path / "h36m.npy", layout="coco")
    assert stated_wrong.layout == "coco" and "looks like Human3.6M-17" in stated_wrong.warnings[0]
    with pytest.raises(ValueError, match="AlphaPose / COCO results files hold COCO-17"):
        path = tmp_path / "res.json"
        path.write_text(json.dumps([detection(0, person(0), 0.9)]))
        read_keypoints(path, layout="h36m")
    np.savez(tmp_path / "bad.npz", keypoints=fixture, layout="mpii")
    with pytest.raises(ValueError, match="'layout' entry is 'mpii'"):
        read_keypoints(tmp_path / "bad.npz")
    never = fixture.copy()
    never[:, 5, 2] = 0
    np.save(tmp_path / "never.npy", never)
    with pytest.raises(ValueError, match=r"joint 5 \(left_knee\) never"):
        read_keypoints(tmp_path / "never.npy", layout="h36m")
