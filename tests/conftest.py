"""Shared test fixtures: the conformance vectors carried in tests/fixtures/, the location of the
real MPI-INF-3DHP test set (not redistributable: its tests skip without it), small sequences."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from common.run.conformance import DEFAULT_FOLDER as FIXTURE_A

# The official MPI-INF-3DHP test set (a folder with TS*/annot_data.mat): D3DP_3DHP_TEST_DIR, or
# data/mpi_inf_3dhp_test_set in the repository. Tests that need it skip, saying so, when it is absent.
MPI_INF_3DHP_TEST_DIR = Path(os.environ.get("D3DP_3DHP_TEST_DIR")
                             or Path(__file__).resolve().parents[1] / "data" / "mpi_inf_3dhp_test_set")


def require_3dhp_sequence(name: str = "TS5") -> Path:
    """The real annot_data.mat of one MPI-INF-3DHP test sequence, or skip the test."""
    path = MPI_INF_3DHP_TEST_DIR / name / "annot_data.mat"
    if not path.is_file():
        pytest.skip(f"real MPI-INF-3DHP test file not found at {path}: put the official test set there "
                    "or set D3DP_3DHP_TEST_DIR to its folder")
    return path

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fixture_a():
    """(config dict, vectors dict of tensors, folder) of conformance set A."""
    cfg = json.loads((FIXTURE_A / "config.json").read_text())
    with np.load(FIXTURE_A / "vectors.npz") as v:
        vectors = {k: torch.from_numpy(v[k]) for k in v.files}
    return cfg, vectors, FIXTURE_A


@pytest.fixture(scope="session")
def model_a(fixture_a):
    """The denoiser of set A, loaded from the authors' checkpoint, in eval mode."""
    from common.model.checkpoint import load_denoiser
    from common.model.denoiser import DenoiserConfig

    cfg, _, folder = fixture_a
    model, _ = load_denoiser(folder / "checkpoint.bin", DenoiserConfig(
        frames=cfg["frames"], channels=cfg["channels"], depth=cfg["depth"], drop_path=0.0))
    return model.eval()


def make_sequences(count: int = 3, frames: int = 12, seed: int = 0, subject: str = "S9", valid: bool = False):
    """Small Human3.6M-like sequences built from real camera geometry: random smooth root-relative
    poses, a trajectory 4-6 m in front of the camera, and their exact 2D projections."""
    from common.geometry.camera import normalized_intrinsics, project_to_2d
    from common.datasets.base import Sequence
    from common.geometry.skeleton import h36m_metadata

    rng = np.random.default_rng(seed)
    c = h36m_metadata()["intrinsics"][0]
    cam = normalized_intrinsics(c["center"], c["focal_length"], c["radial_distortion"], c["tangential_distortion"],
                                c["res_w"], c["res_h"])
    base = rng.normal(scale=0.25, size=(1, 17, 3))
    out = []
    for i in range(count):
        n = frames + 3 * i
        wobble = 0.05 * np.sin(np.linspace(0, 3, n))[:, None, None] * rng.normal(size=(1, 17, 3))
        pose = (base + wobble).astype(np.float32)
        pose[:, 0] = 0
        traj = np.zeros((n, 1, 3), np.float32)
        traj[:, 0, 0] = np.linspace(-0.3, 0.3, n)
        traj[:, 0, 2] = 5.0 + 0.5 * i
        x2d = project_to_2d(torch.from_numpy(pose + traj), torch.from_numpy(cam)).numpy()
        out.append(Sequence(subject=subject, action=["Walking 1", "Eating", "Walking"][i % 3], camera=i % 4,
                            pose_2d=x2d, pose_3d=pose, traj=traj, cam=cam,
                            valid=(np.arange(n) % 4 != 0) if valid else None))
    return out


def tiny_model(seed: int = 0, frames: int = 9):
    """A tiny denoiser with every parameter randomised (biases and norms too), so that
    a mistake in any of them shows."""
    from common.model.denoiser import Denoiser, DenoiserConfig

    torch.manual_seed(seed)
    model = Denoiser(DenoiserConfig(frames=frames, channels=32, depth=2, heads=4, drop_path=0.0))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def random_inputs(b=3, h=4, frames=9, seed=1):
    """2D input (b, frames, 17, 2) and three sampler draws (b, h, frames, 17, 3)."""
    g = torch.Generator().manual_seed(seed)
    x2d = torch.randn(b, frames, 17, 2, generator=g) * 0.3
    noise = [torch.randn(b, h, frames, 17, 3, generator=g) for _ in range(3)]
    return x2d, noise


def sample_poses(model, x2d, noise, flip=True, batched=True, **sampler_kw):
    """DDIM sampling with len(noise) iterations and the given draws, Human3.6M flip TTA by default."""
    from common.model.diffusion import DDIMSampler, Diffusion, FlipTTA
    from common.geometry.skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, flip_pose

    sampler = DDIMSampler(Diffusion(), len(noise), **sampler_kw)
    tta = None
    if flip:
        tta = FlipTTA(flip_pose(x2d, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT), H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT,
                      batched=batched)
    return sampler.sample(model, x2d, noise[0].shape[1], flip=tta, noise=noise)


def synthetic_as_h36m(folder: Path, **options) -> Path:
    """Write the synthetic set into folder under the Human3.6M file names the authors' commands
    read (data_3d_h36m.npz, data_2d_h36m_cpn_ft_h36m_dbb.npz); options go to the generator."""
    import shutil

    from common.datasets.synthetic import write_synthetic_h36m

    paths = write_synthetic_h36m(folder, name="synthetic", **options)
    shutil.copy(paths["3d"], folder / "data_3d_h36m.npz")
    shutil.copy(paths["det"], folder / "data_2d_h36m_cpn_ft_h36m_dbb.npz")
    return folder


def save_tiny_checkpoint(path: Path, layout: str = "h36m", keypoints: str | None = None) -> Path:
    """An untrained tiny denoiser (F=9, C=16, D=1) saved as one of our checkpoints whose training
    args say its 2D input layout ('coco' or 'h36m'), for the lifting commands."""
    from common.model.checkpoint import atomic_save, make_checkpoint
    from common.model.denoiser import Denoiser, DenoiserConfig

    torch.manual_seed(0)
    model = Denoiser(DenoiserConfig(frames=9, channels=16, depth=1, heads=2))
    keypoints = keypoints or ("detectron_pt_coco" if layout == "coco" else "cpn_ft_h36m_dbb")
    atomic_save(make_checkpoint(model, args={"keypoints": keypoints, "input_layout": layout}), path)
    return path


def evaluate(model, sampler, sequences, device="cpu", layout=None, desc: str = "evaluating", shard=None, **fields):
    """evaluate_sequences with a model and a sampler built by hand: fields are Sampling fields
    (hypotheses, flip, group, compute_batch, seed; K is the sampler's) and EvalSettings fields
    by name; layout: the joints flip mirrors (Human3.6M's by default)."""
    import dataclasses

    from common.evaluation.evaluate import EvalSettings, evaluate_sequences
    from common.inference.core import InferenceCore, Sampling

    sampling_fields = {f.name for f in dataclasses.fields(Sampling)}
    core = InferenceCore.of_sampler(model, sampler, device, layout,
                                    **{k: v for k, v in fields.items() if k in sampling_fields})
    settings = EvalSettings(**{k: v for k, v in fields.items() if k not in sampling_fields})
    return evaluate_sequences(core, sequences, settings, desc, shard)
