"""COCO-17 input: a model fed COCO keypoints maps them onto its Human3.6M output joints inside
the denoiser (common.model.denoiser.INPUT_MAPS), so every token holds the 2D of the joint it predicts.
Fed in COCO's own order, token j paired the 2D of one body part with the 3D of another and a
small model learned no more than the mean pose."""
import pytest
import torch

from common.run.config import RunConfig
from common.model.checkpoint import CheckpointError, atomic_save, config_from_checkpoint, load_denoiser, \
    make_checkpoint, safe_load
from common.geometry.coco import COCO_JOINTS_LEFT, COCO_JOINTS_RIGHT, coco_to_h36m
from common.model.denoiser import Denoiser, DenoiserConfig
from common.geometry.skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, flip_pose

TINY = dict(frames=9, channels=32, depth=1, heads=4, drop_path=0.0)


def randomised(cfg: DenoiserConfig, seed: int = 0) -> Denoiser:
    torch.manual_seed(seed)
    model = Denoiser(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_coco_input_enters_the_token_of_its_human36m_joint():
    mapped = randomised(DenoiserConfig(**TINY, input_map="coco_to_h36m"))
    plain = Denoiser(DenoiserConfig(**TINY)).eval()
    plain.load_state_dict(mapped.state_dict())              # same weights: the map is not a parameter
    g = torch.Generator().manual_seed(1)
    coco = torch.randn(2, 9, 17, 2, generator=g) * 0.3
    x3d, t = torch.randn(2, 3, 9, 17, 3, generator=g), torch.tensor([10, 900])
    expected = plain(torch.from_numpy(coco_to_h36m(coco.numpy())), x3d, t)
    torch.testing.assert_close(mapped(coco, x3d, t), expected, atol=1e-6, rtol=1e-5)
    # and it commutes with flipping: COCO flipped with COCO's lists = Human3.6M flipped with its own
    flipped = flip_pose(coco, COCO_JOINTS_LEFT, COCO_JOINTS_RIGHT)
    torch.testing.assert_close(mapped.input_matrix @ flipped,
                               flip_pose(mapped.input_matrix @ coco, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT))


def test_the_input_map_is_saved_with_the_model_and_checked_on_load(tmp_path):
    model = randomised(DenoiserConfig(**TINY, input_map="coco_to_h36m"))
    path = tmp_path / "m.bin"
    atomic_save(make_checkpoint(model), path)
    loaded, _ = load_denoiser(path)
    assert loaded.cfg.input_map == "coco_to_h36m" and "input_matrix" not in loaded.state_dict()
    # a checkpoint written before the field existed loads as 'as given' (unchanged behaviour)
    ckpt = safe_load(path)
    del ckpt["model_config"]["input_map"]
    assert config_from_checkpoint(ckpt).input_map == ""
    ckpt["model_config"]["input_map"] = "reversed"
    with pytest.raises(CheckpointError, match="input_map = 'reversed' is not one of"):
        config_from_checkpoint(ckpt, "m.bin")
    with pytest.raises(ValueError, match="unknown input_map"):
        Denoiser(DenoiserConfig(**TINY, input_map="reversed"))


def tokens_touched(model: Denoiser, joint: int) -> set:
    """Which tokens entering the first spatial block change when only 2D input joint `joint`
    moves."""
    seen = []
    hook = model.spatial_blocks[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    g = torch.Generator().manual_seed(2)
    x2d, x3d, t = torch.randn(1, 9, 17, 2, generator=g), torch.randn(1, 9, 17, 3, generator=g), torch.tensor([5])
    moved = x2d.clone()
    moved[..., joint, :] += 0.5
    with torch.no_grad():
        model(x2d, x3d, t)
        model(moved, x3d, t)
    hook.remove()
    changed = (seen[0] - seen[1]).abs().amax(dim=(0, 2)) > 1e-6          # (J,)
    return set(torch.nonzero(changed)[:, 0].tolist())


@pytest.mark.parametrize("coco_joint, h36m_tokens", [(14, {2}), (9, {13}), (11, {0, 4, 7}), (0, {9}), (2, {10})])
def test_a_coco_model_sees_each_keypoint_in_the_token_of_its_joint(coco_joint, h36m_tokens):
    """The check the COCO path lacked: in a model built for COCO training data, a COCO keypoint
    (right knee, left wrist, left hip, nose, right eye) reaches exactly the tokens of the Human3.6M
    joints made from it (right knee; left wrist; pelvis, left hip, spine; neck_nose; head). Fed
    in COCO's order, the right knee's 2D went to the right shoulder's token (14) and a small
    model trained on synthetic COCO 2D scored no better than the mean pose."""
    run = RunConfig(number_of_frames=9, cs=32, dep=1, heads=4, drop_path=0.0)
    model = randomised(run.model_config("coco"))
    assert tokens_touched(model, coco_joint) == h36m_tokens
    # a Human3.6M-layout model keeps token j = input joint j
    plain = randomised(run.model_config("h36m"))
    assert tokens_touched(plain, coco_joint) == {coco_joint}


def test_new_models_map_coco_input_when_the_training_data_is_coco():
    run = RunConfig(number_of_frames=9, cs=32, dep=1, heads=4, drop_path=0.0)
    assert run.model_config("coco").input_map == "coco_to_h36m"
    assert run.model_config("h36m").input_map == ""
