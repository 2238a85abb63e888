"""Training: exact resume after an interruption, checkpoints on disk, the loss going down."""
import numpy as np
import pytest
import torch

from common.model.checkpoint import atomic_save, load_denoiser
from common.datasets.clips import ClipSampler
from common.model.denoiser import Denoiser, DenoiserConfig
from common.model.diffusion import Diffusion
from common.geometry.coco import input_layout
from common.evaluation.report import mean_pose_baseline
from common.run.train import Trainer, TrainConfig, make_optimizer
from conftest import make_sequences, random_inputs, tiny_model

CFG = DenoiserConfig(frames=5, channels=16, depth=2, heads=2, drop_path=0.3)


def _trainer(out_dir, epochs, sequences, amp_dtype=None):
    torch.manual_seed(0)
    model = Denoiser(CFG)
    clips = ClipSampler(sequences, CFG.frames, 2, augment=True, layout=input_layout("h36m"), seed=3)
    cfg = TrainConfig(epochs=epochs, lr=1e-3, lr_decay=0.9, seed=5, checkpoint_frequency=1, progress=False,
                      amp_dtype=amp_dtype)
    return Trainer(model, Diffusion(), clips, cfg, "cpu", out_dir, validate=lambda m: float(len(str(m)) % 7))


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path):
    seqs = make_sequences(3, 14)
    straight = _trainer(tmp_path / "a", 3, seqs)
    straight.fit(log=lambda *_: None)

    first = _trainer(tmp_path / "b", 1, seqs)
    first.fit(log=lambda *_: None)                       # "interrupted" after epoch 1
    resumed = _trainer(tmp_path / "b", 3, seqs)
    torch.manual_seed(123)                               # a fresh process would have other RNG state
    resumed.resume(tmp_path / "b" / "latest_epoch.bin")
    assert resumed.epoch == 1
    resumed.fit(log=lambda *_: None)

    assert resumed.lr == pytest.approx(straight.lr)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert straight.optimizer.state_dict()["state"][0]["step"] == resumed.optimizer.state_dict()["state"][0]["step"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_training_runs_and_resumes(tmp_path, dtype):
    seqs = make_sequences(2, 10)
    straight = _trainer(tmp_path / "a", 2, seqs, dtype)
    straight.fit(log=lambda *_: None)
    assert straight.scaler.is_enabled() == (dtype == torch.float16)
    full = _trainer(tmp_path / "full", 2, seqs)
    full.fit(log=lambda *_: None)
    moved = [float((a - b).abs().max()) for a, b in zip(straight.model.state_dict().values(), full.model.state_dict().values())]
    assert all(np.isfinite(moved)) and max(moved) > 0       # autocast really ran, and stayed finite
    first = _trainer(tmp_path / "b", 1, seqs, dtype)
    first.fit(log=lambda *_: None)
    resumed = _trainer(tmp_path / "b", 2, seqs, dtype)
    resumed.resume(tmp_path / "b" / "latest_epoch.bin")
    resumed.fit(log=lambda *_: None)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_checkpoints_written_each_epoch_and_loadable_without_flags(tmp_path):
    trainer = _trainer(tmp_path, 2, make_sequences(2, 10))
    trainer.fit(log=lambda *_: None)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best_epoch.bin", "epoch_1.bin", "epoch_2.bin", "latest_epoch.bin"]
    model, ckpt = load_denoiser(tmp_path / "latest_epoch.bin")
    assert model.cfg == CFG and ckpt["epoch"] == 2 and isinstance(ckpt["random_state"], np.random.RandomState)


def test_resuming_from_an_authors_checkpoint_is_refused_with_a_reason(tmp_path, fixture_a):
    trainer = _trainer(tmp_path, 1, make_sequences(1, 10))
    with pytest.raises(ValueError, match="evaluated with --evaluate but not resumed"):
        trainer.resume(fixture_a[2] / "checkpoint.bin")


def test_training_reduces_the_error():
    seqs = make_sequences(3, 20)
    trainer = _trainer("unused", 1, seqs)
    trainer.cfg.epochs = 1
    first, _ = trainer.train_epoch()
    for _ in range(15):
        last, _ = trainer.train_epoch()
    assert last < 0.6 * first


def test_mean_pose_baseline_is_zero_for_a_constant_pose():
    seqs = make_sequences(1, 10)
    seqs[0].pose_3d[:] = seqs[0].pose_3d[0]
    assert mean_pose_baseline(seqs, seqs) == pytest.approx(0.0, abs=1e-6)
    assert mean_pose_baseline(seqs, make_sequences(1, 10, seed=4)) > 0.05


def test_optimizer_is_fused_and_matches_the_for_loop():
    a, b = tiny_model(), tiny_model()
    opt_a = make_optimizer(a, 1e-3, 0.1)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-3, weight_decay=0.1, foreach=False)
    assert opt_a.defaults["fused"]
    x2d, noise = random_inputs()
    t = torch.tensor([1, 2, 3])
    for model, opt in ((a, opt_a), (b, opt_b)):
        model.train()
        for _ in range(3):
            opt.zero_grad()
            model(x2d, noise[0][:, 0], t).square().mean().backward()
            opt.step()
    moved = max(float((pa - pb0).abs().max()) for pa, pb0 in zip(a.parameters(), tiny_model().parameters()))
    differ = max(float((pa - pb).abs().max()) for pa, pb in zip(a.parameters(), b.parameters()))
    assert moved > 1e-3 and differ < 1e-5, (moved, differ)


def test_a_gpu_runs_checkpoint_resumes_on_the_cpu_with_a_note_and_a_seeded_stream(tmp_path):
    """A CUDA generator's state (Philox: 16 bytes) cannot be set on a CPU generator: the resumed
    run says so and draws from a stream seeded by (seed, epoch), the same on every such resume."""
    seqs = make_sequences(2, 10)
    first = _trainer(tmp_path / "a", 1, seqs)
    first.fit(log=lambda *_: None)
    ckpt = first.state()
    assert ckpt["train_generator_device"] == "cpu" and ckpt["device_rng"] is None and "cuda_rng" not in ckpt
    ckpt.update(train_generator=torch.zeros(16, dtype=torch.uint8), train_generator_device="cuda",
                device_rng={"type": "cuda", "state": torch.zeros(16, dtype=torch.uint8)})
    atomic_save(ckpt, tmp_path / "gpu_run.bin")
    resumed = []
    for _ in range(2):                          # each resumed and trained in turn, as two processes would
        trainer = _trainer(tmp_path / "b", 2, seqs)
        notes = trainer.resume(tmp_path / "gpu_run.bin")
        assert len(notes) == 1 and "trained on CUDA and resumes on CPU" in notes[0]
        seeded = torch.Generator().manual_seed(5 * 1_000_003 + 1).get_state()
        assert torch.equal(trainer.generator.get_state(), seeded)
        trainer.fit(log=lambda *_: None)
        resumed.append(trainer)
    for a, b in zip(resumed[0].model.parameters(), resumed[1].model.parameters()):
        assert torch.equal(a, b)
    assert resumed[0].epoch == 2


def test_the_saved_generator_device_and_gpu_rng_of_older_files_are_told_apart():
    """Files written before the device was recorded: the generator's device is told by its
    state's size; their CUDA RNG list held every visible GPU, and a run that sees fewer GPUs
    takes the entry of its own index when there is one (no crash)."""
    from common.run.train import saved_device_rng, saved_generator_device

    cpu_state = torch.Generator().get_state()
    assert saved_generator_device({"train_generator": cpu_state}) == "cpu"
    assert saved_generator_device({"train_generator": torch.zeros(16, dtype=torch.uint8)}) == "cuda"
    every = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]        # saved seeing 4 GPUs
    assert torch.equal(saved_device_rng({"cuda_rng": every}, torch.device("cuda:2")), every[2])
    assert torch.equal(saved_device_rng({"cuda_rng": every}, torch.device("cuda")), every[0])
    assert saved_device_rng({"cuda_rng": every[:1]}, torch.device("cuda:3")) is None
    assert saved_device_rng({"cuda_rng": every}, torch.device("cpu")) is None
    own = {"device_rng": {"type": "cuda", "state": every[1]}, "cuda_rng": every}
    assert torch.equal(saved_device_rng(own, torch.device("cuda:0")), every[1])


def test_a_training_epoch_reads_nothing_back_from_the_device_per_step(tmp_path, monkeypatch):
    """Reading a tensor's value (float(), .item()) waits for a GPU: an epoch does it once at its
    end, not once per batch (the progress bar's reads are every LOG_EVERY batches, and it is
    off here)."""
    seqs = make_sequences(3, 14)
    trainer = _trainer(tmp_path, 1, seqs)
    assert trainer.clips.num_batches() >= 5
    reads = []
    real_float, real_item = torch.Tensor.__float__, torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "__float__", lambda self: reads.append("float") or real_float(self))
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append("item") or real_item(self))
    loss, _ = trainer.train_epoch()
    assert reads == ["float"] and loss > 0
