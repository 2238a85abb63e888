"""Writing lifted people (result.WildResult, one person; result.PeopleResult, every person of a
video) to files: one function per format, chosen by the file's suffix (EXPORTERS). Adding a
format is one writer function and one table entry.

- .npz: every array of one person (hypotheses of every iteration, the pose of every aggregation
  mode that needs no ground truth under its key: j_agg, p_agg, ...; trajectory, camera, the 2D
  input) and, for a video, every decoded frame's detector keypoints;
- .json, .csv, .bvh, .trc and .c3d show one pose, the result's pose_mode (T-Agg by default;
  --pose-mode);
- .json: per person, frame and Human3.6M joint, x, y, z in metres and the 2D (see write_json);
- .csv: one row per person, frame and joint, the same numbers (see write_csv);
- .bvh: a skeleton with the person's bone lengths (the shown pose's, result.bone_lengths) and the
  root motion of the estimated trajectory, for Blender and other animation tools (see write_bvh);
- .trc / .c3d: marker trajectories for OpenSim, Pose2Sim and motion-capture software
  (mocap_exports.py).

Several people: .json, .csv, .trc and .c3d hold everyone in one file; .npz and .bvh hold one
person each (a BVH has one skeleton), so `clip.bvh` becomes `clip_person1.bvh`,
`clip_person2.bvh`, ... (output_paths); with one person the name is used as given.

3D is camera space (x right, y down, z forward), metres; joints are root-relative (the pelvis
at 0) with the estimated pelvis position `root` beside them. Every file is written to a
temporary name in its folder and renamed only when all of them are complete, so a failure
leaves no half-written file and no earlier file replaced.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..inference.aggregation import lifting_mode, mode_key
from ..geometry.coco import coco_to_h36m
from ..storage.files import atomic_files, check_writable_file
from .mocap_exports import CAMERA_TO_LAB, write_c3d, write_trc   # BVH axes = the markers' lab axes
from ..geometry.skeleton import h36m_metadata, h36m_skeleton_17


def write_npz(result, path: Path) -> None:
    """Every array of the result (plain arrays, no pickles)."""
    arrays = dict(hypotheses=result.hypotheses, **{mode_key(m): p for m, p in result.poses.items()},
                  trajectory=result.trajectory, keypoints_2d=result.keypoints_2d, confidence=result.confidence,
                  frame_ids=result.frame_ids, intrinsics=result.intrinsics,
                  image_size=np.asarray(result.image_size, dtype=np.int64), input_layout=np.str_(result.input_layout),
                  keypoints_layout=np.str_(result.keypoints_layout), detected=detected_frames(result),
                  person_id=np.int64(result.person_id))
    if result.uncertainty is not None:
        arrays.update(uncertainty=result.uncertainty, uncertainty_calibrated=np.bool_(result.uncertainty_calibrated),
                      coverage=np.float64(result.coverage))
    if result.fps is not None:
        arrays["fps"] = np.float64(result.fps)
    if result.video is not None:
        v = result.video
        arrays.update(detector=np.str_(v.detector), detector_keypoints=v.keypoints,
                      detector_keypoint_names=np.array(v.keypoint_names), video_frames=np.int64(v.frames))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def write_json(people, path: Path) -> None:
    """{"format", "pose", "joints", "parents", "fps", "image_size", "camera", "people": [{"id",
    "frames": [{"frame", "time_s", "detected", "root": [x, y, z], "joints_3d": [[x, y, z] x 17],
    "joints_2d": [[u, v] x 17], "confidence": [17], "uncertainty_mm": [17]}]}]}; metres, pixels
    (the 2D the 3D was aggregated against)."""
    first = people[0]
    listed = []
    for result in people:
        table = per_joint_table(result)
        frames = []
        for i, frame in enumerate(result.frame_ids.tolist()):
            frames.append({"frame": frame, "time_s": _round(table["time_s"][i]), "detected": bool(table["detected"][i]),
                           "root": _round(result.trajectory[i]), "joints_3d": _round(result.shown[i]),
                           "joints_2d": _round(table["uv"][i], 2), "confidence": _round(table["confidence"][i], 3)})
            if result.uncertainty is not None:
                frames[-1]["uncertainty_mm"] = _round(result.uncertainty[i], 2)
        listed.append({"id": int(result.person_id), "frames": frames})
    skeleton = h36m_skeleton_17()
    data = {"format": "d3dp-poses-2", "pose": lifting_mode(first.pose_mode), "units": "metres (3D), pixels (2D)",
            "coordinates": "camera space: x right, y down, z forward; joints_3d root-relative (pelvis = 0), "
                           "root = estimated pelvis position",
            "joints": list(skeleton.names), "parents": [int(q) for q in skeleton.parents], "fps": first.fps,
            "image_size": list(first.image_size), "camera": camera_of(first), "input_layout": first.input_layout,
            "uncertainty": _uncertainty_note(first), "filter": first.filter, "people": listed}
    with open(path, "w") as f:
        json.dump(data, f, separators=(",", ":"))


CSV_COLUMNS = ("person", "frame", "time_s", "detected", "joint", "name", "x", "y", "z", "cam_x", "cam_y", "cam_z", "u", "v",
               "confidence", "uncertainty_mm")


def _uncertainty_note(result) -> str | None:
    """What uncertainty_mm means in this file (None: a single hypothesis gives none)."""
    if result.uncertainty is None:
        return None
    where = "" if lifting_mode(result.pose_mode) == "J-Agg" else " (its J-Agg position, which the .npz holds)"
    if result.uncertainty_calibrated:
        return (f"uncertainty_mm: radius around each joint{where} holding the true joint with probability "
                f"{result.coverage:.2f}")
    return f"uncertainty_mm: spread of the hypotheses around each joint{where} (uncalibrated)"


def write_csv(people, path: Path) -> None:
    """One row per person, frame and joint: x, y, z root-relative and cam_x, cam_y, cam_z with
    the estimated root, metres; u, v the joint's 2D in pixels and its detector confidence;
    uncertainty_mm the joint's uncertainty radius (empty for a single hypothesis)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for result in people:
            table = per_joint_table(result)
            absolute = result.shown + result.trajectory[:, None]
            for i, frame in enumerate(result.frame_ids.tolist()):
                t, detected = f"{table['time_s'][i]:.6f}", int(table["detected"][i])
                for j, name in enumerate(table["names"]):
                    writer.writerow([result.person_id, frame, t, detected, j, name,
                                     *(f"{v:.6f}" for v in result.shown[i, j]),
                                     *(f"{v:.6f}" for v in absolute[i, j]), *(f"{v:.2f}" for v in table["uv"][i, j]),
                                     f"{table['confidence'][i, j]:.3f}",
                                     "" if result.uncertainty is None else f"{result.uncertainty[i, j]:.2f}"])


# ---------------------------------------------------------------------------- BVH

# Rest pose (a T-pose facing +Z, Y up, the person's left at +X): direction of the bone from
# each joint's parent to it, in Human3.6M-17 order.
REST_DIRECTIONS = np.array([
    (0, 0, 0),                                # pelvis (root)
    (-1, 0, 0), (0, -1, 0), (0, -1, 0),       # right hip, knee, ankle
    (1, 0, 0), (0, -1, 0), (0, -1, 0),        # left hip, knee, ankle
    (0, 1, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0),   # spine, thorax, neck/nose, head
    (1, 0, 0), (1, 0, 0), (1, 0, 0),          # left shoulder, elbow, wrist
    (-1, 0, 0), (-1, 0, 0), (-1, 0, 0),       # right shoulder, elbow, wrist
], dtype=np.float64)


def bone_lengths() -> np.ndarray:
    """(17,) metres: the length from each Human3.6M-17 joint to its parent (Human3.6M averages)."""
    skeleton, lengths = h36m_skeleton_17(), h36m_metadata()["approximate_bone_lengths_mm_17"]
    return np.array([0.0 if p < 0 else lengths[skeleton.names[j]] / 1000 for j, p in enumerate(skeleton.parents)])


def bvh_nodes(lengths: np.ndarray | None = None):
    """The BVH hierarchy: [(name, parent node index, joint index, offset (3,) metres)], with the
    bone lengths (17,) metres given (default: Human3.6M's averages, bone_lengths()).

    Every Human3.6M joint is a node; a joint with several children (pelvis, thorax) gets one
    zero-offset node per child bone, so that every bone has a rotation of its own and the
    file reproduces every bone direction exactly."""
    skeleton = h36m_skeleton_17()
    parents, names = skeleton.parents, skeleton.names
    children = {j: [c for c in range(len(parents)) if parents[c] == j] for j in range(len(parents))}
    offsets = REST_DIRECTIONS * (bone_lengths() if lengths is None else np.asarray(lengths, np.float64))[:, None]
    nodes, index = [], {}

    def add(j, parent_node):
        index[j] = len(nodes)
        p = parents[j]
        nodes.append((names[j], parent_node, j, offsets[j] if p >= 0 else np.zeros(3)))
        me = index[j]
        for c in children[j]:
            if len(children[j]) > 1:
                nodes.append((f"{names[j]}_to_{names[c]}", me, -1, np.zeros(3)))
                add(c, len(nodes) - 1)
            else:
                add(c, me)

    add(0, -1)
    return nodes


def bvh_rotations(poses: np.ndarray) -> np.ndarray:
    """Local rotation matrices (N, nodes, 3, 3) that turn the rest pose's bones into the
    directions of the poses (N, 17, 3), camera space. The root faces the way the hips
    and spine do; every other rotation is the smallest one that aims its bone."""
    nodes = bvh_nodes()
    target = poses.astype(np.float64) @ CAMERA_TO_LAB.T                # (N, 17, 3) BVH axes
    parents = h36m_skeleton_17().parents
    n = len(target)
    global_rot = np.zeros((n, len(nodes), 3, 3))
    local = np.zeros_like(global_rot)
    kids = [[c for c, node in enumerate(nodes) if node[1] == k] for k in range(len(nodes))]
    for k, (_, parent, _, _) in enumerate(nodes):
        if parent < 0:
            global_rot[:, k] = _body_frame(target)
        else:
            g_parent = global_rot[:, parent]
            if len(kids[k]) != 1:
                global_rot[:, k] = g_parent                           # carries no single bone
            else:
                c = nodes[kids[k][0]][2]                              # the joint whose bone this node aims
                bone = target[:, c] - target[:, parents[c]]
                rest = np.einsum("nij,j->ni", g_parent, REST_DIRECTIONS[c])
                global_rot[:, k] = _aim(rest, bone) @ g_parent
        local[:, k] = global_rot[:, k] if parent < 0 else \
            np.swapaxes(global_rot[:, parent], -1, -2) @ global_rot[:, k]
    return local


def write_bvh(result, path: Path) -> None:
    """BVH motion: the person's bone lengths (result.bone_lengths, metres), root position = the
    estimated pelvis trajectory, Y up, channels Zrotation Xrotation Yrotation (degrees)."""
    from scipy.spatial.transform import Rotation   # heavy: scipy, only for .bvh

    nodes = bvh_nodes(result.bone_lengths())
    local = bvh_rotations(result.shown)
    n = len(local)
    euler = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("ZXY", degrees=True).reshape(n, len(nodes), 3)
    root = result.trajectory.astype(np.float64) @ CAMERA_TO_LAB.T
    kids = {k: [c for c, node in enumerate(nodes) if node[1] == k] for k in range(len(nodes))}
    lines = ["HIERARCHY"]

    def emit(k, depth):
        name, parent, _, offset = nodes[k]
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if parent < 0 else 'JOINT'} {name}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}")
        channels = "Xposition Yposition Zposition " if parent < 0 else ""
        lines.append(f"{pad}  CHANNELS {6 if parent < 0 else 3} {channels}Zrotation Xrotation Yrotation")
        for c in kids[k]:
            emit(c, depth + 1)
        if not kids[k]:
            end = REST_DIRECTIONS[nodes[k][2]] * 0.05                 # a 5 cm tip along the bone
            lines.extend([f"{pad}  End Site", pad + "  {",
                          f"{pad}    OFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}", pad + "  }"])
        lines.append(pad + "}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {n}", f"Frame Time: {1.0 / (result.fps or 25.0):.6f}"]
    for i in range(n):
        values = [*root[i], *euler[i].ravel()]
        lines.append(" ".join(f"{v:.6f}" for v in values))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _body_frame(points: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotation whose columns are the pelvis's x (right hip -> left hip), y (up the
    spine, made orthogonal) and z axes; the identity in the rest pose."""
    x = points[:, 4] - points[:, 1]
    up = points[:, 7] - points[:, 0]
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)
    up = up - np.sum(up * x, axis=-1, keepdims=True) * x
    up = up / np.maximum(np.linalg.norm(up, axis=-1, keepdims=True), 1e-9)
    return np.stack([x, up, np.cross(x, up)], axis=-1)


def _aim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 3, 3) the smallest rotations turning directions a (N, 3) into b (N, 3) (identity where
    b is degenerate; a half turn about a perpendicular axis where they are opposite)."""
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    b = np.where(nb > 1e-9, b / np.maximum(nb, 1e-12), a)
    v = np.cross(a, b)
    c = np.sum(a * b, axis=-1)
    vx = np.zeros(a.shape + (3,))
    vx[:, 0, 1], vx[:, 0, 2], vx[:, 1, 0] = -v[:, 2], v[:, 1], v[:, 2]
    vx[:, 1, 2], vx[:, 2, 0], vx[:, 2, 1] = -v[:, 0], -v[:, 1], v[:, 0]
    eye = np.broadcast_to(np.eye(3), vx.shape)
    opposite = c < -1 + 1e-9
    scale = np.where(opposite, 0.0, 1.0 / np.maximum(1 + c, 1e-12))[:, None, None]
    rot = eye + vx + vx @ vx * scale
    if opposite.any():                                                # half turn about an axis normal to a
        helper = np.where(np.abs(a[opposite, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
        axis = np.cross(a[opposite], helper)
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        rot[opposite] = 2 * axis[:, :, None] * axis[:, None, :] - np.eye(3)
    return rot


# ---------------------------------------------------------------------------- shared

def detected_frames(result) -> np.ndarray:
    """(N,) bool: the followed person was detected in the frame (not filled in)."""
    return (np.asarray(result.confidence) > 0).any(axis=-1)


def camera_of(result) -> dict:
    """The pinhole camera JPMA assumed, in pixels."""
    w, h = result.image_size
    fx, fy, cx, cy = (float(v) for v in result.intrinsics[:4])
    return {"focal_px": [fx * w / 2, fy * w / 2], "centre_px": [(cx + 1) * w / 2, (cy + h / w) * w / 2]}


def per_joint_table(result) -> dict:
    """Names, parents, times and each frame's Human3.6M-17 2D (the COCO input mapped), confidence."""
    skeleton = h36m_skeleton_17()
    uv, confidence = (coco_to_h36m(result.keypoints_2d, result.confidence) if result.keypoints_layout == "coco"
                      else (result.keypoints_2d, result.confidence))
    return {"names": list(skeleton.names), "parents": [int(p) for p in skeleton.parents], "uv": uv,
            "confidence": confidence, "detected": detected_frames(result),
            "time_s": result.frame_ids / (result.fps or 25.0)}


def _round(x, digits: int = 6):
    return np.round(np.asarray(x, dtype=np.float64), digits).tolist()


EXPORTERS = {".npz": write_npz, ".json": write_json, ".csv": write_csv, ".bvh": write_bvh, ".trc": write_trc,
             ".c3d": write_c3d}
PER_PERSON = {".npz", ".bvh"}    # formats of one person a file (the others take every person at once)


def people_of(result) -> list:
    """The people of a result: a PeopleResult's, or a WildResult alone."""
    people = list(getattr(result, "people", [result]))
    if not people:
        raise ValueError("no person was lifted, so there is nothing to write")
    return people


def output_paths(path, people) -> list[Path]:
    """The files `path` stands for: itself, or for a one-person format and several people one
    file per person, `<stem>_person<id><suffix>`."""
    path = Path(path)
    if path.suffix.lower() not in PER_PERSON or len(people) == 1:
        return [path]
    return [path.with_name(f"{path.stem}_person{p.person_id}{path.suffix}") for p in people]


def check_outputs(paths, flag: str = "--output", people=None) -> list[Path]:
    """The output files, checked before any work: known suffixes, writable folders, no repeats;
    with people, the per-person files the paths stand for are checked too."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if p.suffix.lower() not in EXPORTERS:
            raise ValueError(f"{flag} {p}: unknown format {p.suffix or '(no suffix)'!r}; use one of "
                             f"{', '.join(EXPORTERS)}")
    targets = [t for p in paths for t in (output_paths(p, people) if people else [p])]
    for t in targets:
        check_writable_file(t, flag)
    if len({t.resolve() for t in targets}) < len(targets):
        raise ValueError(f"{flag} names the same file twice: {', '.join(map(str, targets))}")
    return paths


def write_outputs(result, paths) -> list[Path]:
    """Write the result (a WildResult or a PeopleResult) to every path (format by suffix; one
    file per person for .npz and .bvh when there are several); all or nothing (see module
    docstring). Returns the files written."""
    people = people_of(result)
    paths = check_outputs(paths, people=people)
    jobs = []                                                          # (writer, what it writes, file)
    for p in paths:
        writer = EXPORTERS[p.suffix.lower()]
        if p.suffix.lower() in PER_PERSON:
            jobs += [(writer, person, target) for person, target in zip(people, output_paths(p, people))]
        else:
            jobs.append((writer, people, p))
    with atomic_files([target for _, _, target in jobs]) as temps:
        for tmp, (writer, what, _) in zip(temps, jobs):
            writer(what, tmp)
    return [target for _, _, target in jobs]
