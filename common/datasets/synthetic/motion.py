"""The animator of the synthetic set: a 32-joint kinematic skeleton with Human3.6M bone
lengths moved with simple human-like motion (walking with leg and arm swing, turning,
pointing, waving, arms raised and crossed, sitting, crouching, stooping to the floor,
kneeling, sitting and lying on the floor, jumping) in the real capture volume, z up, metres.
Each sequence has its own random stream (seed, subject, action), so adding subjects or
actions does not change the others.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ...geometry.skeleton import H36M_FPS as FPS, h36m_metadata

# Arm poses, degrees: (flexion forward, abduction sideways, twist about the upper arm,
# elbow flexion, elbow oscillation amplitude). Written for the left arm; the right one
# is mirrored.
ARM_POSES = {
    "rest": (5, 8, 0, 15, 0),
    "point": (80, 15, 0, 5, 0),
    "raise": (150, 20, 0, 10, 0),
    "side": (0, 80, 0, 10, 0),
    "hips": (-15, 35, -60, 90, 0),
    "wave": (0, 100, 90, 80, 30),
    "phone": (90, 25, 0, 150, 0),
    "mouth": (85, 50, 10, 135, 0),
    "gesture": (35, 20, 0, 70, 20),
    "forward": (70, 10, 0, 60, 0),
    "leash": (35, 15, 0, 20, 0),
    "lap": (30, 10, 0, 50, 0),
    "crossed": (30, 10, -75, 120, 0),
    "overhead": (170, 15, 0, 5, 0),
}

# How deep each kind of bend goes at level 1, degrees: (thigh pitch forward from hanging
# straight down, knee flexion, torso lean forward from upright).
SIT = (88, 88, 5)
SIT_DOWN = (95, 100, 25)
CROUCH = (105, 125, 35)
STOOP = (15, 10, 85)          # legs almost straight, the torso down to horizontal
KNEEL = (0, 100, 10)          # thighs upright, shins on the floor
SIT_FLOOR = (90, 50, 0)       # on the floor, legs stretched out to knees drawn up (with recline: lying;
                              # the thighs rise with the knees, see animate)


@dataclass(frozen=True)
class Style:
    """How one action group moves."""

    arms: tuple[tuple[str, ...], tuple[str, ...]]  # poses the left / right arm pick from
    path: bool = False            # walk around an ellipse (else stand and wander)
    speed: tuple[float, float] = (0.0, 0.0)  # walking speed range, m/s
    wander: float = 0.4           # largest step between wander keyframes, m
    turn: float = 60.0            # largest heading change between keyframes, degrees
    bend: tuple[float, float] = (0.0, 0.08)  # bend level range (0 = upright)
    bend_profile: tuple[float, float, float] = SIT
    alternate: bool = False       # bend comes and goes (sit down / stand up)
    jump: tuple[float, float] = (0.0, 0.0)  # jumps per second (0: feet stay on the floor)
    profile_jitter: tuple[float, float, float] = (10, 15, 10)  # +- degrees on each bend_profile angle
    recline: float = 0.0          # on the floor: the body leans back up to this, degrees (90: lying
                                  # flat), the thighs staying on the floor (replaces bend)


STYLES = {
    "Directions": Style(arms=(("rest", "point"), ("rest", "point", "gesture")), turn=90),
    "Discussion": Style(arms=(("gesture", "rest"), ("gesture", "rest", "hips"))),
    "Eating": Style(arms=(("mouth", "lap", "forward"), ("lap", "forward")), wander=0.02, turn=15,
                    bend=(0.9, 1.0)),
    "Greeting": Style(arms=(("rest",), ("wave", "rest", "point"))),
    "Phoning": Style(arms=(("rest", "gesture"), ("phone",))),
    "Photo": Style(arms=(("forward",), ("forward",)), wander=0.3, turn=45, bend=(0.5, 0.9),
                   bend_profile=CROUCH, alternate=True),
    "Posing": Style(arms=(("raise", "side", "hips", "rest"),) * 2, wander=0.2, turn=45),
    "Purchases": Style(arms=(("forward", "rest"),) * 2, bend=(0.2, 0.7), bend_profile=STOOP,
                       alternate=True),
    "Sitting": Style(arms=(("lap", "rest", "gesture"),) * 2, wander=0.02, turn=15, bend=(0.9, 1.0)),
    "SittingDown": Style(arms=(("lap", "rest"),) * 2, wander=0.05, turn=20, bend=(0.85, 1.05),
                         bend_profile=SIT_DOWN, alternate=True),
    "Smoking": Style(arms=(("rest",), ("mouth", "rest")), wander=0.3, turn=45),
    "Waiting": Style(arms=(("rest", "hips"),) * 2, wander=0.3, turn=90),
    "WalkDog": Style(arms=(("rest",), ("leash",)), path=True, speed=(0.8, 1.2)),
    "Walking": Style(arms=(("rest",), ("rest",)), path=True, speed=(1.0, 1.5)),
    "WalkTogether": Style(arms=(("rest",), ("rest", "gesture")), path=True, speed=(0.7, 1.0)),
    # Beyond Human3.6M's groups: what people filmed in the wild also do.
    "Jumping": Style(arms=(("rest", "side", "forward"),) * 2, wander=0.15, turn=30, jump=(1.2, 2.2)),
    "Stretching": Style(arms=(("overhead", "raise", "crossed", "side", "hips"),) * 2, wander=0.1, turn=40,
                        bend=(0.0, 0.9), bend_profile=STOOP, alternate=True),
    "Reaching": Style(arms=(("forward", "point", "rest"),) * 2, wander=0.2, turn=45, bend=(0.6, 1.0),
                      bend_profile=STOOP, profile_jitter=(15, 30, 15), alternate=True),
    "Kneeling": Style(arms=(("forward", "lap", "rest", "point"),) * 2, wander=0.05, turn=30, bend=(0.85, 1.0),
                      bend_profile=KNEEL, profile_jitter=(10, 10, 10), alternate=True),
    "Floor": Style(arms=(("rest", "side", "lap", "raise", "hips"),) * 2, wander=0.05, turn=30,
                   bend_profile=SIT_FLOOR, profile_jitter=(15, 45, 20), recline=90),
}

# 32-joint indices (Human3.6M order) used below.
PELVIS, R_HIP, R_KNEE, R_ANKLE, R_TOE, R_TOE_TIP = 0, 1, 2, 3, 4, 5
L_HIP, L_KNEE, L_ANKLE, L_TOE, L_TOE_TIP = 6, 7, 8, 9, 10
SPINE_BASE, SPINE, THORAX, NECK_NOSE, HEAD = 11, 12, 13, 14, 15
L_CLAVICLE, L_SHOULDER, L_ELBOW, L_WRIST, L_THUMB, L_THUMB_TIP, L_HAND, L_HAND_TIP = range(16, 24)
R_CLAVICLE, R_SHOULDER, R_ELBOW, R_WRIST, R_THUMB, R_THUMB_TIP, R_HAND, R_HAND_TIP = range(24, 32)

# Centre of the floor area (world x, y, metres) that every camera of every subject sees;
# pelvis paths stay within 1.1 m of it, so whole bodies stay inside the images.
CAPTURE_CENTRE = np.array([0.25, 0.6])
ANKLE_HEIGHT = 0.08  # m above the floor, standing
# How far above the floor each joint that can touch it stays (its flesh), metres: ankles (the
# foot under them), knees, the pelvis (sitting), the back, the head and the hands.
FLOOR_CLEARANCE = {R_KNEE: 0.05, L_KNEE: 0.05, PELVIS: 0.12, SPINE: 0.1, THORAX: 0.1, HEAD: 0.1,
                   L_WRIST: 0.03, R_WRIST: 0.03}
FOOT = (0.13, 0.06, 0.05)  # ankle -> toe forward, ankle -> toe down, toe -> toe tip, m
HAND = 0.08  # wrist -> hand tip along the forearm, m


# ---------------------------------------------------------------------------- rotations
def _rot(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) by angles (N,) about axis 0 (x), 1 (y) or 2 (z); in a
    body frame x points forward, y left, z up."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.zeros(angle.shape + (3, 3))
    r[..., axis, axis] = 1
    r[..., i, i], r[..., i, j], r[..., j, i], r[..., j, j] = c, -s, s, c
    return r


def _apply(r: np.ndarray, v) -> np.ndarray:
    """Rotate one vector v (3,) by every matrix of r (N, 3, 3) -> (N, 3)."""
    return r @ np.asarray(v, dtype=np.float64)


def _unit(*v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------- signals
def _keyframes(rng: np.random.Generator, n: int, values, spacing=(0.8, 2.0)) -> np.ndarray:
    """Smoothstep interpolation through random key times; values(k) gives k key values
    (k, D). Returns (n, D)."""
    times = [0.0]
    while times[-1] < n:
        times.append(times[-1] + rng.uniform(*spacing) * FPS)
    times = np.asarray(times)
    keys = np.asarray(values(len(times)), dtype=np.float64).reshape(len(times), -1)
    t = np.arange(n, dtype=np.float64)
    seg = np.searchsorted(times, t, side="right") - 1
    u = (t - times[seg]) / (times[seg + 1] - times[seg])
    u = u * u * (3 - 2 * u)
    return keys[seg] + (keys[seg + 1] - keys[seg]) * u[:, None]


def _ellipse_path(rng: np.random.Generator, n: int, speed: tuple[float, float]):
    """A walk around a random ellipse in the capture volume -> xy (n, 2), heading (n,)."""
    a, b = rng.uniform(0.7, 1.0), rng.uniform(0.5, 0.9)
    rot, centre = rng.uniform(0, np.pi), CAPTURE_CENTRE + rng.uniform(-0.1, 0.1, size=2)
    theta = np.linspace(0, 2 * np.pi, 721)
    pts = np.stack([a * np.cos(theta), b * np.sin(theta)], -1)
    pts = pts @ np.array([[np.cos(rot), np.sin(rot)], [-np.sin(rot), np.cos(rot)]]) + centre
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    v = rng.uniform(*speed) * (1 + 0.1 * _keyframes(rng, n, lambda k: rng.uniform(-1, 1, k))[:, 0])
    s = rng.uniform(0, arc[-1]) + rng.choice([-1, 1]) * np.cumsum(v) / FPS
    s = np.mod(s, arc[-1])
    xy = np.stack([np.interp(s, arc, pts[:, 0]), np.interp(s, arc, pts[:, 1])], -1)
    vel = np.gradient(xy, axis=0)
    return xy, np.arctan2(vel[:, 1], vel[:, 0])


def _wander(rng: np.random.Generator, n: int, style: Style):
    """Standing in place with a few steps and turns -> xy (n, 2), heading (n,)."""
    def positions(k):
        start = rng.uniform(-0.6, 0.6, size=2)
        steps = rng.uniform(-style.wander, style.wander, size=(k, 2)) * (np.arange(k)[:, None] > 0)
        return start + np.cumsum(steps, axis=0)

    xy = _keyframes(rng, n, positions)  # (n, 2) around the capture centre
    xy *= np.minimum(1, 0.9 / np.maximum(np.linalg.norm(xy, axis=1, keepdims=True), 1e-9))
    xy += CAPTURE_CENTRE
    turn = np.radians(style.turn)
    heading = _keyframes(rng, n, lambda k: rng.uniform(-np.pi, np.pi) + np.cumsum(
        rng.uniform(-turn, turn, k) * (np.arange(k) > 0)))[:, 0]
    return xy, heading


def _bend(rng: np.random.Generator, n: int, style: Style) -> np.ndarray:
    """Bend level per frame (n,): 0 upright, 1 the full sit / crouch / stoop."""
    if style.alternate:
        phase = rng.integers(4)
        return _keyframes(rng, n, lambda k: rng.uniform(*style.bend, k) * ((np.arange(k) + phase) // 2 % 2))[:, 0]
    return _keyframes(rng, n, lambda k: rng.uniform(*style.bend, k))[:, 0]


def _arm(rng: np.random.Generator, n: int, poses: tuple[str, ...]) -> np.ndarray:
    """Arm angles (n, 5) in radians moving between random poses of the list, jittered."""
    def keys(k):
        names = rng.choice(poses, size=k)
        return np.array([ARM_POSES[p] for p in names]) + rng.normal(0, 8, size=(k, 5)) * [1, 1, 1, 1, 0]

    angles = np.radians(_keyframes(rng, n, keys))
    angles[:, 1] = np.maximum(angles[:, 1], 0.05)  # keep the arm off the body
    return angles


# ---------------------------------------------------------------------------- skeleton
def subject_bones(seed: int, subject: str) -> dict[str, float]:
    """17-joint bone lengths in metres for one subject (keys as in the metadata, plus
    'scale'): Human3.6M averages, one overall scale (+-8 %) and a small per-bone jitter,
    the same on both sides."""
    rng = np.random.default_rng([seed, zlib.crc32(subject.encode())])
    scale = rng.uniform(0.92, 1.08)
    jitter, bones = {}, {"scale": scale}
    for name, mm in h36m_metadata()["approximate_bone_lengths_mm_17"].items():
        if name == "note":
            continue
        part = name.removeprefix("left_").removeprefix("right_")
        jitter.setdefault(part, rng.uniform(0.97, 1.03))
        bones[name] = mm / 1000 * scale * jitter[part]
    return bones


def animate(style: Style, bones: dict[str, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """One sequence of motion: world joint positions (n, 32, 3), metres, z up."""
    scale = bones["scale"]
    xy, heading = _ellipse_path(rng, n, style.speed) if style.path else _wander(rng, n, style)
    speed = np.linalg.norm(np.gradient(xy, axis=0), axis=1) * FPS  # (n,) m/s
    bend = _bend(rng, n, style)
    recline = np.zeros(n)
    if style.recline:              # sit up (0) ... lie flat (style.recline), thighs on the floor
        recline = np.radians(_keyframes(rng, n, lambda k: rng.uniform(0, style.recline, k), spacing=(1.5, 3.0))[:, 0])
        bend = 1 - recline / (np.pi / 2)
    flight = np.zeros(n)
    if style.jump[1] > 0:                  # hop in place: crouch, take off, fly, land
        jump_phase = 2 * np.pi * rng.uniform(*style.jump) * np.arange(n) / FPS + rng.uniform(0, 2 * np.pi)
        height = rng.uniform(0.1, 0.3)
        flight = height * np.maximum(0, np.sin(jump_phase)) ** 1.5
        bend = np.maximum(bend, rng.uniform(0.25, 0.45) * np.maximum(0, -np.sin(jump_phase)))
    gait = np.clip(speed / 1.1, 0, 1) * np.clip(1 - bend, 0, 1)  # (n,) how much the legs stride
    stride = 2 * rng.uniform(0.6, 0.75) * scale  # m per gait cycle
    phase = 2 * np.pi * np.cumsum(speed) / FPS / stride + rng.uniform(0, 2 * np.pi)  # right leg
    hip_amp, knee_amp, arm_swing = np.radians([rng.uniform(20, 30), rng.uniform(45, 65), rng.uniform(10, 25)])
    profile = style.bend_profile if style.jump[1] == 0 else CROUCH
    # Every bend is a little different: the profile wanders (more where people differ most).
    hip_bend, knee_bend, lean_bend = np.radians(np.maximum(0, profile + _keyframes(
        rng, n, lambda k: rng.uniform(-1, 1, (k, 3)) * style.profile_jitter))).T
    if style.recline:              # on the floor, knees drawn up: the thighs rise by half the knee bend,
        hip_bend = np.radians(90) + knee_bend / 2          # which keeps the feet on the floor

    def torso_keys(k):
        return rng.normal(0, 1, (k, 6)) * np.radians([5, 4, 10, 12, 10, 3]) + np.radians([4, 0, 0, 0, 5, 0])

    lean, side, twist, head_yaw, head_pitch, pelvis_roll = _keyframes(rng, n, torso_keys).T
    lean = lean + bend * lean_bend + 0.1 * gait
    twist = twist - 0.15 * gait * np.sin(phase)

    r_pelvis = _rot(2, heading) @ _rot(0, pelvis_roll)
    r_torso = _rot(2, heading) @ _rot(2, twist) @ _rot(1, lean) @ _rot(0, side)
    r_head = r_torso @ _rot(2, head_yaw) @ _rot(1, head_pitch)
    r_foot = _rot(2, heading)

    p = np.zeros((n, 32, 3))
    p[:, SPINE] = _apply(r_torso, [0, 0, bones["spine"]])
    p[:, THORAX] = p[:, SPINE] + _apply(r_torso, [0, 0, bones["thorax"]])
    p[:, NECK_NOSE] = p[:, THORAX] + _apply(r_head, _unit(0.35, 0, 1) * bones["neck_nose"])
    p[:, HEAD] = p[:, NECK_NOSE] + _apply(r_head, _unit(-0.15, 0, 1) * bones["head"])
    p[:, [SPINE_BASE]] = p[:, [PELVIS]]
    p[:, [L_CLAVICLE, R_CLAVICLE]] = p[:, [THORAX]]

    abduction = np.radians(rng.uniform(2, 5))
    for sign, leg_phase, (hip, knee, ankle, toe, tip), name in (
            (-1, phase, (R_HIP, R_KNEE, R_ANKLE, R_TOE, R_TOE_TIP), "right"),
            (1, phase + np.pi, (L_HIP, L_KNEE, L_ANKLE, L_TOE, L_TOE_TIP), "left")):
        hip_flex = bend * hip_bend + hip_amp * gait * np.sin(leg_phase)
        knee_flex = np.radians(5) + bend * knee_bend + knee_amp * gait * np.maximum(0, np.sin(leg_phase + np.pi / 4))
        r_thigh = r_pelvis @ _rot(0, np.full(n, sign * abduction)) @ _rot(1, -hip_flex)
        r_shin = r_thigh @ _rot(1, knee_flex)
        p[:, hip] = _apply(r_pelvis, _unit(0, sign, -0.1) * bones[f"{name}_hip"])
        p[:, knee] = p[:, hip] + _apply(r_thigh, [0, 0, -bones[f"{name}_knee"]])
        p[:, ankle] = p[:, knee] + _apply(r_shin, [0, 0, -bones[f"{name}_ankle"]])
        p[:, toe] = p[:, ankle] + _apply(r_foot, [FOOT[0] * scale, 0, -FOOT[1] * scale])
        p[:, tip] = p[:, toe] + _apply(r_foot, [FOOT[2] * scale, 0, 0])

    wave_freq = rng.uniform(1.5, 3.0)
    for sign, swing_phase, poses, (shoulder, elbow, wrist, thumb, thumb_tip, hand, hand_tip), name in (
            (1, phase, style.arms[0], range(L_SHOULDER, L_HAND_TIP + 1), "left"),
            (-1, phase + np.pi, style.arms[1], range(R_SHOULDER, R_HAND_TIP + 1), "right")):
        flex, abd, arm_twist, elbow_flex, osc = _arm(rng, n, poses).T
        flex = np.minimum(flex + arm_swing * gait * np.sin(swing_phase) + np.radians(60) * flight / 0.3,
                          np.radians(170))
        elbow_flex = elbow_flex + osc * np.sin(2 * np.pi * wave_freq * np.arange(n) / FPS)
        r_upper = r_torso @ _rot(0, sign * abd) @ _rot(1, -flex) @ _rot(2, sign * arm_twist)
        r_fore = r_upper @ _rot(1, -elbow_flex)
        p[:, shoulder] = p[:, THORAX] + _apply(r_torso, _unit(0, sign, -0.15) * bones[f"{name}_shoulder"])
        p[:, elbow] = p[:, shoulder] + _apply(r_upper, [0, 0, -bones[f"{name}_elbow"]])
        p[:, wrist] = p[:, elbow] + _apply(r_fore, [0, 0, -bones[f"{name}_wrist"]])
        p[:, [thumb, thumb_tip]] = p[:, [wrist]]
        p[:, [hand, hand_tip]] = p[:, [wrist]] + _apply(r_fore, [0, 0, -HAND * scale])[:, None]

    if style.recline:              # lean the whole body back about the pelvis
        r_back = _rot(2, heading) @ _rot(1, -recline) @ _rot(2, -heading)
        p = np.einsum("nij,nkj->nki", r_back, p)
    # Rest on the lowest of the feet, knees, seat, back, head and hands; walk the pelvis along
    # the floor path.
    clearance = {R_ANKLE: ANKLE_HEIGHT * scale, L_ANKLE: ANKLE_HEIGHT * scale, **FLOOR_CLEARANCE}
    lowest = np.min([p[:, joint, 2] - above for joint, above in clearance.items()], axis=0)
    p[..., 2] += -lowest[:, None] + flight[:, None]
    p[..., :2] += xy[:, None]
    return p.astype(np.float32)


# ---------------------------------------------------------------------------- sequences
def check_actions(actions) -> None:
    for action in actions:
        if action.split(" ")[0] not in STYLES:
            raise ValueError(f"unknown action group in {action!r}; choose from {sorted(STYLES)}")


def sequence_motion(seed: int, subject: str, action: str, bones: dict, frames: int):
    """The world motion (N, 32, 3) of one sequence and its random stream, positioned after
    the motion draws (the 'det' noise continues from there)."""
    rng = np.random.default_rng([seed, zlib.crc32(f"{subject}/{action}".encode())])
    return animate(STYLES[action.split(" ")[0]], bones, frames, rng), rng
