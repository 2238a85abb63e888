"""in_the_wild/mocap_exports.py: .trc read back by a plain parser (and OpenSim when installed),
.c3d read back by the independent `c3d` package, every marker compared with the poses."""
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from common.geometry.skeleton import h36m_skeleton_17
from common.in_the_wild import mocap_exports
from common.in_the_wild.mocap_exports import write_c3d, write_trc
from common.in_the_wild.result import WildResult
from common.in_the_wild.root_depth import default_intrinsics

JOINTS = h36m_skeleton_17().names
W, H = 640, 360


def person(person_id: int, frames, fps=30.0, seed: int = 0) -> WildResult:
    """A lifted person on the given frame numbers: random poses around a root 3-5 m in front of the camera."""
    frames = np.asarray(frames, dtype=np.int64)
    n = len(frames)
    rng = np.random.default_rng(seed)
    shown = rng.normal(0, 0.4, (n, 17, 3)).astype(np.float32)
    shown[:, 0] = 0                                                    # root-relative: pelvis at 0
    traj = np.stack([rng.uniform(-1, 1, n), rng.uniform(-0.2, 0.5, n), rng.uniform(3, 5, n)], 1).astype(np.float32)
    other = shown + 0.05                                               # J-Agg and P-Agg differ from the shown pose
    r = WildResult(hypotheses=other[:, None, None], poses={"J-Agg": other, "P-Agg": other, "T-Agg": shown},
                   trajectory=traj, keypoints_2d=rng.uniform(0, 300, (n, 17, 2)).astype(np.float32),
                   confidence=np.ones((n, 17), np.float32), frame_ids=frames,
                   intrinsics=default_intrinsics(W, H, 500.0), image_size=(W, H), input_layout="h36m", fps=fps)
    r.person_id = person_id
    return r


def lab_mm(r) -> np.ndarray:
    """(N, 17, 3) the markers the files should hold: camera space turned to Y up, Z towards the camera, mm."""
    absolute = r.shown.astype(np.float64) + r.trajectory.astype(np.float64)[:, None]
    return absolute * [1000.0, -1000.0, -1000.0]


# ---------------------------------------------------------------------------- independent readers

def read_trc(path):
    """A plain TRC reader: header dict, marker names, frame numbers, times, (F, M, 3) with NaN for empty fields."""
    lines = open(path).read().split("\n")
    assert lines[0].split("\t")[:3] == ["PathFileType", "4", "(X/Y/Z)"]
    header = dict(zip(lines[1].split("\t"), lines[2].split("\t")))
    names_row = lines[3].split("\t")
    assert names_row[:2] == ["Frame#", "Time"]
    names = [c for c in names_row[2:] if c]
    m = len(names)
    assert [c for c in lines[4].split("\t") if c] == [f"{a}{i}" for i in range(1, m + 1) for a in "XYZ"]
    frames, times, values = [], [], []
    for line in lines[5:]:
        if not line:
            continue
        cells = line.split("\t")
        assert len(cells) in (2 + 3 * m, 3 + 3 * m) and cells[2 + 3 * m:] in ([], [""])
        frames.append(int(cells[0]))
        times.append(float(cells[1]))
        values.append([float(c) if c else np.nan for c in cells[2:2 + 3 * m]])
    return header, names, np.array(frames), np.array(times), np.array(values).reshape(len(values), m, 3)


def read_c3d(path):
    """With the `c3d` package: labels, rate, units, first frame, frame numbers, (F, M, 3) points, (F, M) residuals."""
    c3d = pytest.importorskip("c3d")
    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")                                # "no analog data"
        reader = c3d.Reader(f)
        frames, points = zip(*[(i, p.copy()) for i, p, _ in reader.read_frames()])
        return dict(labels=[s.strip() for s in reader.point_labels], rate=reader.point_rate,
                    units=reader.get("POINT:UNITS").string_value.strip(), first=reader.first_frame,
                    frames=np.array(frames), points=np.array(points)[..., :3], residuals=np.array(points)[..., 3],
                    reader=reader)


# ---------------------------------------------------------------------------- one person

def test_trc_one_person_header_names_and_every_marker(tmp_path):
    r = person(0, range(3, 9))
    write_trc([r], tmp_path / "a.trc")
    header, names, frames, times, xyz = read_trc(tmp_path / "a.trc")
    assert header == {"DataRate": "30", "CameraRate": "30", "NumFrames": "6", "NumMarkers": "17", "Units": "mm",
                      "OrigDataRate": "30", "OrigDataStartFrame": "3", "OrigNumFrames": "6"}
    assert names == list(JOINTS)                                       # one person: plain joint names
    assert frames.tolist() == list(range(3, 9))
    np.testing.assert_allclose(times, np.arange(3, 9) / 30, atol=1e-6)
    np.testing.assert_allclose(xyz, lab_mm(r), atol=1e-3)             # 3 decimals of a mm


def test_c3d_one_person_labels_rate_units_frames_and_every_marker(tmp_path):
    r = person(0, range(3, 9))
    write_c3d([r], tmp_path / "a.c3d")
    d = read_c3d(tmp_path / "a.c3d")
    assert d["labels"] == list(JOINTS) and d["rate"] == 30 and d["units"] == "mm"
    assert d["first"] == 4 and d["frames"].tolist() == list(range(4, 10))   # C3D counts from 1: video frame + 1
    np.testing.assert_allclose(d["points"], lab_mm(r), atol=1e-3, rtol=1e-6)
    assert (d["residuals"] == 0).all()


def test_lab_frame_has_y_up_and_stays_right_handed(tmp_path):
    r = person(0, [0])
    r.poses["T-Agg"][0] = 0
    r.poses["T-Agg"][0, 10] = [0, -0.5, 0]                             # head above the pelvis (camera y down)
    r.poses["T-Agg"][0, 4] = [0.2, 0, 0]                               # left hip to the camera's right
    r.poses["T-Agg"][0, 1] = [0, 0, 0.3]                               # right hip further from the camera
    r.trajectory[0] = 0
    write_trc([r], tmp_path / "a.trc")
    xyz = read_trc(tmp_path / "a.trc")[4][0]
    np.testing.assert_allclose(xyz[[10, 4, 1]], [[0, 500, 0], [200, 0, 0], [0, 0, -300]], atol=1e-3)
    assert np.linalg.det(mocap_exports.CAMERA_TO_LAB) == pytest.approx(1.0)


def test_unknown_fps_is_25_in_both_files(tmp_path):
    r = person(0, range(10, 14), fps=None)
    write_trc([r], tmp_path / "a.trc")
    write_c3d([r], tmp_path / "a.c3d")
    header, _, _, times, _ = read_trc(tmp_path / "a.trc")
    assert header["DataRate"] == header["CameraRate"] == "25"
    np.testing.assert_allclose(times, np.arange(10, 14) / 25, atol=1e-6)
    assert read_c3d(tmp_path / "a.c3d")["rate"] == 25


# ---------------------------------------------------------------------------- several people

def two_people():
    """Person 3 on frames 2-6, person 7 on frames 5-9 with frame 7 lost and a non-finite joint in frame 8."""
    a = person(3, range(2, 7), seed=1)
    b = person(7, [5, 6, 8, 9], seed=2)
    b.poses["T-Agg"][2, 13] = np.nan
    return a, b


def expected_two(a, b) -> np.ndarray:
    """(8, 34, 3) frames 2-9, NaN where a person is absent."""
    want = np.full((8, 34, 3), np.nan)
    want[0:5, :17] = lab_mm(a)
    want[[3, 4, 6, 7], 17:] = lab_mm(b)
    return want


def test_trc_two_people_union_of_frames_prefixed_names_empty_fields_where_absent(tmp_path):
    a, b = two_people()
    write_trc([a, b], tmp_path / "a.trc")
    header, names, frames, times, xyz = read_trc(tmp_path / "a.trc")
    assert header["NumFrames"] == "8" and header["NumMarkers"] == "34" and header["OrigDataStartFrame"] == "2"
    assert names == [f"p3_{j}" for j in JOINTS] + [f"p7_{j}" for j in JOINTS]
    assert frames.tolist() == list(range(2, 10))
    np.testing.assert_allclose(times, np.arange(2, 10) / 30, atol=1e-6)
    np.testing.assert_allclose(xyz, expected_two(a, b), atol=1e-3)    # NaN (empty) exactly where expected
    lines = (tmp_path / "a.trc").read_text().split("\n")
    assert lines[5 + 5].endswith("\t\t\t\t")           # frame 7: the last markers empty, then the closing tab
    assert lines[5 + 7].startswith("9\t0.300000" + "\t" * 52) # frame 9: person 3's 51 fields empty


def test_c3d_two_people_residual_minus_one_where_absent(tmp_path):
    a, b = two_people()
    write_c3d([a, b], tmp_path / "a.c3d")
    d = read_c3d(tmp_path / "a.c3d")
    want = expected_two(a, b)
    missing = np.isnan(want[..., 0])
    assert d["labels"] == [f"p3_{j}" for j in JOINTS] + [f"p7_{j}" for j in JOINTS]
    assert d["first"] == 3 and d["frames"].tolist() == list(range(3, 11)) and d["rate"] == 30
    assert missing.sum() == 3 * 17 + 4 * 17 + 1
    np.testing.assert_array_equal(d["residuals"] < 0, missing)        # C3D: residual -1 marks a missing point
    assert (d["residuals"][missing] == -1).all() and (d["residuals"][~missing] == 0).all()
    np.testing.assert_allclose(d["points"][~missing], want[~missing], atol=1e-3, rtol=1e-6)
    assert (d["points"][missing] == 0).all()                          # and its coordinates are zero
    subjects = d["reader"].get("SUBJECTS:LABEL_PREFIXES").string_array.tolist()
    assert [s.strip() for s in subjects] == ["p3_", "p7_"]


def test_c3d_read_by_ezc3d_gives_nan_where_absent(tmp_path):
    ezc3d = pytest.importorskip("ezc3d")
    a, b = two_people()
    write_c3d([a, b], tmp_path / "a.c3d")
    points = ezc3d.c3d(str(tmp_path / "a.c3d"))["data"]["points"][:3].transpose(2, 1, 0)   # (F, M, 3)
    np.testing.assert_allclose(points, expected_two(a, b), atol=1e-3, rtol=1e-6)


def test_a_single_result_not_in_a_list_is_one_person(tmp_path):
    r = person(0, range(3))
    write_trc(r, tmp_path / "a.trc")
    write_c3d(r, tmp_path / "a.c3d")
    assert read_trc(tmp_path / "a.trc")[1] == read_c3d(tmp_path / "a.c3d")["labels"] == list(JOINTS)


def test_trc_header_names_the_target_file_when_written_through_a_temporary(tmp_path):
    write_trc([person(0, range(2))], tmp_path / ".walk.2.ab_cd123.partial.trc")
    write_trc([person(0, range(2))], tmp_path / "walk.trc")
    for name in (".walk.2.ab_cd123.partial.trc", "walk.trc"):
        first = (tmp_path / name).read_text().split("\n")[0]
        assert first.split("\t") == ["PathFileType", "4", "(X/Y/Z)", "walk.2.trc" if "partial" in name else "walk.trc"]


def test_ntsc_rate_keeps_its_digits(tmp_path):
    write_trc([person(0, range(3), fps=30000 / 1001)], tmp_path / "a.trc")
    assert float(read_trc(tmp_path / "a.trc")[0]["DataRate"]) == pytest.approx(30000 / 1001, rel=1e-9)


def test_one_person_without_a_known_rate_takes_the_others(tmp_path):
    a, b = person(1, range(4), fps=None), person(2, range(4), fps=50.0, seed=3)
    write_trc([a, b], tmp_path / "a.trc")
    assert read_trc(tmp_path / "a.trc")[0]["DataRate"] == "50"


# ---------------------------------------------------------------------------- frame numbers and file names

def test_c3d_frame_numbers_past_the_16_bit_header_go_to_trial_fields(tmp_path):
    r = person(0, range(70000, 70003))
    write_c3d([r], tmp_path / "a.c3d")
    d = read_c3d(tmp_path / "a.c3d")
    reader = d["reader"]
    start = reader.get("TRIAL:ACTUAL_START_FIELD").uint16_array.tolist()
    end = reader.get("TRIAL:ACTUAL_END_FIELD").uint16_array.tolist()
    assert start[0] + 65536 * start[1] == 70001 and end[0] + 65536 * end[1] == 70003
    assert reader.header.first_frame == 65535                         # the header's largest
    np.testing.assert_allclose(d["points"], lab_mm(r), atol=1e-2, rtol=1e-6)


def test_c3d_trial_fields_for_an_ordinary_clip(tmp_path):
    write_c3d([person(0, range(40000, 40002))], tmp_path / "a.c3d")
    reader = read_c3d(tmp_path / "a.c3d")["reader"]
    assert reader.get("TRIAL:ACTUAL_START_FIELD").uint16_array.tolist() == [40001, 0]
    assert reader.header.first_frame == 40001


def test_c3d_written_to_exactly_the_path_given_whatever_its_suffix(tmp_path):
    for name in ("a.C3D", ".a.x.partial.c3d"):
        write_c3d([person(0, range(3))], tmp_path / name)
        assert read_c3d(tmp_path / name)["labels"] == list(JOINTS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.x.partial.c3d", "a.C3D"]


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("writer", [write_trc, write_c3d])
def test_refuses_no_people_duplicate_ids_and_mismatched_rates(writer, tmp_path):
    with pytest.raises(ValueError, match="no people"):
        writer([], tmp_path / "x")
    with pytest.raises(ValueError, match="person id 4 appears twice"):
        writer([person(4, range(3)), person(4, range(3))], tmp_path / "x")
    with pytest.raises(ValueError, match="share a frame rate"):
        writer([person(1, range(3), fps=30.0), person(2, range(3), fps=25.0)], tmp_path / "x")
    r = person(2, range(3))
    anonymous = SimpleNamespace(shown=r.shown, trajectory=r.trajectory, frame_ids=r.frame_ids, fps=r.fps)
    with pytest.raises(ValueError, match="need a person_id each"):
        writer([person(1, range(3)), anonymous], tmp_path / "x")
    twice = person(1, [0, 1, 1])
    with pytest.raises(ValueError, match="frame number appears twice"):
        writer([twice], tmp_path / "x")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------- OpenSim, when installed

def test_opensim_reads_the_trc_with_nan_where_absent(tmp_path):
    opensim = pytest.importorskip("opensim")
    a, b = two_people()
    write_trc([a, b], tmp_path / "a.trc")
    table = opensim.TimeSeriesTableVec3(str(tmp_path / "a.trc"))       # TRCFileAdapter
    assert list(table.getColumnLabels()) == [f"p3_{j}" for j in JOINTS] + [f"p7_{j}" for j in JOINTS]
    assert table.getTableMetaDataAsString("Units") == "mm"
    times = [table.getIndependentColumn()[i] for i in range(table.getNumRows())]
    np.testing.assert_allclose(times, np.arange(2, 10) / 30, atol=1e-6)
    got = np.array([[[table.getRowAtIndex(i)[m][k] for k in range(3)] for m in range(34)] for i in range(8)])
    np.testing.assert_allclose(got, expected_two(a, b), atol=1e-3)
