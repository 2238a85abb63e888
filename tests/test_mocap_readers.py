"""The BVH and CMU ASF/AMC readers on small files written here: exact joint positions in
Human3.6M's z-up world, the unit guess, the built-in and user joint maps, the channel order, and
errors that name the file."""
import json

import numpy as np
import pytest

from common.datasets.mocap.asf_amc import read_asf_amc
from common.datasets.mocap.bvh import read_bvh
from common.datasets.mocap.motion import H36M_NAMES, MotionError

J = {name: i for i, name in enumerate(H36M_NAMES)}


def z_up(point) -> np.ndarray:
    """A y-up point (x, y, z) -> Human3.6M's z-up frame: (x, -z, y)."""
    x, y, z = point
    return np.array([x, -z, y], float)


def expected(points: dict) -> np.ndarray:
    """(17, 3) z-up joints from {Human3.6M name: y-up point}."""
    return np.stack([z_up(points[name]) for name in H36M_NAMES])


# --- BVH -------------------------------------------------------------------------------------------

def chain(names, offsets, tail):
    """Joints (name, offset, children), each the parent of the next; tail: the last one's children."""
    for name, offset in reversed(list(zip(names, offsets))):
        tail = [(name, offset, tail)]
    return tail[0]


def end(offset):
    return [("End", offset, [])]


LEG = [(0.1, -0.05, 0.0), (0.0, -0.45, 0.0), (0.0, -0.4, 0.0)]        # hip, knee, ankle (left: +x)
ARM = [(0.15, 0.0, 0.0), (0.25, 0.0, 0.0), (0.25, 0.0, 0.0)]          # shoulder, elbow, wrist


def mirrored(offsets):
    return [(-x, y, z) for x, y, z in offsets]


def limbs(leg_names, arm_names, side):
    """A leg and an arm chain for side 'Left'/'Right' ('L'/'R'): names formatted with the side."""
    flip = (lambda o: o) if side[0] == "L" else mirrored
    leg = chain([n.format(side) for n in leg_names], flip(LEG), end(flip([(0.0, -0.05, 0.1)])[0]))
    arm = chain([n.format(side) for n in arm_names], flip(ARM), end(flip([(0.1, 0.0, 0.0)])[0]))
    return leg, arm


def cmu_tree():
    """A CMU-named skeleton in metres (rest pose upright, arms out, y up, facing +z)."""
    legs, arms = zip(*(limbs(["{}UpLeg", "{}Leg", "{}Foot"], ["{}Arm", "{}ForeArm", "{}Hand"], s)
                       for s in ("Left", "Right")))
    neck = chain(["Neck", "Neck1", "Head"], [(0, 0.2, 0), (0, 0.1, 0), (0, 0.1, 0)], end((0, 0.1, 0)))
    clavicles = [(f"{s}Shoulder", (0, 0.2, 0), [arm]) for s, arm in zip(("Left", "Right"), arms)]
    spine = chain(["LowerBack", "Spine", "Spine1"], [(0, 0, 0), (0, 0.1, 0), (0, 0.15, 0)], [neck, *clavicles])
    return ("Hips", (0, 0, 0), [*legs, spine])


def mixamo_tree(p):
    legs, arms = zip(*(limbs([p + "{}UpLeg", p + "{}Leg", p + "{}Foot"],
                             [p + "{}Arm", p + "{}ForeArm", p + "{}Hand"], s) for s in ("Left", "Right")))
    neck = chain([p + "Neck", p + "Head", p + "HeadTop_End"], [(0, 0.1, 0), (0, 0.1, 0), (0, 0.18, 0)],
                 end((0, 0.02, 0)))
    clavicles = [(f"{p}{s}Shoulder", (x, 0.08, 0), [(arm[0], (2 * x, 0.02, 0), arm[2])])
                 for s, x, arm in zip(("Left", "Right"), (0.05, -0.05), arms)]
    spine = chain([p + "Spine", p + "Spine1", p + "Spine2"], [(0, 0.1, 0), (0, 0.15, 0), (0, 0.1, 0)],
                  [neck, *clavicles])
    return (p + "Hips", (0, 0, 0), [*legs, spine])


def rigify_tree(p):
    legs, arms = zip(*(limbs([p + "thigh.{}", p + "shin.{}", p + "foot.{}"],
                             [p + "upper_arm.{}", p + "forearm.{}", p + "hand.{}"], s) for s in ("L", "R")))
    neck = chain([p + "spine.004", p + "spine.005", p + "spine.006"], [(0, 0.1, 0), (0, 0.05, 0), (0, 0.05, 0)],
                 end((0, 0.2, 0)))
    clavicles = [(f"{p}shoulder.{s}", (x, 0.08, 0), [(arm[0], (2 * x, 0.02, 0), arm[2])])
                 for s, x, arm in zip(("L", "R"), (0.05, -0.05), arms)]
    spine = chain([p + "spine.001", p + "spine.002", p + "spine.003"], [(0, 0.1, 0), (0, 0.15, 0), (0, 0.1, 0)],
                  [neck, *clavicles])
    return (p + "spine", (0, 0, 0), [*legs, spine])


def write_bvh(path, tree, frames, order="ZXY", unit=1.0):
    """frames: one dict per frame {joint: {axis: degrees}, 'root': (x, y, z) metres}; every joint has the
    rotation channels in `order`, the root also X/Y/Z position first. Lengths are written in metres * unit."""
    lines, names = ["HIERARCHY"], []

    def joint(node, depth, keyword):
        name, offset, children = node
        pad = "  " * depth
        if name == "End":
            lines.extend([pad + "End Site", pad + "{", f"{pad}  OFFSET {' '.join(str(v * unit) for v in offset)}",
                          pad + "}"])
            return
        names.append(name)
        channels = ["Xposition", "Yposition", "Zposition"] * (keyword == "ROOT") + [a + "rotation" for a in order]
        lines.extend([f"{pad}{keyword} {name}", pad + "{", f"{pad}  OFFSET {' '.join(str(v * unit) for v in offset)}",
                      f"{pad}  CHANNELS {len(channels)} {' '.join(channels)}"])
        for child in children:
            joint(child, depth + 1, "JOINT")
        lines.append(pad + "}")

    joint(tree, 0, "ROOT")
    lines.extend(["MOTION", f"Frames: {len(frames)}", "Frame Time: 0.01"])
    for frame in frames:
        values = [v * unit for v in frame.get("root", (0.0, 1.0, 0.0))]
        for name in names:
            values += [frame.get(name, {}).get(a, 0.0) for a in order]
        lines.append(" ".join(f"{v:.10g}" for v in values))
    path.write_text("\n".join(lines) + "\n")
    return path


def humanoid_rest(thorax, spine, neck_nose, head, root=(0.0, 1.0, 0.0)):
    """The y-up rest joints of the test skeletons (legs and arms alike) with the given torso points."""
    x, y, z = root
    points = {"pelvis": (x, y - 0.05, z), "spine": spine, "thorax": thorax, "neck_nose": neck_nose, "head": head}
    for side, s in (("left", 1), ("right", -1)):
        points.update({f"{side}_hip": (x + 0.1 * s, y - 0.05, z), f"{side}_knee": (x + 0.1 * s, y - 0.5, z),
                       f"{side}_ankle": (x + 0.1 * s, y - 0.9, z), f"{side}_shoulder": (x + 0.15 * s, y + 0.45, z),
                       f"{side}_elbow": (x + 0.4 * s, y + 0.45, z), f"{side}_wrist": (x + 0.65 * s, y + 0.45, z)})
    return expected(points)


CMU_REST = humanoid_rest(thorax=(0, 1.45, 0), spine=(0, 1.2, 0), neck_nose=(0, 1.55, 0), head=(0, 1.75, 0))


def test_cmu_bvh_rest_pose_and_a_knee_bend(tmp_path):
    frames = [{}, {"root": (0.5, 1.0, -0.2), "LeftLeg": {"X": 90}},
              {"LeftUpLeg": {"Y": 90}, "LeftLeg": {"X": 90}, "Head": {"X": 90}}]
    path = write_bvh(tmp_path / "walk.bvh", cmu_tree(), frames)
    motion = read_bvh(path)
    assert motion.name == "walk" and motion.source == str(path) and motion.fps == pytest.approx(100.0)
    np.testing.assert_allclose(motion.joints[0], CMU_REST, atol=1e-9)
    # the root moved to (0.5, 1, -0.2); the left shank turned 90 degrees about x: from straight down to -z
    knee, ankle = motion.joints[1, J["left_knee"]], motion.joints[1, J["left_ankle"]]
    np.testing.assert_allclose(knee, z_up((0.6, 0.5, -0.2)), atol=1e-9)
    np.testing.assert_allclose(ankle, z_up((0.6, 0.5, -0.6)), atol=1e-9)
    np.testing.assert_allclose(motion.joints[1, J["right_ankle"]], z_up((0.4, 0.1, -0.2)), atol=1e-9)
    # the thigh turned 90 degrees about y first: the same knee bend sends the shank to -x (hip @ knee rotation)
    np.testing.assert_allclose(motion.joints[2, J["left_knee"]], z_up((0.1, 0.5, 0.0)), atol=1e-9)
    np.testing.assert_allclose(motion.joints[2, J["left_ankle"]], z_up((-0.3, 0.5, 0.0)), atol=1e-9)
    # the head nodded 90 degrees: its End Site (the head joint) turns with it, from above Head to in front of it
    np.testing.assert_allclose(motion.joints[2, J["head"]], z_up((0.0, 1.65, 0.1)), atol=1e-9)


@pytest.mark.parametrize("unit", [100.0, 1000.0, 1 / 0.0254, 0.45 / 0.0254])
def test_the_unit_is_guessed_from_the_skeleton(tmp_path, unit):
    frames = [{}, {"LeftUpLeg": {"X": -30}, "root": (0.2, 0.9, 0.1)}]
    metres = read_bvh(write_bvh(tmp_path / "m.bvh", cmu_tree(), frames)).joints
    other = write_bvh(tmp_path / "other.bvh", cmu_tree(), frames, unit=unit)
    np.testing.assert_allclose(read_bvh(other).joints, metres, atol=1e-6)
    np.testing.assert_allclose(read_bvh(other, scale=1 / unit).joints, metres, atol=1e-6)
    np.testing.assert_allclose(read_bvh(other, scale=2 / unit).joints, 2 * metres, atol=1e-6)


@pytest.mark.parametrize("order, knee_offset", [("ZXY", (0, 0, -0.45)), ("XYZ", (0.45, 0, 0))])
def test_the_channel_order_is_the_rotation_order(tmp_path, order, knee_offset):
    # X 90 and Z 90 on the left hip: ZXY is Rz @ Rx (the thigh turns to -z), XYZ is Rx @ Rz (to +x)
    path = write_bvh(tmp_path / "hip.bvh", cmu_tree(), [{}, {"LeftUpLeg": {"X": 90, "Z": 90}}], order=order)
    joints = read_bvh(path).joints[1]
    hip = np.array([0.1, 0.95, 0.0])
    np.testing.assert_allclose(joints[J["left_knee"]], z_up(hip + knee_offset), atol=1e-9)
    np.testing.assert_allclose(joints[J["left_ankle"]], z_up(hip + np.array(knee_offset) * 0.85 / 0.45), atol=1e-9)
    np.testing.assert_allclose(joints[J["right_knee"]], CMU_REST[J["right_knee"]], atol=1e-9)


@pytest.mark.parametrize("prefix", ["mixamorig:", "mixamorig1:"])
def test_a_mixamo_file_is_mapped_by_its_names(tmp_path, prefix):
    path = write_bvh(tmp_path / "mixamo.bvh", mixamo_tree(prefix), [{}, {}], unit=100.0)
    rest = humanoid_rest(thorax=(0, 1.45, 0), spine=(0, 1.2, 0), neck_nose=(0, 1.55, 0), head=(0, 1.73, 0))
    np.testing.assert_allclose(read_bvh(path).joints[0], rest, atol=1e-9)
    np.testing.assert_allclose(read_bvh(path, joint_map="mixamo").joints[0], rest, atol=1e-9)


@pytest.mark.parametrize("prefix", ["DEF-", "ORG-", ""])
def test_a_rigify_file_is_mapped_by_its_names(tmp_path, prefix):
    path = write_bvh(tmp_path / "rigify.bvh", rigify_tree(prefix), [{}, {}])
    rest = humanoid_rest(thorax=(0, 1.45, 0), spine=(0, 1.2, 0), neck_nose=(0, 1.55, 0), head=(0, 1.75, 0))
    np.testing.assert_allclose(read_bvh(path).joints[0], rest, atol=1e-9)


def cmu_user_map():
    """Every kind of point: a joint, a mean, a point between (nested), an End Site, the first there."""
    mapping = {f"{side}_{part}": side.capitalize() + name for side in ("left", "right")
               for part, name in (("hip", "UpLeg"), ("knee", "Leg"), ("ankle", "Foot"), ("shoulder", "Arm"),
                                  ("elbow", "ForeArm"), ("wrist", "Hand"))}
    return mapping | {"pelvis": "Hips", "spine": {"between": [["LeftUpLeg", "RightUpLeg"], "Spine1"], "t": 0.25},
                      "thorax": {"first": ["Chest", "Neck"]}, "neck_nose": ["Neck1", "Head"],
                      "head": {"joint": "Head", "end": True}}


def test_a_user_joint_map_from_json_or_a_dict(tmp_path):
    path = write_bvh(tmp_path / "walk.bvh", cmu_tree(), [{}, {}])
    map_file = tmp_path / "map.json"
    map_file.write_text(json.dumps(cmu_user_map()))
    want = CMU_REST.copy()
    want[J["pelvis"]] = z_up((0, 1.0, 0))
    want[J["spine"]] = z_up((0, 0.95 + 0.25 * 0.3, 0))
    want[J["neck_nose"]] = z_up((0, 1.6, 0))
    for joint_map in (str(map_file), map_file, cmu_user_map()):
        np.testing.assert_allclose(read_bvh(path, joint_map=joint_map).joints[0], want, atol=1e-9)


def test_joint_map_errors_name_the_file_the_joint_and_the_fix(tmp_path):
    path = write_bvh(tmp_path / "walk.bvh", cmu_tree(), [{}, {}])
    lacking = cmu_user_map()
    del lacking["head"]
    with pytest.raises(MotionError, match=r"walk\.bvh: .*no point for Human3\.6M's 'head'.*--joint-map"):
        read_bvh(path, joint_map=lacking)
    with pytest.raises(MotionError, match=r"walk\.bvh: .*maps 'head' to 'Skull', which the file lacks.*--joint-map"):
        read_bvh(path, joint_map=cmu_user_map() | {"head": "Skull"})
    with pytest.raises(MotionError, match=r"walk\.bvh: unknown joint map 'kinect'; use one of cmu, mixamo, rigify"):
        read_bvh(path, joint_map="kinect")
    with pytest.raises(MotionError, match=r"walk\.bvh: joint map .*missing\.json cannot be read"):
        read_bvh(path, joint_map=str(tmp_path / "missing.json"))
    with pytest.raises(MotionError, match=r"walk\.bvh: joint map 'rigify' maps 'pelvis' to 'DEF-thigh\.L', which"):
        read_bvh(path, joint_map="rigify")
    odd = write_bvh(tmp_path / "odd.bvh", ("Root", (0, 0, 0), [("Bone", (0, 1, 0), end((0, 1, 0)))]), [{}, {}])
    with pytest.raises(MotionError, match=r"odd\.bvh: its joints \(Root, Bone\) fit no built-in joint map"):
        read_bvh(odd)


def test_malformed_bvh_files_name_the_file_and_the_line(tmp_path):
    good = write_bvh(tmp_path / "good.bvh", cmu_tree(), [{}, {}]).read_text().splitlines()
    cases = {
        "cut.bvh": (good[:-1] + [" ".join(good[-1].split()[:-3])], rf"line {len(good)}: 63 values, expected 66"),
        "word.bvh": (good[:-1] + [good[-1].replace("0", "x", 1)], rf"line {len(good)}: could not convert .*'x"),
        "short.bvh": (good[:-1], rf"line {len(good) - 1}: 1 frame lines, but 'Frames: 2'"),
        "empty.bvh": (good[:-4] + ["Frames: 0", "Frame Time: 0.01"], rf"line {len(good) - 2}: no frames"),
        "plain.bvh": (["hello"] + good[1:], r"line 1: no HIERARCHY"),
        "offset.bvh": ([line.replace("OFFSET 0.1 ", "OFFSET one ", 1) for line in good],
                       r"line \d+: OFFSET of LeftUpLeg: expected a number, found 'one'"),
        "nomotion.bvh": (good[:10], r"line 10: no MOTION section"),
    }
    for name, (lines, message) in cases.items():
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        with pytest.raises(MotionError, match=rf"{name.replace('.', '[.]')}: {message}"):
            read_bvh(tmp_path / name)


# --- ASF/AMC -------------------------------------------------------------------------------------

BONES = [  # name, direction (y up, +x the subject's left), length, axis angles, dof
    ("lhipjoint", "1 0 0", 2, "0 0 0", ""), ("lfemur", "0 -1 0", 8, "0 0 0", "rx ry rz"),
    ("ltibia", "0 -1 0", 8, "0 90 0", "rx"),
    ("rhipjoint", "-1 0 0", 2, "0 0 0", ""), ("rfemur", "0 -1 0", 8, "0 0 0", "rx ry rz"),
    ("rtibia", "0 -1 0", 8, "0 0 0", "rx"),
    ("lowerback", "0 1 0", 2, "0 0 0", ""), ("upperback", "0 1 0", 2, "0 0 0", ""),
    ("thorax", "0 1 0", 2, "0 0 0", ""), ("lowerneck", "0 1 0", 2, "0 0 0", ""),
    ("upperneck", "0 1 0", 2, "0 0 0", ""), ("head", "0 1 0", 2, "0 0 0", ""),
    ("lclavicle", "1 0 0", 3, "0 0 0", ""), ("lhumerus", "1 0 0", 5, "0 0 0", ""),
    ("lradius", "1 0 0", 4, "0 0 0", ""), ("rclavicle", "-1 0 0", 3, "0 0 0", ""),
    ("rhumerus", "-1 0 0", 5, "0 0 0", ""), ("rradius", "-1 0 0", 4, "0 0 0", ""),
]
HIERARCHY = ["root lhipjoint rhipjoint lowerback", "lhipjoint lfemur", "lfemur ltibia", "rhipjoint rfemur",
             "rfemur rtibia", "lowerback upperback", "upperback thorax", "thorax lowerneck lclavicle rclavicle",
             "lowerneck upperneck", "upperneck head", "lclavicle lhumerus", "lhumerus lradius", "rclavicle rhumerus",
             "rhumerus rradius"]


def write_asf(path, length=0.45, angle="deg"):
    turn = np.pi / 180 if angle == "rad" else 1.0
    lines = [":version 1.10", ":name VICON", ":units", "  mass 1.0", f"  length {length}", f"  angle {angle}",
             ":documentation", "  a tiny test skeleton", ":root", "   order TX TY TZ RX RY RZ", "   axis XYZ",
             "   position 0 0 0", "   orientation 0 0 0", ":bonedata"]
    for i, (name, direction, size, axis, dof) in enumerate(BONES, 1):
        angles = " ".join(str(float(a) * turn) for a in axis.split())
        lines += ["  begin", f"     id {i}", f"     name {name}", f"     direction {direction}", f"     length {size}",
                  f"     axis {angles} XYZ"]
        if dof:
            limits = ["    limits (-160.0 20.0)"] + ["           (-70.0 70.0)"] * (len(dof.split()) - 1)
            lines += [f"    dof {dof}", *limits]
        lines.append("  end")
    path.write_text("\n".join(lines + [":hierarchy", "  begin"] + [f"    {h}" for h in HIERARCHY] + ["  end"]) + "\n")
    return path


def write_amc(path, frames, header=":DEGREES", turn=1.0):
    """frames: one dict per frame {bone: values}; the root defaults to (0, 20, 0) with no rotation."""
    lines = ["#!OML:ASF test.asf", ":FULLY-SPECIFIED", header]
    for number, frame in enumerate(frames, 1):
        root = list(frame.get("root", (0, 20, 0, 0, 0, 0)))
        lines += [str(number), "root " + " ".join(map(str, root[:3] + [a * turn for a in root[3:]]))]
        for bone in ("lfemur", "ltibia", "rfemur", "rtibia"):
            default = (0, 0, 0) if bone.endswith("femur") else (0,)
            lines.append(f"{bone} " + " ".join(str(a * turn) for a in frame.get(bone, default)))
    path.write_text("\n".join(lines) + "\n")
    return path


ASF_FRAMES = [{}, {"lfemur": (-90, 0, 0), "ltibia": (90,)}, {"root": (1, 20, 0, 0, 90, 0)}, {"lfemur": (90, 0, 90)}]


@pytest.mark.parametrize("length", [0.45, 1.0])
def test_asf_amc_rest_pose_a_bent_knee_and_a_turned_root(tmp_path, length):
    write_asf(tmp_path / "07.asf", length=length)
    motion = read_asf_amc(write_amc(tmp_path / "07_01.amc", ASF_FRAMES))
    u = 0.0254 / length                                     # metres per ASF unit: inches / length
    assert motion.name == "07_01" and motion.fps == 120.0 and motion.joints.shape == (4, 17, 3)
    rest = {"pelvis": (0, 20, 0), "thorax": (0, 26, 0), "spine": (0, 23, 0), "neck_nose": (0, 28, 0),
            "head": (0, 32, 0)}
    for side, s in (("left", 1), ("right", -1)):
        rest.update({f"{side}_hip": (2 * s, 20, 0), f"{side}_knee": (2 * s, 12, 0), f"{side}_ankle": (2 * s, 4, 0),
                     f"{side}_shoulder": (3 * s, 26, 0), f"{side}_elbow": (8 * s, 26, 0),
                     f"{side}_wrist": (12 * s, 26, 0)})
    np.testing.assert_allclose(motion.joints[0], expected(rest) * u, atol=1e-9)
    # the thigh flexes forward (+z); the shin turns about its own x axis, which its axis (y 90) puts on -z
    np.testing.assert_allclose(motion.joints[1, J["left_knee"]], z_up((2, 20, 8)) * u, atol=1e-9)
    np.testing.assert_allclose(motion.joints[1, J["left_ankle"]], z_up((-6, 20, 8)) * u, atol=1e-9)
    # the root moved 1 along x and turned 90 degrees about y: the left hip goes to -z
    np.testing.assert_allclose(motion.joints[2, J["left_ankle"]], z_up((1, 4, -2)) * u, atol=1e-9)
    # dof rx ry rz apply x first: rx 90 then rz 90 (Rz @ Rx) sends the leg to -z (Rx @ Rz would send it to +x)
    np.testing.assert_allclose(motion.joints[3, J["left_knee"]], z_up((2, 20, -8)) * u, atol=1e-9)
    np.testing.assert_allclose(motion.joints[3, J["left_ankle"]], z_up((2, 20, -16)) * u, atol=1e-9)


def test_asf_amc_in_radians_and_at_another_rate(tmp_path):
    asf = write_asf(tmp_path / "skeleton.asf", angle="rad")
    degrees = read_asf_amc(write_amc(tmp_path / "a_01.amc", ASF_FRAMES), asf_path=write_asf(tmp_path / "d.asf"))
    radians = read_asf_amc(write_amc(tmp_path / "b_01.amc", ASF_FRAMES, header="", turn=np.pi / 180), asf, fps=60)
    assert radians.fps == 60.0
    np.testing.assert_allclose(radians.joints, degrees.joints, atol=1e-9)


def test_the_asf_is_found_beside_the_amc_or_a_clear_error(tmp_path):
    amc = write_amc(tmp_path / "07_01.amc", ASF_FRAMES)
    with pytest.raises(MotionError, match=r"07_01\.amc: no ASF skeleton beside it \(looked for 07\.asf.*put the subject.s \.asf there"):
        read_asf_amc(amc)
    write_asf(tmp_path / "other.asf")
    assert len(read_asf_amc(amc).joints) == 4                # the only .asf there
    write_asf(tmp_path / "more.asf")
    with pytest.raises(MotionError, match=r"07_01\.amc: 2 ASF skeletons beside it \(more\.asf, other\.asf\).*name the one this motion was captured with 07\.asf"):
        read_asf_amc(amc)
    write_asf(tmp_path / "07.asf")
    assert len(read_asf_amc(amc).joints) == 4                # the subject's


def test_malformed_amc_files_name_the_file_and_the_line(tmp_path):
    asf = write_asf(tmp_path / "07.asf")
    lines = write_amc(tmp_path / "07_01.amc", ASF_FRAMES).read_text().splitlines()
    cases = {
        "cut.amc": (lines[:-1] + ["rtibia"], rf"line {len(lines)}: rtibia: 0 values, expected 1"),
        "word.amc": (lines[:-1] + ["rtibia x"], rf"line {len(lines)}: rtibia: could not convert .*'x'"),
        "bone.amc": (lines + ["tail 1 2"], rf"line {len(lines) + 1}: bone 'tail' is not in the ASF skeleton"),
        "partial.amc": (lines[:-1], r"rtibia has values in 3 of the 4 frames"),
        "empty.amc": (lines[:3], r"no frames"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text("\n".join(text) + "\n")
        with pytest.raises(MotionError, match=rf"{name.replace('.', '[.]')}: {message}"):
            read_asf_amc(tmp_path / name, asf)
    (tmp_path / "nohip.asf").write_text(asf.read_text().replace("lhipjoint lfemur", "lhipjoint"))
    with pytest.raises(MotionError, match=r"nohip\.asf: no bone 'lfemur' in the hierarchy"):
        read_asf_amc(tmp_path / "07_01.amc", tmp_path / "nohip.asf")
