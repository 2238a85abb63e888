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
