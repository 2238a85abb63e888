"""Human3.6M loader: file format, camera-space conversion, filters, clear errors."""
import numpy as np
import pytest
import torch

from common.geometry.camera import project_to_2d, world_to_camera_np
from common.datasets.h36m import DatasetError, H36MDataset, deterministic_random, h36m_cameras, skeleton_32_to_17
from common.datasets.synthetic import write_synthetic_h36m
from common.geometry.skeleton import h36m_metadata

ACTIONS = ("Walking", "Walking 1", "WalkDog", "Sitting 1")
N = 40


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic_h36m(out, name="tiny", seed=3, frames_per_sequence=N, subjects=("S1", "S9"), actions=ACTIONS)
    return out


def write_files(data_dir, positions_3d, positions_2d, metadata=None):
    """A hand-made data_3d_h36m.npz / data_2d_h36m_gt.npz pair."""
    metadata = metadata or {"layout_name": "h36m", "num_joints": 17,
                            "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}
    np.savez_compressed(data_dir / "data_3d_h36m.npz", positions_3d=positions_3d)
    np.savez_compressed(data_dir / "data_2d_h36m_gt.npz", positions_2d=positions_2d, metadata=metadata)


def handmade(num_frames=10, num_frames_2d=None, subjects=("S1", "S5"), actions=("Directions", "Eating 2")):
    rng = np.random.default_rng(0)
    pos3d = {s: {a: (rng.normal(0, 0.3, (num_frames, 32, 3)) + [0, 0, 1]).astype(np.float32) for a in actions}
             for s in subjects}
    pos2d = {s: {a: [rng.uniform(0, 1000, (num_frames_2d or num_frames, 17, 2)).astype(np.float32)
                     for _ in range(4)] for a in actions} for s in subjects}
    return pos3d, pos2d


def test_sequences_are_root_relative_camera_space_with_trajectory(synthetic_dir):
    data = H36MDataset(synthetic_dir, "gt", dataset="tiny")
    seqs = data.sequences(["S1", "S9"])
    assert len(seqs) == 2 * len(ACTIONS) * 4
    world = np.load(synthetic_dir / "data_3d_tiny.npz", allow_pickle=True)["positions_3d"].item()
    for seq in seqs:
        assert seq.pose_2d.shape == (N, 17, 2) and seq.pose_2d.dtype == np.float32
        assert seq.pose_3d.shape == (N, 17, 3) and seq.pose_3d.dtype == np.float32
        assert seq.traj.shape == (N, 1, 3) and seq.cam.shape == (9,)
        assert np.all(seq.pose_3d[:, 0] == 0)
        cam = h36m_cameras(seq.subject)[seq.camera]
        root = world_to_camera_np(world[seq.subject][seq.action][:, :1], cam["orientation"], cam["translation"])
        np.testing.assert_allclose(seq.traj, root, atol=1e-6)
        assert np.all(seq.traj[..., 2] > 2)  # in front of the camera, metres
        assert (seq.res_w, seq.res_h) == (cam["res_w"], cam["res_h"])


def test_ground_truth_2d_is_the_projection_of_3d_plus_trajectory(synthetic_dir):
    for seq in H36MDataset(synthetic_dir, "gt", "tiny").sequences(["S1", "S9"]):
        projected = project_to_2d(torch.from_numpy(seq.pose_3d + seq.traj), torch.from_numpy(seq.cam))
        np.testing.assert_allclose(projected.numpy(), seq.pose_2d, atol=1e-4)


def test_keypoint_and_joint_symmetry_are_offered(synthetic_dir):
    data = H36MDataset(synthetic_dir, "det", dataset="tiny")
    assert (data.kps_left, data.kps_right) == ([4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16])
    assert (data.joints_left, data.joints_right) == ([4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16])


def test_reduction_32_to_17_gives_the_skeleton_17_of_the_metadata():
    skeleton, kept = skeleton_32_to_17()
    meta = h36m_metadata()
    assert skeleton.parents.tolist() == meta["skeleton_17"]["parents"]
    assert kept == meta["reduction_to_17"]["kept_joints"]
    assert skeleton.joints_left == meta["skeleton_17"]["joints_left"]
    assert skeleton.joints_right == meta["skeleton_17"]["joints_right"]


def test_action_filter_matches_names_by_prefix_as_the_authors(synthetic_dir):
    data = H36MDataset(synthetic_dir, "gt", dataset="tiny")
    assert {s.action for s in data.sequences(["S1"], actions=["Walking"])} == {"Walking", "Walking 1"}
    assert {s.action for s in data.sequences(["S1"], actions=["Walk"])} == {"Walking", "Walking 1", "WalkDog"}
    assert {s.action for s in data.sequences(["S1"], actions=["Sitting", "WalkDog"])} == {"Sitting 1", "WalkDog"}
    assert {s.action for s in data.sequences(["S1"], actions=["Walking 1"])} == {"Walking 1"}


def test_subset_and_downsample_cut_frames_like_videopose3d(synthetic_dir):
    data = H36MDataset(synthetic_dir, "gt", dataset="tiny")
    full = data.sequences(["S9"], actions=["WalkDog"])[2]
    assert np.array_equal(data.sequences(["S9"], actions=["WalkDog"], downsample=3)[2].pose_2d, full.pose_2d[::3])
    for subset, stride in [(0.5, 1), (0.3, 2)]:
        n = int(round(N // stride * subset) * stride)
        start = deterministic_random(0, N - n + 1, str(N))
        part = data.sequences(["S9"], actions=["WalkDog"], subset=subset, downsample=stride)[2]
        assert np.array_equal(part.pose_3d, full.pose_3d[start:start + n:stride])
        assert np.array_equal(part.traj, full.traj[start:start + n:stride])


def test_longer_2d_is_trimmed_to_the_mocap_length(tmp_path):
    pos3d, pos2d = handmade(num_frames=10, num_frames_2d=13)
    write_files(tmp_path, pos3d, pos2d)
    seqs = H36MDataset(tmp_path, "gt").sequences(["S1"])
    assert [s.num_frames for s in seqs] == [10] * 8
    assert [s.action for s in seqs] == ["Directions"] * 4 + ["Eating 2"] * 4


def test_missing_files_name_the_file_and_the_demo(tmp_path):
    with pytest.raises(DatasetError, match=r"data_3d_h36m\.npz: file not found(.|\n)*data/(.|\n)*main\.py --demo"):
        H36MDataset(tmp_path, "cpn_ft_h36m_dbb")
    pos3d, _ = handmade()
    np.savez_compressed(tmp_path / "data_3d_h36m.npz", positions_3d=pos3d)
    with pytest.raises(DatasetError, match=r"data_2d_h36m_cpn_ft_h36m_dbb\.npz: file not found(.|\n)*"
                                           r"prepare_data_h36m"):
        H36MDataset(tmp_path, "cpn_ft_h36m_dbb")


def test_file_without_the_expected_key_is_rejected(tmp_path):
    pos3d, pos2d = handmade()
    write_files(tmp_path, pos3d, pos2d)
    np.savez_compressed(tmp_path / "data_3d_h36m.npz", poses=pos3d)
    with pytest.raises(DatasetError, match=r"data_3d_h36m\.npz: no key 'positions_3d'"):
        H36MDataset(tmp_path, "gt")


def test_wrong_3d_shape_is_reported(tmp_path):
    pos3d, pos2d = handmade()
    pos3d["S1"]["Directions"] = pos3d["S1"]["Directions"][:, :17]
    write_files(tmp_path, pos3d, pos2d)
    with pytest.raises(DatasetError, match=r"data_3d_h36m\.npz: S1/Directions has shape \(10, 17, 3\), "
                                           r"expected \(N, 32, 3\)"):
        H36MDataset(tmp_path, "gt").sequences(["S1"])


def test_wrong_2d_shape_is_reported(tmp_path):
    pos3d, pos2d = handmade()
    pos2d["S5"]["Eating 2"][1] = pos2d["S5"]["Eating 2"][1][:, :16]
    write_files(tmp_path, pos3d, pos2d)
    with pytest.raises(DatasetError, match=r"data_2d_h36m_gt\.npz: S5/Eating 2 camera 1 has shape \(10, 16, 2\), "
                                           r"expected \(N, 17, 2\)"):
        H36MDataset(tmp_path, "gt").sequences(["S5"])


def test_action_or_subject_missing_from_2d_is_reported(tmp_path):
    pos3d, pos2d = handmade()
    del pos2d["S1"]["Eating 2"]
    write_files(tmp_path, pos3d, pos2d)
    with pytest.raises(DatasetError, match=r"data_2d_h36m_gt\.npz: action S1/Eating 2 is in "
                                           r"data_3d_h36m\.npz but missing"):
        H36MDataset(tmp_path, "gt").sequences(["S1"])
    assert len(H36MDataset(tmp_path, "gt").sequences(["S1"], ["Directions"])) == 4  # not needed, not checked
    del pos2d["S5"]
    write_files(tmp_path, pos3d, pos2d)
    with pytest.raises(DatasetError, match=r"subject 'S5' is in data_3d_h36m\.npz but missing"):
        H36MDataset(tmp_path, "gt").sequences(["S5"])
    with pytest.raises(DatasetError, match=r"no subject 'S9'"):
        H36MDataset(tmp_path, "gt").sequences(["S9"])


def test_non_finite_keypoints_are_reported_with_their_frame_count(tmp_path):
    pos3d, pos2d = handmade()
    pos2d["S5"]["Directions"][3][[2, 7], 4, 0] = [np.nan, np.inf]
    write_files(tmp_path, pos3d, pos2d)
    with pytest.raises(DatasetError, match=r"S5/Directions camera 3: 2 of 10 frames contain NaN or inf"):
        H36MDataset(tmp_path, "gt").sequences(["S5"])


def test_fewer_2d_frames_than_mocap_frames_is_reported(tmp_path):
    pos3d, pos2d = handmade(num_frames=10, num_frames_2d=8)
    write_files(tmp_path, pos3d, pos2d)
    with pytest.raises(DatasetError, match=r"S1/Directions camera 0 has 8 frames, fewer than the 10 mocap frames"):
        H36MDataset(tmp_path, "gt").sequences(["S1"])
