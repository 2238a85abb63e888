"""In-the-wild input: detector keypoint files, COCO -> model joint layout, and the camera
and root trajectory that JPMA needs when no ground truth exists."""
from ..geometry.coco import coco_skeleton, coco_to_h36m, keypoints_for_model
from .keypoints import Keypoints2D, fill_missing_joints, read_keypoints
from .root_depth import default_intrinsics, estimate_root_trajectory

__all__ = ["Keypoints2D", "read_keypoints", "fill_missing_joints", "coco_to_h36m",
           "keypoints_for_model", "coco_skeleton", "default_intrinsics", "estimate_root_trajectory"]
