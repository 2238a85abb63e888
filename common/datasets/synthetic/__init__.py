"""Synthetic Human3.6M: made-up motion written in exactly the Human3.6M file format, so the
demo, the tests and the whole training / evaluation path run without the licensed data (the
files are read by common.datasets.h36m like the real ones).

motion.py animates a 32-joint skeleton; files.py projects it with the real cameras and writes
the files; coco_face.py adds the COCO-17 face points for COCO-layout 2D.
"""
from .coco_face import coco_points
from .files import (COCO_METADATA, DEFAULT_ACTIONS, DEFAULT_FRAMES, DEFAULT_SEED, GENERATOR_VERSION, METADATA,
                    SUBJECTS, detections, ensure_synthetic, project_to_pixels, synthetic_paths, write_synthetic_coco,
                    write_synthetic_h36m)
from .motion import STYLES, Style, animate, subject_bones
from .dataset import SyntheticDataset

__all__ = ["COCO_METADATA", "DEFAULT_ACTIONS", "DEFAULT_FRAMES", "DEFAULT_SEED", "GENERATOR_VERSION", "METADATA",
           "STYLES", "SUBJECTS", "Style", "SyntheticDataset", "animate", "coco_points", "detections", "ensure_synthetic",
           "project_to_pixels", "subject_bones", "synthetic_paths", "write_synthetic_coco", "write_synthetic_h36m"]
