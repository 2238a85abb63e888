"""No code runs from a data file: every pickled .npz goes through the allow-list unpickler."""
import numpy as np
import pytest

from common.datasets.h36m import DatasetError, H36MDataset
from common.datasets.mpi_inf_3dhp import TRAIN_NPZ, read_train_entries
from common.storage.safe_pickle import UnsafePickleError, item, load_npz
from common.in_the_wild.keypoints import read_keypoints
from common.cli.h36m import main


class Payload:
    """Unpickling this creates the marker file (a stand-in for any code a pickle can run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def payload_dict(marker):
    return {"S1": {"Walking": [np.zeros((4, 17, 2), np.float32), Payload(marker)]}}


def test_plain_data_round_trips(tmp_path):
    data = {"S1": {"Walking 1": [np.arange(6, dtype=np.float32).reshape(2, 3)], "n": np.int64(3),
                   "f": np.float64(0.5), "s": "x", "t": (1, 2.0), "none": None}}
    np.savez(tmp_path / "d.npz", positions_2d=data, plain=np.ones((2, 2)))
    loaded = load_npz(tmp_path / "d.npz")
    assert loaded["plain"].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    out = item(loaded["positions_2d"])
    assert out["S1"]["n"] == 3 and out["S1"]["f"] == 0.5 and out["S1"]["t"] == (1, 2.0)
    np.testing.assert_array_equal(out["S1"]["Walking 1"][0], data["S1"]["Walking 1"][0])


def test_payload_in_h36m_2d_file_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d={"S1": {}})
    np.savez(tmp_path / "data_2d_h36m_gt.npz", positions_2d=payload_dict(marker), metadata={})
    with pytest.raises(DatasetError, match="refused to unpickle"):
        H36MDataset(tmp_path, "gt", "h36m")
    assert not marker.exists()


def test_payload_through_the_entry_script_is_a_one_line_error(tmp_path, capsys):
    marker = tmp_path / "pwned"
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=np.array(Payload(marker), dtype=object))
    assert main(["--data-dir", str(tmp_path), "-k", "gt", "--evaluate", "x.bin", "-c", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "refused to unpickle" in err and "\n" not in err
    assert not marker.exists()


def test_payload_in_3dhp_processed_file_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    np.savez(tmp_path / TRAIN_NPZ, data={"S1 Seq1": {0: {"data_3d": Payload(marker)}}})
    with pytest.raises(UnsafePickleError):
        read_train_entries(tmp_path)
    assert not marker.exists()


def test_payload_in_keypoint_npz_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    np.savez(tmp_path / "kp.npz", positions_2d={"video": {"custom": [Payload(marker)]}})
    with pytest.raises(UnsafePickleError, match="refused"):
        read_keypoints(tmp_path / "kp.npz")
    assert not marker.exists()
    np.savez(tmp_path / "kp2.npz", keypoints=np.array(Payload(marker), dtype=object))
    with pytest.raises(UnsafePickleError):
        read_keypoints(tmp_path / "kp2.npz")
    assert not marker.exists()


def test_numpy1_module_names_are_allowed(tmp_path):
    """Files written under numpy 1 name numpy.core.multiarray._reconstruct."""
    import pickle

    from common.storage.safe_pickle import safe_loads

    blob = pickle.dumps({"a": np.ones(3, np.float32)}, protocol=3).replace(b"numpy._core", b"numpy.core")
    np.testing.assert_array_equal(safe_loads(blob)["a"], np.ones(3, np.float32))


def test_truncated_npz_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "d.npz", positions_2d={"S1": {}})
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot be read as an .npz"):
        load_npz(tmp_path / "t.npz")
