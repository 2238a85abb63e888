"""Denoiser: conformance on both shapes, shape handling, fused vs explicit attention."""
import torch

from common.model.denoiser import Denoiser, DenoiserConfig, timestep_embedding
from conftest import random_inputs, tiny_model

TINY = DenoiserConfig(frames=5, channels=32, depth=2, heads=4, drop_path=0.0)


def test_sampling_path_matches_authors_output(fixture_a, model_a):
    _, v, _ = fixture_a
    with torch.no_grad():
        out = model_a(v["inputs_2d"], v["x_noisy"], v["t_eval"])
    assert (out - v["denoiser_out"]).abs().max() < 1e-5


def test_training_path_matches_authors_output(fixture_a, model_a):
    _, v, _ = fixture_a
    with torch.no_grad():
        out = model_a(v["inputs_2d"], v["x_noisy_train"], v["t_train"])
    assert (out - v["denoiser_train_out"]).abs().max() < 1e-5


def test_hypotheses_are_independent_of_each_other():
    torch.manual_seed(0)
    model = Denoiser(TINY).eval()
    x2d, x3d, t = torch.randn(2, 5, 17, 2), torch.randn(2, 3, 5, 17, 3), torch.tensor([3, 700])
    with torch.no_grad():
        joint = model(x2d, x3d, t)
        alone = torch.stack([model(x2d, x3d[:, h], t) for h in range(3)], dim=1)
    assert joint.shape == x3d.shape
    assert torch.allclose(joint, alone, atol=1e-5)


def test_fused_and_explicit_attention_agree():
    torch.manual_seed(1)
    model = Denoiser(TINY).eval()
    x2d, x3d, t = torch.randn(2, 5, 17, 2), torch.randn(2, 2, 5, 17, 3), torch.tensor([10, 20])
    with torch.no_grad():
        fused = model(x2d, x3d, t)
        model.set_fused_attention(False)
        explicit = model(x2d, x3d, t)
    assert torch.allclose(fused, explicit, atol=1e-5)


def test_split_embedding_equals_the_embedding_of_the_concatenated_input():
    """Hypotheses share the 2D half of the embedding: the same as embedding (2D, 3D) rows."""
    torch.manual_seed(2)
    model = Denoiser(TINY).eval()
    x2d, x3d, t = torch.randn(1, 5, 17, 2), torch.randn(1, 4, 5, 17, 3), torch.tensor([5])
    embedded, encode = [], model.encode
    model.encode = lambda x, clips: embedded.append(x) or encode(x, clips)   # the blocks' input
    with torch.no_grad():
        model(x2d, x3d, t)
        joined = torch.cat((x2d.unsqueeze(1).expand(-1, 4, -1, -1, -1), x3d), dim=-1)
        expected = model.joint_embed(joined) + model.spatial_pos + model.time_mlp(t)[:, None, None, None, :]
    assert torch.allclose(embedded[0], expected.reshape(4 * 5, 17, -1), atol=1e-6)


def test_drop_path_only_acts_in_training():
    torch.manual_seed(3)
    model = Denoiser(DenoiserConfig(frames=5, channels=32, depth=3, heads=4, drop_path=0.5))
    x2d, x3d, t = torch.randn(4, 5, 17, 2), torch.randn(4, 5, 17, 3), torch.tensor([1, 2, 3, 4])
    model.train()
    a, b = model(x2d, x3d, t), model(x2d, x3d, t)
    model.eval()
    c, d = model(x2d, x3d, t), model(x2d, x3d, t)
    assert not torch.allclose(a, b)
    assert torch.equal(c, d)


def test_timestep_embedding_is_half_sine_half_cosine():
    emb = timestep_embedding(torch.tensor([0, 7]), 8)
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    freqs = torch.exp(torch.arange(4) * -(torch.log(torch.tensor(10000.0)) / 3))
    assert torch.allclose(emb[1, :4], torch.sin(7 * freqs)) and torch.allclose(emb[1, 4:], torch.cos(7 * freqs))


def test_wrong_clip_length_is_refused():
    model = Denoiser(TINY)
    try:
        model(torch.randn(1, 6, 17, 2), torch.randn(1, 6, 17, 3), torch.tensor([1]))
    except AssertionError as e:
        assert "5 frames" in str(e)
    else:
        raise AssertionError("a 6-frame clip was accepted by a 5-frame model")


def test_fused_and_explicit_attention_agree_at_several_timesteps():
    model = tiny_model()
    x2d, noise = random_inputs()
    t = torch.tensor([3, 400, 900])
    with torch.no_grad():
        model.set_fused_attention(True)
        fused = model(x2d, noise[0], t)
        model.set_fused_attention(False)
        explicit = model(x2d, noise[0], t)
    assert (fused - explicit).abs().max() < 1e-5
