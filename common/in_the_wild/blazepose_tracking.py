"""Following several people with BlazePose (the "mediapipe-multi" detector): the two models of
the mediapipe wheel run by LiteRT (BlazePoseModels), and the tracker that gives each person their
own region from frame to frame (MultiPoseTracker). The decoding and the geometry of the regions
are in blazepose.py; blazepose.py's docstring describes the whole pipeline."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .blazepose import (DETECTOR_MODEL, LANDMARK_MODEL, DETECTOR_SIZE, LANDMARK_SIZE, NUM_LANDMARKS, NUM_ANCHORS,
                        Roi, sigmoid, ssd_anchors, decode_detections, weighted_nms, roi_from_alignment,
                        detection_regions, roi_matrix, to_image, warp_affine, refine_with_heatmap)


def mediapipe_folder() -> Path | None:
    """The installed mediapipe package's folder (found without importing it), or None."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def models_available() -> bool:
    """LiteRT and both model files are installed."""
    folder = mediapipe_folder()
    return (importlib.util.find_spec("ai_edge_litert") is not None and folder is not None
            and (folder / DETECTOR_MODEL).is_file() and (folder / LANDMARK_MODEL).is_file())


class Person(NamedTuple):
    """One person found in a frame."""

    landmarks: np.ndarray      # (33, 3) x, y pixels, visibility in [0, 1]
    presence: float            # the landmark model's confidence that a person fills the ROI
    roi: Roi                   # the ROI the landmarks came from
    next_roi: Roi              # the ROI for the next frame, from the auxiliary landmarks


class BlazePoseModels:
    """The person detector and the landmark model, one LiteRT interpreter each."""

    def __init__(self, num_threads: int | None = None, min_detection_score: float = 0.5):
        from ai_edge_litert.interpreter import Interpreter   # optional: ai-edge-litert (the video extra)

        folder = mediapipe_folder()
        if folder is None:
            raise FileNotFoundError("BlazePose's models come with mediapipe: pip install -r requirements-video.txt")
        threads = num_threads or min(4, os.cpu_count() or 1)
        self.detector = Interpreter(model_path=str(folder / DETECTOR_MODEL), num_threads=threads)
        self.landmarker = Interpreter(model_path=str(folder / LANDMARK_MODEL), num_threads=threads)
        for model in (self.detector, self.landmarker):
            model.allocate_tensors()
        self._det_in = self.detector.get_input_details()[0]["index"]
        self._det_boxes = self._output(self.detector, (1, NUM_ANCHORS, 12))
        self._det_scores = self._output(self.detector, (1, NUM_ANCHORS, 1))
        self._lm_in = self.landmarker.get_input_details()[0]["index"]
        self._lm_points = self._output(self.landmarker, (1, 39 * 5))
        self._lm_presence = self._output(self.landmarker, (1, 1))
        self._lm_heatmap = self._output(self.landmarker, (1, 64, 64, 39))
        self.anchors = ssd_anchors()
        self.min_detection_score = min_detection_score

    @staticmethod
    def _output(model, shape) -> int:
        """The index of the model's output of this shape (the outputs' names carry no meaning)."""
        for detail in model.get_output_details():
            if tuple(detail["shape"]) == shape:
                return detail["index"]
        raise ValueError(f"the BlazePose model has no output of shape {shape}: is mediapipe 0.10.21 installed?")

    def find_people(self, image: np.ndarray) -> list[Roi]:
        """The ROI of every person the detector finds in an RGB frame (h, w, 3) uint8, best first:
        the detector looks at each of detection_regions, and detections of one person in
        overlapping regions merge (weighted non-maximum suppression, in image pixels)."""
        h, w = image.shape[:2]
        found = [self._detect(image, region) for region in detection_regions(w, h)]
        boxes, keypoints, scores = (np.concatenate(parts) for parts in zip(*found))
        _, keypoints, _ = weighted_nms(boxes, keypoints, scores)
        return [roi_from_alignment(points[0], points[1]) for points in keypoints]

    def _detect(self, image: np.ndarray, region: Roi):
        """The detector on one square region: boxes (K, 4), keypoints (K, 4, 2) in image pixels, scores (K,)."""
        crop = warp_affine(image, roi_matrix(region, DETECTOR_SIZE), DETECTOR_SIZE, border="zero")
        self.detector.set_tensor(self._det_in, (crop * (2 / 255) - 1)[None])          # values in [-1, 1]
        self.detector.invoke()
        boxes, keypoints, scores = decode_detections(self.detector.get_tensor(self._det_boxes)[0],
                                                     self.detector.get_tensor(self._det_scores)[0],
                                                     self.anchors, self.min_detection_score)
        corners = to_image(region, boxes.reshape(-1, 2, 2)).reshape(-1, 4)           # regions are upright
        return corners, to_image(region, keypoints), scores

    def landmarks(self, image: np.ndarray, roi: Roi) -> Person:
        """The landmark model on one ROI of an RGB frame."""
        crop = warp_affine(image, roi_matrix(roi, LANDMARK_SIZE), LANDMARK_SIZE, border="replicate")
        self.landmarker.set_tensor(self._lm_in, (crop * (1 / 255))[None])
        self.landmarker.invoke()
        raw = self.landmarker.get_tensor(self._lm_points).reshape(39, 5)
        presence = float(self.landmarker.get_tensor(self._lm_presence).reshape(()))
        xy = refine_with_heatmap(raw[:, :2] / LANDMARK_SIZE, self.landmarker.get_tensor(self._lm_heatmap)[0])
        xy = to_image(roi, xy)                                              # (39, 2) pixels
        points = np.concatenate([xy[:NUM_LANDMARKS], sigmoid(raw[:NUM_LANDMARKS, 3:4])], axis=1)
        return Person(points.astype(np.float32), presence, roi, roi_from_alignment(xy[33], xy[34]))


def inside(point, person: Person, margin: float = 0.0) -> bool:
    """A point (pixels) within the box of a person's landmarks, widened by `margin` of their ROI's side."""
    pad = margin * person.roi.size
    lo = person.landmarks[:, :2].min(axis=0) - pad
    hi = person.landmarks[:, :2].max(axis=0) + pad
    return bool(lo[0] <= point[0] <= hi[0] and lo[1] <= point[1] <= hi[1])


def mid_hip(person: Person) -> np.ndarray:
    return person.landmarks[[23, 24], :2].mean(axis=0)


def same_person(a: Person, b: Person, distance: float = 0.15) -> bool:
    """Two results on the same person: their landmarks lie, in the median, closer than
    `distance` of the larger ROI's side (two people side by side lie more than half of it apart)."""
    gap = np.median(np.linalg.norm(a.landmarks[:, :2] - b.landmarks[:, :2], axis=1))
    return bool(gap < distance * max(a.roi.size, b.roi.size))


def overlaps(a: Person, b: Person) -> bool:
    """A newly detected result that is (most likely) a poor second fit of a person already found:
    the same person, or one's mid-hip inside the other's landmarks."""
    return same_person(a, b) or inside(mid_hip(a), b) or inside(mid_hip(b), a)


class MultiPoseTracker:
    """Every person in each frame of one video, each followed from frame to frame by their own
    ROI (as MediaPipe follows its one person); the person detector looks for newcomers on the
    first frame, every `redetect_every` frames, whenever nobody is followed and whenever
    someone was lost, and a detection on someone already found is dropped."""

    def __init__(self, models: BlazePoseModels, redetect_every: int = 5, min_presence: float = 0.5,
                 max_people: int = 10):
        if redetect_every < 1:
            raise ValueError(f"redetect_every={redetect_every} must be 1 or more (frames)")
        self.models = models
        self.redetect_every = redetect_every
        self.min_presence = min_presence
        self.max_people = max_people
        self.reset()

    def reset(self) -> None:
        """Forget the people followed so far (a new video)."""
        self.tracks: list[Roi] = []       # each followed person's ROI for the next frame
        self.since_detection = 0          # frames since the detector last ran
        self.shape = None

    def step(self, image: np.ndarray) -> list[Person]:
        """The people in the next frame: those followed from earlier frames first, in their order."""
        if image.shape != self.shape:
            self.reset()
            self.shape = image.shape
        people = self._add(image, self.tracks, [], same_person)
        if not people or len(people) < len(self.tracks) or self.since_detection >= self.redetect_every - 1:
            self.since_detection = 0
            found = [roi for roi in self.models.find_people(image)
                     if not any(inside((roi.cx, roi.cy), p, margin=0.05) for p in people)]
            people = self._add(image, found, people, overlaps)
        else:
            self.since_detection += 1
        self.tracks = [p.next_roi for p in people]
        return people

    def _add(self, image: np.ndarray, rois: list[Roi], people: list[Person], duplicate) -> list[Person]:
        """people, then the person in each ROI where the landmark model finds one that is not a
        duplicate(new, earlier) of one already there."""
        people = list(people)
        for roi in rois:
            if len(people) >= self.max_people:
                break
            person = self.models.landmarks(image, roi)
            if person.presence >= self.min_presence and person.next_roi.size > 1 \
                    and not any(duplicate(person, other) for other in people):
                people.append(person)
        return people
