"""CMU ASF/AMC motion capture (Acclaim skeleton and motion) -> Human3.6M-17 joints.

The ASF file is the skeleton: :units (length, the unit multiplier; angle, deg or rad), :root (order
of its AMC values, e.g. TX TY TZ RX RY RZ; axis and orientation; position), :bonedata (per bone a
direction in the world at rest, a length, an axis (x, y, z angles and the order they apply in, e.g.
XYZ), the dof of its AMC values, e.g. rx ry rz) and :hierarchy (parent child child ...). The AMC
file is the motion: after its header (:FULLY-SPECIFIED, :DEGREES or :RADIANS), a frame number, then
a line `bone v1 v2 ...` per bone with degrees of freedom.

Rotations from several angles apply about fixed axes in the listed order (Acclaim's convention):
axis ... XYZ and dof rx ry rz give Rz @ Ry @ Rx. Forward kinematics as CMU's: each bone has C (its
axis) and M (its dof rotation in the frame); its global rotation is L = L_parent @ C @ M @ C^-1
(the root's: C @ M @ C^-1) and it ends at its start (its parent's end; the root's position) +
L @ (direction * length). The AMC's root translation is the root's position (the ASF's position
where the order has no translation). Lengths are in inches / the :units length (CMU: 0.45), so
metres = value / length * 0.0254. ASF/AMC is y up.

Human3.6M-17 from CMU's bones (each point a bone's end):
- hips: lhipjoint / rhipjoint (the hip joint centres, where the femurs start);
- pelvis: the mean of the two hip joint centres (Human3.6M's pelvis lies midway between its hips);
- knees: lfemur / rfemur; ankles: ltibia / rtibia;
- thorax: the thorax bone (where the neck and both clavicles start, between the shoulders);
- spine: the midpoint of the pelvis and the thorax (mid torso, where Human3.6M's spine joint lies;
  the rule of the BVH maps too);
- neck_nose: lowerneck (about 0.1 m above the thorax); head: head (the top of the head);
- shoulders: lclavicle / rclavicle (where the humerus starts); elbows: lhumerus / rhumerus;
  wrists: lradius / rradius.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bvh import intrinsic_rotations
from .motion import H36M_NAMES, Motion, MotionError, from_y_up

INCH = 0.0254
# Human3.6M-17 joint -> the CMU bones whose ends are averaged (the spine is computed from pelvis and thorax)
BONE_ENDS = {
    "pelvis": ("lhipjoint", "rhipjoint"), "right_hip": ("rhipjoint",), "right_knee": ("rfemur",),
    "right_ankle": ("rtibia",), "left_hip": ("lhipjoint",), "left_knee": ("lfemur",), "left_ankle": ("ltibia",),
    "thorax": ("thorax",), "neck_nose": ("lowerneck",), "head": ("head",), "left_shoulder": ("lclavicle",),
    "left_elbow": ("lhumerus",), "left_wrist": ("lradius",), "right_shoulder": ("rclavicle",),
    "right_elbow": ("rhumerus",), "right_wrist": ("rradius",),
}
ROTATION_DOFS = ("rx", "ry", "rz")
ROOT_ORDER = ("TX", "TY", "TZ", "RX", "RY", "RZ")


@dataclass
class Bone:
    """One ASF bone: its direction (unit, world frame at rest) times length, its axis rotation C,
    and its degrees of freedom in the AMC's order."""

    name: str
    vector: np.ndarray
    axis: np.ndarray
    dofs: tuple[str, ...] = ()


@dataclass
class Skeleton:
    """An ASF file: metres per length unit, whether angles are radians, the root, the bones, and
    the chain: (parent, bone) for every bone of the hierarchy, parents first."""

    scale: float = INCH
    radians: bool = False
    root_order: tuple[str, ...] = ROOT_ORDER
    root_axis: np.ndarray = field(default_factory=lambda: np.eye(3))
    root_position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    bones: dict[str, Bone] = field(default_factory=dict)
    chain: list[tuple[str, str]] = field(default_factory=list)

    def value_count(self, name: str) -> int:
        """How many AMC values a frame gives the root or a bone."""
        return len(self.root_order) if name == "root" else len(self.bones[name].dofs)


def applied_rotations(axes: str, radians: np.ndarray) -> np.ndarray:
    """(N, k) angles about the axes, applied in the listed order -> (N, 3, 3); "XYZ" -> Rz @ Ry @ Rx."""
    return intrinsic_rotations(axes[::-1], radians[:, ::-1])


def _floats(path: Path, number: int, words: list[str], count: int | None = None, what: str = "") -> np.ndarray:
    """The numbers of a line (`count` of them if given); `what` begins the messages."""
    try:
        values = np.array([float(w) for w in words])
    except ValueError as e:
        raise MotionError(f"{path}: line {number}: {what}{e}") from None
    if count is not None and len(values) != count:
        raise MotionError(f"{path}: line {number}: {what}{len(values)} values, expected {count}")
    return values


def _axis(path: Path, number: int, words: list[str], radians: bool) -> np.ndarray:
    """C from 'x y z ORDER' (angles about x, y, z; ORDER the order they apply in)."""
    if len(words) != 4 or sorted(words[3].upper()) != ["X", "Y", "Z"]:
        raise MotionError(f"{path}: line {number}: axis {' '.join(words)!r}; expected three angles and an order "
                          "such as XYZ")
    angles = _floats(path, number, words[:3])
    angles = angles if radians else np.radians(angles)
    order = words[3].upper()
    return applied_rotations(order, angles[["XYZ".index(a) for a in order]][None])[0]


def _sections(lines: list[str]) -> dict[str, list[tuple[int, list[str]]]]:
    """The lines (number, words) under each ':keyword', comments dropped; words after the keyword count."""
    sections: dict[str, list[tuple[int, list[str]]]] = {}
    current: list = []
    for number, line in enumerate(lines, 1):
        words = line.split("#")[0].split()
        if words and words[0].startswith(":"):
            current = sections.setdefault(words[0][1:].lower(), [])
            words = words[1:]
        if words:
            current.append((number, words))
    return sections


def _bone(path: Path, begin: int, entries: dict[str, tuple[int, list[str]]], radians: bool) -> Bone:
    for key in ("name", "direction", "length"):
        if not entries.get(key, (0, []))[1]:
            raise MotionError(f"{path}: line {begin}: a bone without {key}; every ASF bone needs name, direction "
                              "and length")
    name = entries["name"][1][0]
    direction = _floats(path, *entries["direction"], 3)
    length = _floats(path, *entries["length"], 1)[0]
    norm = np.linalg.norm(direction)
    axis = _axis(path, *entries["axis"], radians) if "axis" in entries else np.eye(3)
    dofs = tuple(w.lower() for w in entries["dof"][1]) if "dof" in entries else ()
    unknown = [d for d in dofs if d not in ROTATION_DOFS]
    if unknown:
        raise MotionError(f"{path}: line {entries['dof'][0]}: bone {name} has dof {unknown}; only rotations "
                          f"({', '.join(ROTATION_DOFS)}) are read")
    return Bone(name, direction / norm * length if norm > 0 else np.zeros(3), axis, dofs)


def read_asf(path) -> Skeleton:
    """An ASF file -> Skeleton."""
    path = Path(path)
    try:
        sections = _sections(path.read_text(errors="replace").splitlines())
    except OSError as e:
        raise MotionError(f"{path}: cannot be read ({e})") from None
    if "bonedata" not in sections or "hierarchy" not in sections:
        raise MotionError(f"{path}: no :bonedata or :hierarchy section; this is not an ASF skeleton file")
    units, root = ({words[0].lower(): (number, words[1:]) for number, words in sections.get(name, [])}
                   for name in ("units", "root"))
    skeleton = Skeleton(radians=" ".join(units.get("angle", (0, []))[1]).lower().startswith("rad"))
    if "length" in units:
        length = _floats(path, *units["length"], 1)[0]
        if not length > 0:
            raise MotionError(f"{path}: line {units['length'][0]}: length unit {length}; it must be positive")
        skeleton.scale = INCH / length
    if "order" in root:
        skeleton.root_order = tuple(w.upper() for w in root["order"][1])
        if not set(skeleton.root_order) <= set(ROOT_ORDER):
            raise MotionError(f"{path}: line {root['order'][0]}: root order {root['order'][1]}; use {ROOT_ORDER}")
    if "position" in root:
        skeleton.root_position = _floats(path, *root["position"], 3)
    if "orientation" in root:
        number, angles = root["orientation"]
        skeleton.root_axis = _axis(path, number, angles + root.get("axis", (0, ["XYZ"]))[1], skeleton.radians)
    entries, begin = {}, 0
    for number, words in sections["bonedata"]:
        key = words[0].lower()
        if key == "begin":
            entries, begin = {}, number
        elif key == "end":
            bone = _bone(path, begin, entries, skeleton.radians)
            skeleton.bones[bone.name] = bone
        elif not key.startswith("("):                   # a limits line's continuation
            entries[key] = (number, words[1:])
    skeleton.chain = _chain(path, skeleton.bones, sections["hierarchy"])
    return skeleton


def _chain(path: Path, bones: dict[str, Bone], hierarchy: list[tuple[int, list[str]]]) -> list[tuple[str, str]]:
    """(parent, bone) pairs from the :hierarchy lines, parents first."""
    children, lines = {}, {}
    for number, words in hierarchy:
        if words[0].lower() not in ("begin", "end"):
            children.setdefault(words[0], []).extend(words[1:])
            lines.update((child, number) for child in words[1:])
    chain, pending = [], ["root"]
    while pending:
        parent = pending.pop()
        for name in children.get(parent, []):
            if name not in bones or any(name == bone for _, bone in chain):
                raise MotionError(f"{path}: line {lines[name]}: :hierarchy lists {name!r} "
                                  f"{'twice' if name in bones else 'without its :bonedata'}")
            chain.append((parent, name))
            pending.append(name)
    return chain


def read_amc(path: Path, skeleton: Skeleton) -> tuple[dict[str, np.ndarray], bool]:
    """An AMC file -> ({'root' and each bone: (frames, values) in the ASF's order}, whether angles are
    radians). The root or a bone that no frame gives holds zeros."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        raise MotionError(f"{path}: cannot be read ({e})") from None
    radians, frames, rows = skeleton.radians, 0, {}
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].startswith(":"):
            radians = {":DEGREES": False, ":RADIANS": True}.get(words[0].upper(), radians)
        elif len(words) == 1 and words[0].isdigit():
            frames += 1
        elif frames == 0:
            raise MotionError(f"{path}: line {number}: values before the first frame number; this is not an AMC file")
        elif words[0] == "root" or words[0] in skeleton.bones:
            values = _floats(path, number, words[1:], skeleton.value_count(words[0]), f"{words[0]}: ")
            rows.setdefault(words[0], []).append(values)
        else:
            raise MotionError(f"{path}: line {number}: bone {words[0]!r} is not in the ASF skeleton; give the .asf "
                              "of the AMC's own subject")
    if frames == 0:
        raise MotionError(f"{path}: no frames; an AMC file lists frame numbers, each followed by its bones' values")
    for name, values in rows.items():
        if len(values) != frames:
            raise MotionError(f"{path}: {name} has values in {len(values)} of the {frames} frames; the file is cut "
                              "or damaged")
    return {name: np.array(rows[name]) if name in rows else np.zeros((frames, skeleton.value_count(name)))
            for name in ["root", *skeleton.bones]}, radians


def forward_kinematics(skeleton: Skeleton, values: dict[str, np.ndarray], radians: bool) -> dict[str, np.ndarray]:
    """{bone: (frames, 3) end position; 'root': the root's position}, in ASF units and axes."""
    angles = (lambda a: a) if radians else np.radians
    root = values["root"]
    position = np.broadcast_to(skeleton.root_position, (len(root), 3)).copy()
    axes, columns = "", []
    for k, channel in enumerate(skeleton.root_order):
        if channel[0] == "T":
            position[:, "XYZ".index(channel[1])] = root[:, k]
        else:
            axes, columns = axes + channel[1], columns + [k]
    c = skeleton.root_axis
    ends = {"root": position}
    rotations = {"root": c @ applied_rotations(axes, angles(root[:, columns])) @ c.T}
    for parent, name in skeleton.chain:
        bone = skeleton.bones[name]
        motion = applied_rotations("".join(d[1].upper() for d in bone.dofs), angles(values[name]))
        rotations[name] = rotations[parent] @ bone.axis @ motion @ bone.axis.T
        ends[name] = ends[parent] + rotations[name] @ bone.vector
    return ends


def find_asf(amc: Path) -> Path:
    """The ASF skeleton of an AMC file: <subject>.asf beside <subject>_<trial>.amc, else the only .asf there."""
    subject = amc.with_name(amc.stem.split("_")[0] + ".asf")
    if subject.is_file():
        return subject
    found = sorted(p for p in amc.parent.iterdir() if p.suffix.lower() == ".asf") if amc.parent.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise MotionError(f"{amc}: no ASF skeleton beside it (looked for {subject.name} and any .asf in "
                          f"{amc.parent}); put the subject's .asf there")
    raise MotionError(f"{amc}: {len(found)} ASF skeletons beside it ({', '.join(p.name for p in found)}) and none "
                      f"named {subject.name}; name the one this motion was captured with {subject.name}")


def read_asf_amc(amc_path, asf_path=None, fps: float = 120.0) -> Motion:
    """A CMU AMC motion and its ASF skeleton (default: find_asf) -> Motion (Human3.6M-17 joints,
    metres, z up, at fps, CMU's 120 by default; not floor-placed, not resampled)."""
    amc = Path(amc_path)
    if not amc.is_file():
        raise MotionError(f"{amc}: no such file")
    asf = Path(asf_path) if asf_path is not None else find_asf(amc)
    skeleton = read_asf(asf)
    ends = forward_kinematics(skeleton, *read_amc(amc, skeleton))
    missing = [b for bones in BONE_ENDS.values() for b in bones if b not in ends]
    if missing:
        raise MotionError(f"{asf}: no bone {missing[0]!r} in the hierarchy; only CMU-named skeletons (lhipjoint, "
                          "lfemur, ltibia, thorax, lowerneck, head, lclavicle, lhumerus, lradius, ...) can be read")
    joints = {name: np.mean([ends[b] for b in bones], axis=0) for name, bones in BONE_ENDS.items()}
    joints["spine"] = (joints["pelvis"] + joints["thorax"]) / 2
    positions = np.stack([joints[name] for name in H36M_NAMES], axis=1)
    return Motion(amc.stem, from_y_up(positions, skeleton.scale), fps, str(amc))
