"""2D pose detectors for video frames: one small interface, one class per backend.

A detector takes an RGB frame (h, w, 3) uint8 and returns the people it finds, each as its
own keypoints (J, 3): x, y in pixels and a confidence in [0, 1]. `to_coco` maps them to the
COCO-17 keypoints the lifting models take (via its table `coco_from`). To add a backend
(RTMPose, ViTPose, ...): subclass Detector, set name, keypoint_names and coco_from, implement
detect (and start_video when it tracks across frames), and add it to DETECTORS.

MediaPipe's BlazePose (`pip install mediapipe`) finds one person per frame, tracking it from
frame to frame; its 33 landmarks include the 17 COCO keypoints (same anatomical points, the
person's own left and right), see BLAZEPOSE_TO_COCO. "mediapipe-multi" (the default when
LiteRT, `pip install ai-edge-litert`, is installed) runs the same two models through LiteRT
(blazepose.py) and finds every person in each frame.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from abc import ABC, abstractmethod

import numpy as np

VIDEO_HINT = "pip install -r requirements-video.txt (mediapipe and PyAV)"

BLAZEPOSE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index")

# COCO-17 joint k is BlazePose landmark BLAZEPOSE_TO_COCO[k] (the same point under the same name).
BLAZEPOSE_TO_COCO = (
    0,    # nose
    2,    # left_eye (BlazePose's eye centre, between its inner and outer eye corners)
    5,    # right_eye
    7,    # left_ear
    8,    # right_ear
    11,   # left_shoulder
    12,   # right_shoulder
    13,   # left_elbow
    14,   # right_elbow
    15,   # left_wrist
    16,   # right_wrist
    23,   # left_hip
    24,   # right_hip
    25,   # left_knee
    26,   # right_knee
    27,   # left_ankle
    28,   # right_ankle
)


class DetectorUnavailable(ValueError):
    """A detector whose package is not installed."""


class Detector(ABC):
    """A 2D pose detector for the frames of one video at a time."""

    name: str = ""
    keypoint_names: tuple = ()     # the detector's own keypoints, in its order
    coco_from: tuple = ()          # COCO-17 joint k = keypoint coco_from[k]

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """People in one RGB frame (h, w, 3) uint8: a list of (J, 3) float32 arrays, x and y in
        pixels, confidence in [0, 1]; empty when nobody is found."""

    def start_video(self) -> None:
        """Forget what earlier frames taught (a tracking detector's state); called before a video."""

    def close(self) -> None:
        """Release the backend's resources."""

    def to_coco(self, keypoints: np.ndarray) -> np.ndarray:
        """The detector's keypoints (..., J, 3) -> COCO-17 (..., 17, 3)."""
        return np.asarray(keypoints)[..., list(self.coco_from), :]

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MediaPipeDetector(Detector):
    """MediaPipe Pose (BlazePose GHUM, the full model that ships in the mediapipe wheel, so it
    runs offline): one person per frame, tracked between frames; confidence = landmark
    visibility."""

    name = "mediapipe"
    keypoint_names = BLAZEPOSE_NAMES
    coco_from = BLAZEPOSE_TO_COCO
    package = "mediapipe"

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        if not self.available():
            raise DetectorUnavailable(f"the {self.name} detector needs MediaPipe: {VIDEO_HINT}, or give "
                                      f"the 2D keypoints with --keypoints-file")
        self.options = dict(min_detection_confidence=min_detection_confidence,
                            min_tracking_confidence=min_tracking_confidence)
        self._pose = None

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec(cls.package) is not None

    def start_video(self) -> None:
        self.close()
        with quiet_native_stderr():
            from mediapipe.python.solutions import pose

            # model_complexity=1 is the model inside the wheel (0 and 2 are downloaded on first use).
            self._pose = pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                                   enable_segmentation=False, **self.options)
        self._first = True

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        if self._pose is None:
            self.start_video()
        h, w = image.shape[:2]
        with quiet_native_stderr() if self._first else contextlib.nullcontext():
            result = self._pose.process(np.ascontiguousarray(image))   # the first call logs its set-up
        self._first = False
        if result.pose_landmarks is None:
            return []
        lm = result.pose_landmarks.landmark
        points = np.array([(p.x * w, p.y * h, p.visibility) for p in lm], dtype=np.float32)
        return [points]

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None


class MultiPersonMediaPipeDetector(Detector):
    """BlazePose for every person in a frame: MediaPipe's person detector and full landmark
    model (inside the mediapipe wheel, so it runs offline) run through LiteRT, each person
    followed from frame to frame by their own region (blazepose_tracking.MultiPoseTracker); the same
    33 landmarks as "mediapipe", confidence = landmark visibility, no smoothing."""

    name = "mediapipe-multi"
    keypoint_names = BLAZEPOSE_NAMES
    coco_from = BLAZEPOSE_TO_COCO

    def __init__(self, redetect_every: int = 5, num_threads: int | None = None,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        if not self.available():
            raise DetectorUnavailable(f"the {self.name} detector needs MediaPipe and LiteRT (ai-edge-litert): "
                                      f"{VIDEO_HINT}, or give the 2D keypoints with --keypoints-file")
        self.options = dict(redetect_every=redetect_every, min_presence=min_tracking_confidence)
        self.model_options = dict(num_threads=num_threads, min_detection_score=min_detection_confidence)
        self._tracker = None

    @classmethod
    def available(cls) -> bool:
        from .blazepose_tracking import models_available

        return MediaPipeDetector.available() and models_available()

    def start_video(self) -> None:
        if self._tracker is None:
            from .blazepose_tracking import BlazePoseModels, MultiPoseTracker

            with quiet_native_stderr():                               # LiteRT's start-up log lines
                self._tracker = MultiPoseTracker(BlazePoseModels(**self.model_options), **self.options)
        self._tracker.reset()

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"the {self.name} detector takes RGB frames (h, w, 3) uint8, not {image.dtype} "
                             f"{image.shape}")
        if self._tracker is None:
            self.start_video()
        return [person.landmarks for person in self._tracker.step(image)]

    def close(self) -> None:
        self._tracker = None


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what native code writes to the process's stderr meanwhile (MediaPipe's and
    TensorFlow Lite's start-up log lines); Python exceptions still propagate."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):                     # stderr replaced (e.g. captured)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


# name -> class; "auto" picks the first available: every person when LiteRT is there, else one a frame
DETECTORS = {"mediapipe-multi": MultiPersonMediaPipeDetector, "mediapipe": MediaPipeDetector}


def available_detectors() -> list[str]:
    return [name for name, cls in DETECTORS.items() if cls.available()]


def make_detector(name: str = "auto") -> Detector:
    """A detector by name (--detector); "auto": the first of DETECTORS that is installed."""
    if isinstance(name, Detector):
        return name
    if name == "auto":
        found = available_detectors()
        if not found:
            raise DetectorUnavailable(f"no 2D pose detector is installed: {VIDEO_HINT}, or give the 2D keypoints "
                                      f"with --keypoints-file")
        name = found[0]
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}: choose one of {', '.join(['auto', *DETECTORS])}")
    return DETECTORS[name]()

