"""The synthetic set as a data set: written on first use, then read like Human3.6M."""
from __future__ import annotations

from ..h36m import H36MDataset
from .files import ensure_synthetic


class SyntheticDataset(H36MDataset):
    """The synthetic Human3.6M-format set in data_dir (generated there when absent), with the
    Human3.6M-layout 2D detections `-k det` unless another keypoints file is named."""

    def __init__(self, data_dir="data", keypoints: str = "det", name: str = "synthetic"):
        ensure_synthetic(data_dir, name=name)
        super().__init__(data_dir, keypoints, name)
