"""Schedule, forward noising and the DDIM sampler against the authors' vectors and by property;
chunked denoiser calls and mixed precision change nothing or little."""
import pytest
import torch

from common.model.denoiser import Denoiser, DenoiserConfig
from common.model.chunking import auto_hypothesis_limit, hypothesis_chunks
from common.model.diffusion import DDIMSampler, Diffusion, FlipTTA, ddim_time_pairs
from common.geometry.skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, flip_pose
from conftest import random_inputs, sample_poses, tiny_model


def test_schedule_matches_authors(fixture_a):
    _, v, _ = fixture_a
    d = Diffusion(1000)
    assert (d.betas - v["betas"]).abs().max() < 1e-10
    assert (d.alphas_cumprod - v["alphas_cumprod"]).abs().max() < 1e-10


def test_time_pairs_follow_the_method_example():
    assert ddim_time_pairs(1000, 5) == [(999, 799), (799, 599), (599, 399), (399, 199), (199, -1)]


def test_ddim_replay_without_flip(fixture_a, model_a):
    cfg, v, _ = fixture_a
    sampler = DDIMSampler(Diffusion(cfg["timesteps"], cfg["scale"]), cfg["iterations"], cfg["ddim_eta"])
    out = sampler.sample(model_a, v["inputs_2d"], cfg["hypotheses"],
                         noise=[v[f"ddim_noise_{i}"] for i in range(cfg["iterations"])])
    assert out.shape == v["ddim_out"].shape
    assert (out - v["ddim_out"]).abs().max() < 1e-4


def test_ddim_replay_with_flip_batched_and_two_pass(fixture_a, model_a):
    cfg, v, _ = fixture_a
    sampler = DDIMSampler(Diffusion(cfg["timesteps"], cfg["scale"]), cfg["iterations"], cfg["ddim_eta"])
    for batched in (True, False):
        flip = FlipTTA(v["inputs_2d_flip"], cfg["joints_left"], cfg["joints_right"], batched=batched)
        out = sampler.sample(model_a, v["inputs_2d"], cfg["hypotheses"], flip=flip,
                             noise=[v[f"ddim_flip_noise_{i}"] for i in range(cfg["iterations"])])
        assert (out - v["ddim_flip_out"]).abs().max() < 1e-4


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return Denoiser(DenoiserConfig(frames=4, channels=16, depth=1, heads=2, drop_path=0.0)).eval()


def test_sampler_is_reproducible_from_a_seed_and_differs_across_seeds():
    model, sampler = _tiny_model(), DDIMSampler(Diffusion(), 3)
    x2d = torch.randn(2, 4, 17, 2)
    run = lambda seed: sampler.sample(model, x2d, 3, generator=torch.Generator().manual_seed(seed))
    a, b, c = run(7), run(7), run(8)
    assert a.shape == (2, 3, 3, 4, 17, 3)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_flip_tta_of_a_symmetric_input_is_symmetric():
    """A left/right-symmetric 2D clip and mirrored starting noise give mirrored results."""
    model, sampler = _tiny_model(1), DDIMSampler(Diffusion(), 2)
    half = torch.randn(1, 4, 17, 2)
    x2d = (half + flip_pose(half, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT)) / 2   # symmetric by construction
    assert torch.allclose(flip_pose(x2d, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT), x2d)
    g = torch.Generator().manual_seed(0)
    noise = [torch.randn(1, 2, 4, 17, 3, generator=g) for _ in range(2)]
    mirrored_noise = [flip_pose(n, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT) for n in noise]
    flip = lambda: FlipTTA(x2d, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT)
    out = sampler.sample(model, x2d, 2, flip=flip(), noise=noise)
    out_m = sampler.sample(model, x2d, 2, flip=flip(), noise=mirrored_noise)
    assert torch.allclose(flip_pose(out, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT), out_m, atol=1e-5)
    # With a single symmetric starting point, the first prediction is itself symmetric.
    sym = [(n + flip_pose(n, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT)) / 2 for n in noise]
    first = sampler.sample(model, x2d, 2, flip=flip(), noise=sym)[:, 0]
    assert torch.allclose(flip_pose(first, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT), first, atol=1e-5)


def test_q_sample_is_vectorised_per_sample_timestep():
    d = Diffusion()
    x0, noise = torch.randn(3, 4, 17, 3), torch.randn(3, 4, 17, 3)
    t = torch.tensor([0, 500, 999])
    x_t = d.q_sample(x0, t, noise)
    for i in range(3):
        a, b = d.alphas_cumprod[t[i]].sqrt(), (1 - d.alphas_cumprod[t[i]]).sqrt()
        assert torch.allclose(x_t[i], (a * x0[i] + b * noise[i]).float(), atol=1e-6)


def test_training_input_is_clamped_and_scaled():
    d = Diffusion(scale=2.0)
    x, t = d.training_input(torch.randn(8, 4, 17, 3) * 3, generator=torch.Generator().manual_seed(0))
    assert x.abs().max() <= 1.1 + 1e-6 and t.shape == (8,) and t.dtype == torch.long
    assert 0 <= int(t.min()) and int(t.max()) < 1000


@pytest.mark.parametrize("batch,hyps,limit", [(3, 4, None), (3, 4, 12), (3, 4, 5), (3, 4, 4), (3, 4, 3),
                                              (3, 4, 1), (1, 20, 7), (5, 1, 2)])
def test_hypothesis_chunks_cover_every_pair_once(batch, hyps, limit):
    seen = torch.zeros(batch, hyps, dtype=torch.int64)
    for rows, cols in hypothesis_chunks(batch, hyps, limit):
        part = seen[rows, cols]
        assert limit is None or part.numel() <= limit
        seen[rows, cols] += 1
    assert (seen == 1).all()


@pytest.mark.parametrize("limit", [1, 3, 7, 0])
@pytest.mark.parametrize("batched", [True, False])
def test_chunked_sampling_equals_one_call(limit, batched):
    model = tiny_model()
    x2d, noise = random_inputs()
    whole = sample_poses(model, x2d, noise, batched=batched)
    chunked = sample_poses(model, x2d, noise, batched=batched, max_batch_hypotheses=limit)
    assert (whole - chunked).abs().max() < 1e-6


def test_auto_limit_is_cache_sized_on_cpu():
    small = DenoiserConfig(frames=27, channels=128, depth=4)
    full = DenoiserConfig(frames=243, channels=512, depth=8)
    assert auto_hypothesis_limit(small, "cpu") == 17          # 4 MiB / (27 * 17 * 128 * 4 bytes)
    assert auto_hypothesis_limit(full, "cpu") == 1


def test_amp_on_cpu_stays_close_and_returns_float32():
    model = tiny_model()
    x2d, noise = random_inputs()
    full = sample_poses(model, x2d, noise)
    mixed = sample_poses(model, x2d, noise, amp_dtype=torch.bfloat16)
    assert mixed.dtype == torch.float32
    assert 0 < (full - mixed).abs().max() < 0.05
