"""D3DP: diffusion-based 3D human pose estimation with joint-wise reprojection aggregation.

Installed, this package is `d3dp` (in a clone the entry scripts import it as `common`):

    import d3dp
    lifter = d3dp.Lifter.from_checkpoint("best_epoch.bin", device="cpu")
    result = lifter.lift(keypoints, image_size=(1920, 1080), hypotheses=5, iterations=5, seed=0)
    report = d3dp.evaluate_checkpoint("best_epoch.bin", d3dp.SyntheticDataset("data"), num_proposals=5, sampling_timesteps=5)

The names below are imported on first use, so `import d3dp` stays light.
"""
from importlib import import_module

_EXPORTS = {
    "Lifter": "api", "LiftResult": "api", "PeopleResult": "api", "evaluate_checkpoint": "api", "read_result": "api",
    "RunConfig": "run.config",
    "Report": "evaluation.report",
    "InferenceCore": "inference.core", "Sampling": "inference.core",
    "Dataset": "datasets.base", "Layout": "geometry.skeleton", "Selection": "datasets.base", "Sequence": "datasets.base",
    "DatasetError": "datasets.base",
    "H36MDataset": "datasets.h36m", "MPIINF3DHPDataset": "datasets.mpi_inf_3dhp",
    "SyntheticDataset": "datasets.synthetic",
    "Denoiser": "model.denoiser", "DenoiserConfig": "model.denoiser",
    "CheckpointError": "model.checkpoint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
