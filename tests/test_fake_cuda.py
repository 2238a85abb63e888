"""Device placement on a GPU, checked on any machine: training, sampling, evaluation, the Python
API and resuming across devices run their CUDA code paths under tests/fake_cuda.py, where every
CUDA tensor is a FakeTensor of device cuda:0 and a tensor on the wrong device fails as on a GPU
(a CPU tensor in a CUDA op, a CPU generator for CUDA draws, .numpy() of a CUDA tensor, a GPU
index that is not there).

FakeTensors carry no values, so these tests assert devices, dtypes and shapes; the numbers are
the other tests' business. Where the code under test hands results to numpy, the harness
checks the hand-over as a GPU would (.numpy() of a CUDA tensor raises; after .cpu() it gives
zeros of the tensor's shape and dtype) and records it in `gpu.reads` as (what, the tensor's
device, its shape), with every .cpu() copy and scalar read (float(), .item()) of a CUDA
tensor: so the numpy code downstream runs on zeros, and a test can assert what crossed to the
host and from which device. fake_cuda.py's docstring describes the rest of the harness."""
import numpy as np
import pytest
import torch

import common as d3dp
from common.model.checkpoint import safe_load
from common.datasets.clips import ClipSampler
from common.geometry.coco import input_layout
from common.model.denoiser import Denoiser, DenoiserConfig
from common.model.device import AMP_DTYPES, prepare_model
from common.model.diffusion import DDIMSampler, Diffusion, FlipTTA
from common.evaluation.evaluate import EvalSettings, evaluate_sequences
from common.inference.core import InferenceCore
from common.evaluation.metrics import AGGREGATION_MODES
from common.inference.sampling import sample_windows
from common.geometry.skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, flip_pose
from common.run.train import Trainer, TrainConfig
from conftest import make_sequences, save_tiny_checkpoint, tiny_model
from fake_cuda import fake_cuda, is_fake, on_cuda

CUDA = torch.device("cuda", 0)
# drop_path > 0: the drop-path masks are drawn on the device in training, too.
CFG = DenoiserConfig(frames=5, channels=16, depth=2, heads=2, drop_path=0.3)
SEED = 5


def _trainer(device, out_dir, epochs=1, amp=None) -> Trainer:
    """A tiny training run on device, set up as common.run.experiment sets one up (model moved to the
    device, attention chosen for it); one short sequence: two batches of two clips."""
    torch.manual_seed(0)
    model = prepare_model(Denoiser(CFG).to(device), device)
    clips = ClipSampler(make_sequences(1, 10), CFG.frames, 2, augment=True, layout=input_layout("h36m"), seed=3)
    cfg = TrainConfig(epochs=epochs, lr=1e-3, lr_decay=0.9, seed=SEED, checkpoint_frequency=0, progress=False,
                      amp_dtype=AMP_DTYPES.get(amp))
    return Trainer(model, Diffusion(), clips, cfg, device, out_dir)


def _forward_outputs(model) -> list:
    """The outputs of every forward call of model, as they are made."""
    outputs = []
    model.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    return outputs


def _assert_training_state_on(trainer: Trainer, device: torch.device) -> None:
    """Parameters, their gradients and every optimizer state tensor of trainer are on device."""
    params = list(trainer.model.parameters())
    assert all(p.device == device for p in params)
    assert all(p.grad is not None and p.grad.device == device and p.grad.shape == p.shape for p in params)
    states = [v for p in params for v in trainer.optimizer.state[p].values()]
    assert len(states) == 3 * len(params)                         # step, exp_avg, exp_avg_sq
    assert all(v.device == device for v in states)


# ---------------------------------------------------------------------------- training

@pytest.mark.parametrize("amp", [None, "bf16", "fp16"])
def test_a_training_epoch_runs_on_the_gpu(tmp_path, amp):
    """Noise, forward under autocast, MPJPE loss, backward, (scaled) AdamW step, all on cuda:0;
    the epoch's loss is read from the device once, and the checkpoint saves the GPU's state."""
    with fake_cuda() as gpu:
        trainer = _trainer(CUDA, tmp_path, amp=amp)
        outputs = _forward_outputs(trainer.model)
        trainer.fit(log=lambda *_: None)

    batches = trainer.clips.num_batches()
    assert batches >= 2 and len(outputs) == batches
    assert all(on_cuda(out, (2, CFG.frames, 17, 3)) for out in outputs)
    assert {out.dtype for out in outputs} == {AMP_DTYPES.get(amp, torch.float32)}
    _assert_training_state_on(trainer, CUDA)
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    if amp == "fp16":
        assert on_cuda(trainer.scaler._scale) and on_cuda(trainer.scaler._growth_tracker)
    assert trainer.generator.device == CUDA
    host_reads = [read for read in gpu.reads if read[0] in ("float", "item", "to_host", "numpy")]
    if amp == "fp16":                                             # GradScaler's own found-inf checks
        host_reads = [read for read in host_reads if read[0] != "item"]
    assert host_reads == [("float", CUDA, ())]                    # the epoch's loss, read once at its end
    saved = safe_load(tmp_path / "latest_epoch.bin")
    assert saved["train_generator_device"] == "cuda" and saved["train_generator"].numel() == 16
    assert saved["device_rng"]["type"] == "cuda" and saved["device_rng"]["state"].numel() == 16
    assert all(device == CUDA for what, device, _ in gpu.reads if what == "save")


# ---------------------------------------------------------------------------- sampling

def test_ddim_sampling_with_flip_and_chunks_stays_on_the_gpu():
    """DDIMSampler.sample with batched flip TTA: small max_batch_hypotheses splits every
    iteration into several denoiser calls, and 0 (the GPU's automatic size from its memory)
    into one; the hypotheses come back on cuda:0, (B, K, H, F, J, 3), and nothing is read
    back from the GPU on the way."""
    b, h, k, frames = 2, 3, 2, 9
    with fake_cuda() as gpu:
        model = prepare_model(tiny_model(frames=frames).to(CUDA), CUDA)
        calls = _forward_outputs(model)
        x2d = torch.randn(b, frames, 17, 2).to(CUDA)
        flip = FlipTTA(flip_pose(x2d, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT), H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT)
        generator = torch.Generator(device=CUDA).manual_seed(0)
        chunked = DDIMSampler(Diffusion(), k, max_batch_hypotheses=4).sample(model, x2d, h, flip, generator)
        chunk_calls = len(calls)
        automatic = DDIMSampler(Diffusion(), k, max_batch_hypotheses=0).sample(model, x2d, h, flip, generator)

    assert on_cuda(chunked, (b, k, h, frames, 17, 3)) and on_cuda(automatic, (b, k, h, frames, 17, 3))
    assert chunk_calls == k * b * 2                    # 4 per call, halved by flip TTA: 2 + 1 hypotheses of a clip
    assert len(calls) == chunk_calls + k               # automatic: one call per iteration
    assert all(on_cuda(out) for out in calls)
    assert gpu.reads == []


def test_sample_windows_draws_and_samples_on_the_gpu():
    """common.inference.sampling.sample_windows: numpy sequences cut into windows (a short one padded),
    copied to the GPU, per-group noise from CUDA generators, flip TTA, two groups packed into
    each denoiser call (the flipped copies in the same call)."""
    frames, h, k = 9, 2, 2
    inputs = [np.random.default_rng(i).normal(size=(n, 17, 2)).astype(np.float32) for i, n in enumerate((20, 7))]
    with fake_cuda():
        model = prepare_model(tiny_model(frames=frames).to(CUDA), CUDA)
        calls = _forward_outputs(model)
        groups = list(sample_windows(model, DDIMSampler(Diffusion(), k), inputs, h, 1, input_layout("h36m"), seed=0,
                                     device=CUDA, compute_batch=2, progress=False))

    assert [g.seq_index for g, _, _ in groups] == [0, 0, 0, 1]
    for g, x2d, hyps in groups:
        n = len(g.windows)
        assert on_cuda(x2d, (n, frames, 17, 2)) and on_cuda(hyps, (n, k, h, frames, 17, 3))
    assert len(calls) == 2 * k and all(on_cuda(out, (2 * 2, h, frames, 17, 3)) for out in calls)   # flipped copies too


# ---------------------------------------------------------------------------- evaluation

def test_evaluation_scores_on_the_gpu_and_reads_results_through_the_host():
    """evaluate_sequences with the real scoring: the four aggregation modes under both
    protocols, valid masks, kept poses, hypotheses and per-frame records, on cuda:0; every
    value reaching numpy was copied from the GPU first."""
    sequences = make_sequences(1, 11) + make_sequences(1, 8, seed=1, valid=True)
    settings = EvalSettings(protocol2=True, keep={"poses", "hypotheses", "frames"}, progress=False)
    with fake_cuda() as gpu:
        model = prepare_model(tiny_model(frames=5).to(CUDA), CUDA)
        calls = _forward_outputs(model)
        core = InferenceCore.of_sampler(model, DDIMSampler(Diffusion(), 2), CUDA, hypotheses=3, flip=True, group=2)
        results = evaluate_sequences(core, sequences, settings)

    assert calls and all(on_cuda(out) for out in calls)
    for result, seq in zip(results, sequences):
        assert set(result.sums) == {(p, m) for p in ("p1", "p2", "mpjve", "accel", "bone_cv") for m in AGGREGATION_MODES}
        assert all(np.shape(v) == (2,) for v in result.sums.values()) and result.weight > 0
        assert all(p.shape == (2, seq.num_frames, 17, 3) for p in result.poses.values())
        assert result.hypotheses.shape == (2, 3, seq.num_frames, 17, 3)
    numpy_reads = [device for what, device, _ in gpu.reads if what == "numpy"]
    assert numpy_reads and set(numpy_reads) == {torch.device("cpu")}
    assert {device for what, device, _ in gpu.reads if what == "to_host"} == {CUDA}


# ---------------------------------------------------------------------------- API

def test_the_lifter_lifts_on_the_gpu(tmp_path):
    """d3dp.Lifter.from_checkpoint(device='cuda').lift(...) of a COCO-input model (the
    lift_keypoints path): the model loaded onto cuda:0, sampled there, and numpy results of
    the shapes the API documents."""
    frames, h, k = 14, 3, 2
    keypoints = np.random.default_rng(0).uniform(50, 400, size=(frames, 17, 2)).astype(np.float32)
    with fake_cuda():
        lifter = d3dp.Lifter.from_checkpoint(save_tiny_checkpoint(tmp_path / "tiny.bin", "coco"), device="cuda")
        calls = _forward_outputs(lifter.model)
        result = lifter.lift(keypoints, image_size=(640, 480), hypotheses=h, iterations=k, seed=0)

    assert torch.device(lifter.device).type == "cuda" and all(on_cuda(p) for p in lifter.model.parameters())
    assert calls and all(on_cuda(out) for out in calls)
    assert result.hypotheses.shape == (frames, k, h, 17, 3) and result.trajectory.shape == (frames, 3)
    assert result.j_agg.shape == result.p_agg.shape == (frames, 17, 3)
    assert not any(is_fake(v) for v in vars(result).values())


# ---------------------------------------------------------------------------- resume across devices

def test_a_cpu_checkpoint_resumes_on_the_gpu(tmp_path):
    """A CPU run's checkpoint continues on cuda:0: the CPU generator's state cannot be set on a
    CUDA generator, so the run says so and draws from a stream seeded by (seed, epoch); weights
    and optimizer state move to the GPU and training goes on there."""
    _trainer("cpu", tmp_path).fit(log=lambda *_: None)
    with fake_cuda():
        trainer = _trainer(CUDA, tmp_path, epochs=2)
        notes = trainer.resume(tmp_path / "latest_epoch.bin")
        seeded = torch.Generator(device=CUDA).manual_seed(SEED * 1_000_003 + 1).get_state()
        assert torch.equal(trainer.generator.get_state(), seeded)
        trainer.fit(log=lambda *_: None)

    assert len(notes) == 1 and "trained on CPU and resumes on CUDA" in notes[0]
    assert trainer.epoch == 2
    _assert_training_state_on(trainer, CUDA)


def test_a_gpu_checkpoint_resumes_on_the_cpu(tmp_path):
    """A GPU run's checkpoint continues on the CPU, with a note and a stream seeded by (seed, epoch)."""
    with fake_cuda():
        _trainer(CUDA, tmp_path).fit(log=lambda *_: None)
    trainer = _trainer("cpu", tmp_path, epochs=2)
    notes = trainer.resume(tmp_path / "latest_epoch.bin")

    assert len(notes) == 1 and "trained on CUDA and resumes on CPU" in notes[0]
    assert torch.equal(trainer.generator.get_state(), torch.Generator().manual_seed(SEED * 1_000_003 + 1).get_state())
    trainer.fit(log=lambda *_: None)
    assert trainer.epoch == 2
    _assert_training_state_on(trainer, torch.device("cpu"))


def test_a_checkpoint_from_more_gpus_resumes_on_one(tmp_path):
    """A run on cuda:3 of 4 GPUs resumes on a machine with one: the run's own CUDA RNG state
    goes to cuda:0 and the training generator continues exactly (both CUDA). Files of the
    older layout stored every visible GPU's state (cuda_rng): the entry of the resumed run's
    index is used, and the states of GPUs it does not have are not set."""
    states = [torch.tensor([i] * 16, dtype=torch.uint8) for i in range(4)]
    with fake_cuda(devices=4):
        first = _trainer(torch.device("cuda", 3), tmp_path)
        torch.cuda.set_rng_state_all(states)                      # each GPU's RNG where its draws left it
        first.fit(log=lambda *_: None)
    own = safe_load(tmp_path / "latest_epoch.bin")
    assert torch.equal(own["device_rng"]["state"], states[3])
    older = {k: v for k, v in own.items() if k != "device_rng"} | {"cuda_rng": states}

    for ckpt, expected in ((own, states[3]), (older, states[0])):
        with fake_cuda(devices=1):
            trainer = _trainer(CUDA, tmp_path, epochs=2)
            assert trainer.resume(ckpt, path="saved.bin") == []
            assert torch.equal(trainer.generator.get_state(), ckpt["train_generator"])
            assert torch.equal(torch.cuda.get_rng_state(CUDA), expected)
            trainer.fit(log=lambda *_: None)
        assert trainer.epoch == 2
        _assert_training_state_on(trainer, CUDA)


# ---------------------------------------------------------------------------- the harness itself

def test_the_harness_fails_a_tensor_on_the_wrong_device(monkeypatch):
    """What the harness catches, as a GPU would: a CPU tensor in a CUDA op, a CPU tensor indexed
    with CUDA indices, a CPU generator for CUDA draws, a CPU generator's state set on a CUDA
    generator, .numpy() of a CUDA tensor, a GPU that is not there; and in the project's own
    code, DDIM timesteps made on the host (a forgotten device=)."""
    import common.model.diffusion as diffusion

    with fake_cuda():
        x = torch.randn(4, 3, device="cuda")
        with pytest.raises(RuntimeError, match="same device"):
            x + torch.ones(3)
        with pytest.raises(RuntimeError, match="indices should be either on cpu or on the same device"):
            torch.arange(10.0)[torch.randint(0, 10, (3,), device="cuda")]          # a host table, device indices
        with pytest.raises(RuntimeError, match="'cuda' device type for generator but found 'cpu'"):
            torch.randn(3, device="cuda", generator=torch.Generator())
        with pytest.raises(RuntimeError, match="RNG state is wrong size"):
            torch.Generator(device="cuda").set_state(torch.Generator().get_state())
        with pytest.raises(TypeError, match="Use Tensor.cpu"):
            x.numpy()
        with pytest.raises(RuntimeError, match="invalid device ordinal"):
            x.to("cuda:1")

        model = prepare_model(tiny_model(frames=5).to(CUDA), CUDA)
        x2d = torch.randn(2, 5, 17, 2).to(CUDA)
        monkeypatch.setattr(diffusion, "_timesteps", lambda t, batch, device: torch.full((batch,), t))
        with pytest.raises(RuntimeError, match="same device"):
            DDIMSampler(Diffusion(), 2).sample(model, x2d, 2)
