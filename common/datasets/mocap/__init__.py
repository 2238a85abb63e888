"""Real motion capture in: readers of the files users bring (BVH, CMU ASF/AMC, DeepMimic,
joint-position arrays), each turned into Human3.6M-17 joints (motion.Motion) on the floor at
50 fps, and a folder of them turned into a training set in the Human3.6M file format
(training_set, prepare_motion.py)."""
from .motion import H36M_NAMES, TRAINING_FPS, Motion, MotionError, normalized
from .readers import SUFFIXES, motion_files, read_motion

__all__ = ["H36M_NAMES", "SUFFIXES", "TRAINING_FPS", "Motion", "MotionError", "motion_files", "normalized",
           "read_motion"]
