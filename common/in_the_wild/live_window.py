"""What live lifting does with each frame: the hand-off between its threads (Handoff), the causal
window of the last F frames' 2D (CausalWindow), one window lifted through the InferenceCore and
aggregated as offline lifting aggregates a clip (WindowLifter), and causal smoothing (Smoother).
live.py's docstring describes the whole pipeline."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..geometry.coco import coco_to_h36m
from ..inference.core import InferenceCore
from .filters import FILTERS, Filter, OneEuro
from .lifting import LiftOptions, lift_pixels
from .live_source import Frame
from .root_depth import default_intrinsics


class Handoff:
    """Items passed from one thread to the next. keep_all: the taker gets every item put since
    its last take; otherwise only the newest, the older ones counted in `replaced`. close(error)
    ends it: take() gives what is left, then [] (or raises the error)."""

    def __init__(self, keep_all: bool):
        self.keep_all = keep_all
        self._cond = threading.Condition()
        self._items: list = []
        self._closed = False
        self.error: BaseException | None = None
        self.replaced = 0

    def put(self, item) -> None:
        with self._cond:
            if self._closed:
                return
            if not self.keep_all:
                self.replaced += len(self._items)
                self._items.clear()
            self._items.append(item)
            self._cond.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        with self._cond:
            if not self._closed:
                self._closed, self.error = True, error
            self._cond.notify_all()

    def take(self, poll: float = 0.1) -> list:
        """Wait for items (waking every `poll` seconds, so that signals reach the main thread)."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait(poll)
            items, self._items = self._items, []
            if not items and self.error is not None:
                raise self.error
            return items


@dataclass
class Detection:
    """What the detector found in one frame: people as COCO-17 (17, 3) x, y pixels, confidence."""

    frame: Frame
    people: list
    detect_s: float


# ---------------------------------------------------------------------------- the causal window

class CausalWindow:
    """The last F frames' COCO-17 keypoints (pixels) and confidence of the person followed.

    push() adds a frame's detections: the person nearest the last one (the most confident when
    there is no last one); joints missing or below `threshold` hold their last position above it
    (confidence 0); a frame without anyone holds the last keypoints (not detected) for up to
    `max_gap` frames, after which the person is lost and the window empties."""

    def __init__(self, frames: int, threshold: float = 0.3, max_gap: int = 30):
        self.frames, self.threshold, self.max_gap = frames, threshold, max_gap
        self.reset()

    def reset(self) -> None:
        self._points: list[np.ndarray] = []      # (17, 3) per frame, newest last
        self._detected: list[bool] = []
        self._held: np.ndarray | None = None     # (17, 3) the last valid position of every joint
        self.missing = 0                         # frames since the last detection

    @property
    def has_person(self) -> bool:
        return bool(self._points)

    @property
    def detected(self) -> bool:
        """Whether the newest frame's keypoints were detected (not held)."""
        return bool(self._detected and self._detected[-1])

    def push(self, people: list) -> bool:
        """Add the newest frame's detections (COCO-17 (17, 3) each); returns has_person."""
        person = self._choose([np.asarray(p, np.float32) for p in people])
        if person is None:
            self.missing += 1
            if self._held is None:
                return False
            if self.missing > self.max_gap:
                self.reset()
                return False
            held = self._held.copy()
            held[:, 2] = 0
            self._append(held, False)
            return True
        self.missing = 0
        valid = np.isfinite(person).all(axis=1) & (person[:, 2] >= self.threshold)
        if self._held is None:
            self._held = np.where(np.isfinite(person), person, 0).astype(np.float32)
        points = person.copy()
        points[~valid, :2] = self._held[~valid, :2]
        points[~valid, 2] = 0
        self._held[valid] = person[valid]
        self._append(points, True)
        return True

    def _choose(self, people: list) -> np.ndarray | None:
        people = [p for p in people if np.isfinite(p[:, :2]).any()]
        if not people:
            return None
        if self._held is None or len(people) == 1:
            return max(people, key=lambda p: float(np.nanmean(p[:, 2])))
        centre = self._held[:, :2].mean(axis=0)
        return min(people, key=lambda p: float(np.linalg.norm(np.nanmean(p[:, :2], axis=0) - centre)))

    def _append(self, points: np.ndarray, detected: bool) -> None:
        self._points.append(points)
        self._detected.append(detected)
        del self._points[:-self.frames], self._detected[:-self.frames]

    def keypoints(self) -> np.ndarray:
        """(F, 17, 3) COCO-17 x, y pixels and confidence, oldest first, the newest last; before F
        frames have arrived, the first is repeated in front."""
        pad = [self._points[0]] * (self.frames - len(self._points))
        return np.stack(pad + self._points)


# ---------------------------------------------------------------------------- lifting one window

@dataclass
class WindowPose:
    """The last frame of one lifted window."""

    poses: dict                 # mode -> (17, 3) root-relative metres, camera space (Human3.6M-17)
    root: np.ndarray            # (3,) metres, camera space
    joints_2d: np.ndarray       # (17, 2) pixels, Human3.6M-17 (the 3D output's joints)
    confidence: np.ndarray      # (17,) of joints_2d
    hypotheses: np.ndarray      # (K, H, 17, 3) root-relative metres
    uncertainty: np.ndarray | None    # (17,) mm around the J-Agg joints; None for one hypothesis


class WindowLifter:
    """One causal window's last frame: the window lifted exactly as lifting.lift_pixels lifts a
    clip (the same normalisation, virtual camera, sampling through the InferenceCore and
    aggregation), its last frame kept."""

    def __init__(self, core: InferenceCore, size: tuple[int, int], options: LiftOptions = LiftOptions()):
        self.core, self.size, self.options = core, size, options
        self.cam = default_intrinsics(*size, options.focal)            # the camera JPMA assumes (the header)

    def lift(self, pixels: np.ndarray, confidence: np.ndarray) -> WindowPose:
        """pixels (F, 17, 2) and confidence (F, 17) in the model's input layout."""
        if len(pixels) != self.core.frames:
            raise ValueError(f"a causal window has {self.core.frames} frames, not {len(pixels)}")
        clip = lift_pixels(self.core, pixels, confidence, np.arange(len(pixels)), self.size, self.options)
        uv, conf = pixels[-1], confidence[-1]
        if self.core.layout.input_name == "coco":                       # the 2D of the 3D output's joints
            uv, conf = coco_to_h36m(uv, conf)
        return WindowPose({mode: p[-1] for mode, p in clip.poses.items()}, clip.trajectory[-1], uv, conf,
                          clip.hypotheses[-1], None if clip.uncertainty is None else clip.uncertainty[-1])


# ---------------------------------------------------------------------------- causal smoothing

# The filters of filters.py that see only the past, by name: what a live stream can use.
CAUSAL_FILTERS = {"one-euro": OneEuro}


def check_causal(spec: Filter | None) -> Filter | None:
    """spec, or a clear error when it is not causal."""
    if spec is not None and spec.name not in CAUSAL_FILTERS:
        offline = ", ".join(n for n in FILTERS if n not in CAUSAL_FILTERS)
        raise ValueError(f"--filter {spec.name} is not causal: it smooths each frame with the frames after it, which "
                         f"a live stream does not have yet ({offline} work on files only); use --filter "
                         f"{', '.join(CAUSAL_FILTERS)} (e.g. one-euro:min_cutoff=1,beta=0.01) or no filter")
    return spec


class Smoother:
    """A causal filter on the shown pose and on the root: one state each."""

    def __init__(self, spec: Filter, fps: float):
        make = CAUSAL_FILTERS[check_causal(spec).name]
        self.spec, self.fps = spec, fps
        self.pose, self.root = make(**dict(spec.params)), make(**dict(spec.params))
        self.last_index: int | None = None

    def __call__(self, index: int, pose: np.ndarray, root: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dt = (1 if self.last_index is None else index - self.last_index) / self.fps
        self.last_index = index
        return self.pose(pose, dt).astype(np.float32), self.root(root, dt).astype(np.float32)

    def describe(self) -> str:
        return f"{self.spec.describe()} at {self.fps:g} fps"


