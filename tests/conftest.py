"""Shared test fixtures: the authors' conformance vectors (skipped when ../shared is absent)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURE_A = SHARED / "fixtures" / "d3dp_reference_A"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fixture_a():
    """(config dict, vectors dict of tensors, folder) of conformance set A."""
    if not (FIXTURE_A / "vectors.npz").is_file():
        pytest.skip(f"conformance vectors not found at {FIXTURE_A}")
    cfg = json.loads((FIXTURE_A / "config.json").read_text())
    with np.load(FIXTURE_A / "vectors.npz") as v:
        vectors = {k: torch.from_numpy(v[k]) for k in v.files}
    return cfg, vectors, FIXTURE_A


@pytest.fixture(scope="session")
def model_a(fixture_a):
    """The denoiser of set A, loaded from the authors' checkpoint, in eval mode."""
    from common.checkpoint import load_denoiser
    from common.denoiser import DenoiserConfig

    cfg, _, folder = fixture_a
    model, _ = load_denoiser(folder / "checkpoint.bin", DenoiserConfig(
        frames=cfg["frames"], channels=cfg["channels"], depth=cfg["depth"], drop_path=0.0))
    return model.eval()


def make_sequences(count: int = 3, frames: int = 12, seed: int = 0, subject: str = "S9", valid: bool = False):
    """Small Human3.6M-like sequences built from real camera geometry: random smooth root-relative
    poses, a trajectory 4-6 m in front of the camera, and their exact 2D projections."""
    from common.camera import normalized_intrinsics, project_to_2d
    from common.datasets.base import Sequence
    from common.skeleton import h36m_metadata

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
