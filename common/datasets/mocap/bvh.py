"""BVH motion capture (Biovision hierarchy) -> Human3.6M-17 joints.

A BVH file holds a skeleton (HIERARCHY: ROOT and JOINTs with an OFFSET from their parent, CHANNELS
and End Sites) and a line of channel values per frame (MOTION, after Frames and Frame Time). A
joint's rotation is the product of its rotation channels' rotations in their listed order
(Zrotation Xrotation Yrotation -> Rz @ Rx @ Ry), in degrees; its position channels replace the
matching OFFSET components (the root's place it in the world). A joint lies at its parent's position
+ the parent's global rotation @ its translation; an End Site likewise from its joint. BVH is y up.

A joint map gives each Human3.6M-17 joint (motion.H36M_NAMES) as a point of the skeleton:
"Name" (that joint); ["A", "B", ...] (the mean of those points, each itself a point);
{"between": [a, b], "t": t} (a + t (b - a); t defaults to 0.5, t = 2 goes as far again beyond b);
{"joint": "Name", "end": true} (the joint's End Site); {"first": [p, q, ...]} (the first of those
points that the file has). A map is a built-in map's name, a dict, or a JSON file holding one; with
none given, the first built-in map (in the order below) whose joints the file has is used.

Built-in maps. In all, the pelvis is the mean of the two hip joints (Human3.6M's pelvis lies midway
between its hips), the spine the midpoint of the pelvis and the thorax (mid torso, as Human3.6M's),
the hips, knees, ankles the upper-leg, lower-leg and foot joints, the shoulders the upper-arm joints
(not the clavicles), the elbows the forearm joints, the wrists the hand joints.
- cmu (CMU mocap's BVH conversions, joints at the ASF bones' ends: LeftUpLeg at the hip joint
  centre ...): limbs LeftUpLeg, LeftLeg, LeftFoot, LeftArm, LeftForeArm, LeftHand and the Right
  ones; thorax: Neck (the base of the neck between the shoulders, where the clavicles start);
  neck_nose: Neck1 (the end of the lower neck, about 0.1 m above); head: Head's End Site (the top of
  the head), else Head extended beyond Neck1 by as much again (LowerBack, Spine, Spine1 go unused).
- mixamo (names with the root's prefix, "mixamorig:", "mixamorig1:" ..., or none as in HumanIK):
  limbs as cmu; thorax: Neck (the base of the neck); neck_nose: Head (Mixamo's head joint sits at
  the top of the neck); head: HeadTop_End, else Head's End Site, else Head extended beyond Neck by
  as much again.
- rigify (deform bones DEF-..., or ORG-... or unprefixed; a BVH joint is a bone's head): limbs
  thigh, shin, foot, upper_arm, forearm, hand with .L / .R; thorax: spine.004 (the neck's base);
  neck_nose: spine.006 (the head bone's base, the top of the neck); head: spine.006's End Site (the
  head bone's tail), else spine.006 extended beyond spine.004 by as much again.

Units: `scale` metres per file unit; when not given, the unit among UNITS that makes the rest
(OFFSET) pose's ankle-to-head chain closest to a Human3.6M subject's (SKELETON_HEIGHT).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .motion import H36M_NAMES, Motion, MotionError, from_y_up

CHANNELS = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")
UNITS = (1.0, 0.01, 0.001, 0.0254, 0.0254 / 0.45)  # metres per unit, the guesses: m, cm, mm, inch, CMU's inch / 0.45
# metres along a Human3.6M subject's pelvis-thorax-neck-head chain plus one leg (hip-knee-ankle)
SKELETON_HEIGHT = 1.62
LIMB_PARTS = ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")


@dataclass
class Joint:
    """One ROOT or JOINT: its parent's index (None for a root), OFFSET, CHANNELS, the index of its
    first channel in a frame's values, and its End Site's OFFSET if it has one."""

    name: str
    parent: int | None
    offset: np.ndarray
    channels: list[str]
    first: int = 0
    end: np.ndarray | None = None


def axis_rotation(axis: str, radians: np.ndarray) -> np.ndarray:
    """(N,) angles about axis 'X', 'Y' or 'Z' (right-handed) -> (N, 3, 3) rotation matrices."""
    i = "XYZ".index(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    c, s = np.cos(radians), np.sin(radians)
    m = np.zeros(np.shape(radians) + (3, 3))
    m[..., i, i] = 1.0
    m[..., j, j], m[..., k, k] = c, c
    m[..., j, k], m[..., k, j] = -s, s
    return m


def intrinsic_rotations(axes: str, radians: np.ndarray) -> np.ndarray:
    """(N, len(axes)) angles about the axes in order -> (N, 3, 3): R_axes[0] @ R_axes[1] @ ..."""
    out = np.broadcast_to(np.eye(3), (len(radians), 3, 3)).copy()
    for i, axis in enumerate(axes):
        out = out @ axis_rotation(axis, radians[:, i])
    return out


class _Words:
    """The HIERARCHY's words with their line numbers (braces are words of their own)."""

    def __init__(self, path: Path, lines: list[str]):
        self.path = path
        self.words = [(w, n) for n, line in enumerate(lines, 1)
                      for w in line.replace("{", " { ").replace("}", " } ").split()]
        self.at = 0

    def peek(self) -> str | None:
        return self.words[self.at][0] if self.at < len(self.words) else None

    def error(self, what: str) -> MotionError:
        line = self.words[min(self.at, len(self.words) - 1)][1] if self.words else 1
        return MotionError(f"{self.path}: line {line}: {what}")

    def take(self, *expected: str) -> str:
        """The next word, or each of the expected words in turn (the last is returned)."""
        for want in expected or (None,):
            if self.at >= len(self.words):
                raise self.error("the skeleton ends early; the HIERARCHY must close every brace before MOTION")
            word = self.words[self.at][0]
            if want is not None and word != want:
                raise self.error(f"expected {want!r}, found {word!r}")
            self.at += 1
        return word

    def number(self, what: str) -> float:
        word = self.peek()
        try:
            value = float(word or "")
        except ValueError:
            raise self.error(f"{what}: expected a number, found {word!r}") from None
        self.take()
        return value


def _parse_joint(words: _Words, joints: list[Joint], parent: int | None) -> None:
    name = words.take()
    words.take("{", "OFFSET")
    offset = np.array([words.number(f"OFFSET of {name}") for _ in range(3)])
    channels = []
    if words.peek() == "CHANNELS":
        words.take()
        for _ in range(int(words.number(f"CHANNELS count of {name}"))):
            channel = words.take()
            channel = channel[:1].upper() + channel[1:].lower()
            if channel not in CHANNELS:
                raise words.error(f"unknown channel {channel!r} of {name}; BVH channels are {', '.join(CHANNELS)}")
            channels.append(channel)
    joint = Joint(name, parent, offset, channels)
    joints.append(joint)
    index = len(joints) - 1
    while (word := words.peek()) != "}":
        if word == "JOINT":
            words.take()
            _parse_joint(words, joints, index)
        elif word == "End":
            words.take("End", "Site", "{", "OFFSET")
            joint.end = np.array([words.number(f"End Site OFFSET of {name}") for _ in range(3)])
            words.take("}")
        elif word is None:
            words.take("}")
        else:
            raise words.error(f"unexpected {word!r} in joint {name}; expected JOINT, End Site or '}}'")
    words.take()


def parse_hierarchy(path: Path, lines: list[str]) -> list[Joint]:
    """The joints of the HIERARCHY section (the lines before MOTION), parents before children."""
    words = _Words(path, lines)
    if words.peek() != "HIERARCHY":
        raise words.error("no HIERARCHY at the start; this is not a BVH file")
    words.take()
    joints: list[Joint] = []
    while words.peek() == "ROOT":
        words.take()
        _parse_joint(words, joints, None)
    if not joints or words.peek() is not None:
        raise words.error(f"expected {'ROOT' if not joints else 'MOTION'}, found {words.peek()!r}")
    first = 0
    for joint in joints:
        joint.first, first = first, first + len(joint.channels)
    return joints


def _header(path: Path, entry: tuple[int, str], label: str, kind):
    """The number after `label` on a MOTION header line (number, text), as `kind`."""
    number, line = entry
    if not line.startswith(label):
        raise MotionError(f"{path}: line {number}: expected '{label} ...', found {line!r}")
    try:
        return kind(line[len(label):].strip())
    except ValueError:
        raise MotionError(f"{path}: line {number}: {line!r}: not a number after {label!r}") from None


def read_frames(path: Path, lines: list[str], motion: int, channels: int) -> tuple[np.ndarray, float]:
    """The MOTION section after line index `motion`: (frames, channels) values and the frame time."""
    rest = [(n, line.strip()) for n, line in enumerate(lines[motion + 1:], motion + 2) if line.strip()]
    if len(rest) < 2:
        raise MotionError(f"{path}: line {len(lines)}: MOTION lacks its 'Frames:' and 'Frame Time:' lines")
    count = _header(path, rest[0], "Frames:", int)
    frame_time = _header(path, rest[1], "Frame Time:", float)
    if not frame_time > 0:
        raise MotionError(f"{path}: line {rest[1][0]}: Frame Time {frame_time}; it must be positive seconds")
    frames = rest[2:]
    if count == 0 or not frames:
        raise MotionError(f"{path}: line {rest[1][0]}: no frames; a motion needs frame lines after 'Frame Time:'")
    rows = [line.split() for _, line in frames]
    for (number, _), row in zip(frames, rows):
        if len(row) != channels:
            raise MotionError(f"{path}: line {number}: {len(row)} values, expected {channels} (one per channel of "
                              "the HIERARCHY); the file is cut or damaged")
    if len(frames) != count:
        raise MotionError(f"{path}: line {frames[-1][0]}: {len(frames)} frame lines, but 'Frames: {count}'; "
                          "the file is cut or damaged")
    try:
        return np.array(rows, np.float64), frame_time
    except ValueError:
        for (number, _), row in zip(frames, rows):
            try:
                np.array(row, np.float64)
            except ValueError as e:
                raise MotionError(f"{path}: line {number}: {e}") from None
        raise


def forward_kinematics(joints: list[Joint], values: np.ndarray | None = None) -> tuple[dict, dict]:
    """(frames, channels) values -> ({joint: (N, 3) position}, {joint: (N, 3) End Site position}),
    in file units and axes; values None: the rest pose (one frame: the OFFSETs, no rotation)."""
    n = 1 if values is None else len(values)
    positions, rotations, ends = [], [], {}
    for joint in joints:
        translation = np.broadcast_to(joint.offset, (n, 3)).copy()
        axes, columns = "", []
        for k, channel in enumerate(joint.channels if values is not None else ()):
            if channel.endswith("position"):
                translation[:, "XYZ".index(channel[0])] = values[:, joint.first + k]
            else:
                axes += channel[0]
                columns.append(joint.first + k)
        local = intrinsic_rotations(axes, np.radians(values[:, columns]) if columns else np.zeros((n, 0)))
        base, turn = (0.0, np.eye(3)) if joint.parent is None else (positions[joint.parent], rotations[joint.parent])
        position, rotation = base + (turn @ translation[..., None])[..., 0], turn @ local
        positions.append(position)
        rotations.append(rotation)
        if joint.end is not None:
            ends[joint.name] = position + rotation @ joint.end
    return {j.name: p for j, p in zip(joints, positions)}, ends


class _Missing(Exception):
    """A joint or End Site that the skeleton lacks (the message names it)."""


def _point(spec, points: tuple[dict, dict]) -> np.ndarray:
    """The (N, 3) positions of one joint-map point (see the module's docstring)."""
    joints, ends = points
    if isinstance(spec, str):
        if spec not in joints:
            raise _Missing(repr(spec))
        return joints[spec]
    if isinstance(spec, list) and spec:
        return np.mean([_point(s, points) for s in spec], axis=0)
    if isinstance(spec, dict) and isinstance(spec.get("between"), list) and len(spec["between"]) == 2:
        a, b = (_point(s, points) for s in spec["between"])
        return a + float(spec.get("t", 0.5)) * (b - a)
    if isinstance(spec, dict) and isinstance(spec.get("joint"), str):
        if not spec.get("end"):
            return _point(spec["joint"], points)
        if spec["joint"] not in ends:
            raise _Missing(f"the End Site of {spec['joint']!r}")
        return ends[spec["joint"]]
    if isinstance(spec, dict) and isinstance(spec.get("first"), list):
        missing = []
        for s in spec["first"]:
            try:
                return _point(s, points)
            except _Missing as e:
                missing.append(str(e))
        raise _Missing(" or ".join(missing) or "nothing")
    raise ValueError(f"{spec!r} is not a point: give a joint name, a list, or a dict with 'between', 'joint' or "
                     "'first'")


def _some(names) -> str:
    names = list(names)
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")


def map_points(path: Path, label: str, mapping: dict, points: tuple[dict, dict]) -> np.ndarray:
    """The (N, 17, 3) Human3.6M-17 joints that a joint map picks from the skeleton's points."""
    fix = f"pass --joint-map FILE.json mapping each Human3.6M joint ({', '.join(H36M_NAMES)}) to a BVH joint"
    unknown = sorted(set(mapping) - set(H36M_NAMES))
    if unknown:
        raise MotionError(f"{path}: {label} names {unknown}, which are no Human3.6M joints; {fix}")
    out = []
    for name in H36M_NAMES:
        if name not in mapping:
            raise MotionError(f"{path}: {label} gives no point for Human3.6M's {name!r}; {fix}")
        try:
            out.append(_point(mapping[name], points))
        except _Missing as e:
            raise MotionError(f"{path}: {label} maps {name!r} to {e}, which the file lacks (its joints: "
                              f"{_some(points[0])}); pass --joint-map FILE.json mapping {name!r} to one of them"
                              ) from None
        except ValueError as e:
            raise MotionError(f"{path}: {label} maps {name!r} to {e}") from None
    return np.stack(out, axis=1)


def _built_in(limb, hips: list, thorax: str, neck_nose: str, head: dict) -> dict:
    """A built-in map: limb(side, part) the joint for side 'Left'/'Right' and part in LIMB_PARTS."""
    return {f"{side.lower()}_{part}": limb(side, part) for side in ("Left", "Right") for part in LIMB_PARTS} | {
        "pelvis": hips, "spine": {"between": [hips, thorax], "t": 0.5}, "thorax": thorax, "neck_nose": neck_nose,
        "head": head}


HUMANIK_PARTS = dict(zip(LIMB_PARTS, ("UpLeg", "Leg", "Foot", "Arm", "ForeArm", "Hand")))
RIGIFY_PARTS = dict(zip(LIMB_PARTS, ("thigh", "shin", "foot", "upper_arm", "forearm", "hand")))


def _cmu_map(names) -> dict:
    head = {"first": [{"joint": "Head", "end": True}, {"between": ["Neck1", "Head"], "t": 2.0}]}
    return _built_in(lambda side, part: side + HUMANIK_PARTS[part], ["LeftUpLeg", "RightUpLeg"], "Neck", "Neck1",
                     head)


def _mixamo_map(names) -> dict:
    p = next((n[:-len("Hips")] for n in names if n.endswith("Hips")), "mixamorig:")
    head = {"first": [p + "HeadTop_End", {"joint": p + "Head", "end": True},
                      {"between": [p + "Neck", p + "Head"], "t": 2.0}]}
    return _built_in(lambda side, part: p + side + HUMANIK_PARTS[part], [p + "LeftUpLeg", p + "RightUpLeg"],
                     p + "Neck", p + "Head", head)


def _rigify_map(names) -> dict:
    p = next((p for p in ("DEF-", "ORG-", "") if p + "spine" in names), "DEF-")
    head = {"first": [{"joint": p + "spine.006", "end": True},
                      {"between": [p + "spine.004", p + "spine.006"], "t": 2.0}]}
    return _built_in(lambda side, part: f"{p}{RIGIFY_PARTS[part]}.{side[0]}", [p + "thigh.L", p + "thigh.R"],
                     p + "spine.004", p + "spine.006", head)


BUILT_IN_MAPS = {"cmu": _cmu_map, "mixamo": _mixamo_map, "rigify": _rigify_map}


def choose_map(path: Path, joint_map, rest: tuple[dict, dict]) -> tuple[dict, str]:
    """(the joint map, its label for messages); with none given, the first built-in map that fits."""
    names = list(rest[0])
    if joint_map is None:
        for label, build in BUILT_IN_MAPS.items():
            mapping = build(names)
            try:
                map_points(path, label, mapping, rest)
                return mapping, f"joint map {label!r}"
            except MotionError:
                continue
        raise MotionError(f"{path}: its joints ({_some(names)}) fit no built-in joint map ({', '.join(BUILT_IN_MAPS)})"
                          "; pass --joint-map FILE.json mapping each Human3.6M joint to a BVH joint")
    if isinstance(joint_map, dict):
        return joint_map, "the joint map"
    name = str(joint_map)
    if name in BUILT_IN_MAPS:
        return BUILT_IN_MAPS[name](names), f"joint map {name!r}"
    if name.lower().endswith(".json") or Path(name).is_file():
        try:
            mapping = json.loads(Path(name).read_text())
            if not isinstance(mapping, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            raise MotionError(f"{path}: joint map {name} cannot be read ({e}); give a JSON file holding an object "
                              'like {"pelvis": "Hips", ...}') from None
        return mapping, f"joint map {name}"
    raise MotionError(f"{path}: unknown joint map {name!r}; use one of {', '.join(BUILT_IN_MAPS)} or pass "
                      "--joint-map FILE.json mapping each Human3.6M joint to a BVH joint")


def guess_scale(path: Path, rest: np.ndarray) -> float:
    """Metres per file unit from the (17, 3) rest-pose Human3.6M joints in file units (see UNITS)."""
    def d(a: int, b: int) -> float:
        return float(np.linalg.norm(rest[a] - rest[b]))
    length = d(0, 8) + d(8, 9) + d(9, 10) + (d(1, 2) + d(2, 3) + d(4, 5) + d(5, 6)) / 2
    if not length > 0:
        raise MotionError(f"{path}: a skeleton of zero size in its rest pose; the unit cannot be guessed, pass "
                          "scale (metres per file unit)")
    return min(UNITS, key=lambda s: abs(np.log(length * s / SKELETON_HEIGHT)))


def read_bvh(path, joint_map: dict | str | None = None, scale: float | None = None) -> Motion:
    """A BVH file -> Motion (Human3.6M-17 joints, metres, z up; not floor-placed, not resampled).
    joint_map: a built-in map's name, a dict or a JSON file (see the module's docstring); None picks
    a built-in map by the joint names. scale: metres per file unit; None guesses it."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        raise MotionError(f"{path}: cannot be read ({e})") from None
    motion = next((i for i, line in enumerate(lines) if line.strip() == "MOTION"), None)
    if motion is None:
        raise MotionError(f"{path}: line {len(lines)}: no MOTION section; the file is cut or not a BVH file")
    joints = parse_hierarchy(path, lines[:motion])
    values, frame_time = read_frames(path, lines, motion, sum(len(j.channels) for j in joints))
    rest = forward_kinematics(joints)
    mapping, label = choose_map(path, joint_map, rest)
    positions = map_points(path, label, mapping, forward_kinematics(joints, values))
    if scale is None:
        scale = guess_scale(path, map_points(path, label, mapping, rest)[0])
    return Motion(path.stem, from_y_up(positions, scale), 1.0 / frame_time, str(path))
