"""The multi-person BlazePose detector ("mediapipe-multi", common/in_the_wild/blazepose.py): the
geometry and decoding in numpy (always run), then the models on the real clip (skip without
mediapipe, LiteRT or PyAV)."""
import math
from pathlib import Path

import numpy as np
import pytest

from common.in_the_wild import blazepose as bp
from common.in_the_wild.detectors import (BLAZEPOSE_TO_COCO, DETECTORS, DetectorUnavailable, MediaPipeDetector,
                                          MultiPersonMediaPipeDetector, make_detector)

CLIP = Path(__file__).parent / "fixtures" / "video" / "sports2d.mp4"
COCO = list(BLAZEPOSE_TO_COCO)


# ---------------------------------------------------------------------------- geometry and decoding

def test_the_anchors_are_the_2254_of_the_person_detector():
    anchors = bp.ssd_anchors()
    assert anchors.shape == (bp.NUM_ANCHORS, 2) == (2254, 2)
    # 28x28 cells of stride 8, two anchors each, row by row; then 14x14 (x2), then 7x7 (x6)
    np.testing.assert_allclose(anchors[:3], [[0.5 / 28, 0.5 / 28]] * 2 + [[1.5 / 28, 0.5 / 28]])
    np.testing.assert_allclose(anchors[28 * 28 * 2], [0.5 / 14, 0.5 / 14])
    np.testing.assert_allclose(anchors[-6:], [[6.5 / 7, 6.5 / 7]] * 6)


def test_the_crop_samples_each_pixel_where_the_roi_matrix_sends_it():
    h, w = 90, 120
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    coords = np.stack([xs, ys, np.zeros_like(xs)], axis=-1)            # each pixel holds its own x, y
    roi = bp.Roi(cx=60.0, cy=40.0, size=50.0, angle=0.6)
    m = bp.roi_matrix(roi, 32)
    crop = bp.sample_affine(coords, m, 32)
    v, u = np.mgrid[0:32, 0:32]
    expected = np.stack([u, v, np.ones_like(u)], axis=-1) @ m.T          # (32, 32, 2)
    np.testing.assert_allclose(crop[..., :2], expected, atol=1e-3)        # bilinear is exact on a ramp
    # the crop's centre is the ROI's centre, and to_image is the same map
    np.testing.assert_allclose(bp.to_image(roi, np.array([16.0, 16.0]), 32), [60.0, 40.0], atol=1e-9)
    np.testing.assert_allclose(bp.to_image(roi, np.array([[3.0, 7.0]]), 32), [m @ [3.0, 7.0, 1.0]], atol=1e-9)
    # the crop's x axis points along the angle, and it spans the ROI's side
    x_axis = bp.to_image(roi, np.array([1.0, 0.5])) - bp.to_image(roi, np.array([0.0, 0.5]))
    np.testing.assert_allclose(x_axis, 50.0 * np.array([math.cos(0.6), math.sin(0.6)]), atol=1e-9)


def test_outside_the_image_the_crop_is_zero_or_repeats_the_edge():
    image = np.full((10, 10, 3), 200, np.uint8)
    far = bp.roi_matrix(bp.Roi(cx=-100.0, cy=-100.0, size=20.0, angle=0.0), 8)
    assert np.all(bp.sample_affine(image, far, 8, border="zero") == 0)
    assert np.all(bp.sample_affine(image, far, 8, border="replicate") == 200)
    with pytest.raises(ValueError, match="border"):
        bp.sample_affine(image, far, 8, border="reflect")


def test_opencv_and_numpy_crops_agree():
    pytest.importorskip("cv2", reason="OpenCV is not installed (mediapipe brings it)")
    ys, xs = np.mgrid[0:60, 0:80]
    smooth = 127 + 100 * np.sin(xs / 7) * np.cos(ys / 5)
    image = np.stack([smooth, 255 - smooth, xs * 3], axis=-1).astype(np.uint8)
    m = bp.roi_matrix(bp.Roi(cx=30.0, cy=35.0, size=70.0, angle=-0.4), 48)
    for border in ("zero", "replicate"):
        fast, slow = bp.warp_affine(image, m, 48, border), bp.sample_affine(image, m, 48, border)
        assert fast.shape == slow.shape == (48, 48, 3) and fast.dtype == np.float32
        # OpenCV weighs in 1/32 pixel steps and rounds to uint8: close, except a little where
        # a sample mixes an edge pixel with the zero border
        gap = np.abs(fast - slow)
        assert gap.mean() < 0.5 and gap.max() <= 1 + 255 / 32


def test_the_roi_is_centred_on_the_hip_sized_by_the_scale_point_and_turned_upright():
    upright = bp.roi_from_alignment((100.0, 200.0), (100.0, 100.0))      # scale point above the hip
    assert upright == pytest.approx(bp.Roi(100.0, 200.0, 2 * 1.25 * 100.0, 0.0))
    lying = bp.roi_from_alignment((100.0, 200.0), (180.0, 200.0))        # scale point to the right
    assert lying.size == pytest.approx(200.0) and lying.angle == pytest.approx(math.pi / 2)
    up_in_crop = bp.to_image(lying, np.array([0.5, 0.0])) - bp.to_image(lying, np.array([0.5, 0.5]))
    np.testing.assert_allclose(up_in_crop, [100.0, 0.0], atol=1e-9)      # the crop's up is the body's up


def test_detections_decode_around_their_anchor_and_merge_by_weighted_nms():
    anchors = bp.ssd_anchors()
    raw = np.zeros((bp.NUM_ANCHORS, 12), np.float32)
    logits = np.full(bp.NUM_ANCHORS, -10.0, np.float32)
    raw[0] = [22.4, -11.2, 44.8, 44.8] + [0.0] * 8                          # offsets in input pixels
    logits[0] = 3.0
    boxes, keypoints, scores = bp.decode_detections(raw, logits, anchors)
    centre = anchors[0] + [0.1, -0.05]
    np.testing.assert_allclose(boxes, [[*(centre - 0.1), *(centre + 0.1)]], atol=1e-6)
    np.testing.assert_allclose(keypoints[0], [anchors[0]] * 4, atol=1e-6)
    assert scores == pytest.approx([1 / (1 + math.exp(-3.0))])

    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    points = np.array([[[0.0, 0.0]], [[3.0, 3.0]], [[55.0, 55.0]]])
    kept_boxes, kept_points, kept_scores = bp.weighted_nms(boxes, points, np.array([0.6, 0.3, 0.9]))
    np.testing.assert_allclose(kept_scores, [0.9, 0.6])                  # best first, scores their own
    np.testing.assert_allclose(kept_boxes[1], [1 / 3, 0, 31 / 3, 10])    # weighted 2:1
    np.testing.assert_allclose(kept_points[1], [[1.0, 1.0]])


def test_the_heatmap_pulls_a_confident_landmark_to_its_peak():
    heatmap = np.full((64, 64, 2), -20.0, np.float32)
    heatmap[30, 40, 0] = 20.0                                            # landmark 0: a sharp peak nearby
    xy = np.array([[41.5 / 64, 31.2 / 64], [0.5, 0.5]], np.float32)       # landmark 1: no confident cell
    out = bp.refine_with_heatmap(xy, heatmap)
    np.testing.assert_allclose(out[0], [40 / 64, 30 / 64], atol=1e-5)
    np.testing.assert_allclose(out[1], xy[1])


def test_wide_frames_are_searched_in_overlapping_squares():
    assert bp.detection_regions(500, 480) == [bp.frame_roi(500, 480)]
    squares = bp.detection_regions(640, 360)
    assert len(squares) == 3 and all(r.size == 360 and r.cy == 180 and r.angle == 0 for r in squares)
    lefts = [r.cx - 180 for r in squares]
    assert lefts[0] == 0 and lefts[-1] + 360 == 640 and np.all(np.diff(lefts) <= 180)
    tall = bp.detection_regions(360, 1280)
    assert all(r.size == 360 and r.cx == 180 for r in tall) and tall[-1].cy + 180 == 1280


def test_auto_finds_every_person_when_litert_is_there_else_one(monkeypatch):
    assert list(DETECTORS) == ["mediapipe-multi", "mediapipe"] and DETECTORS["mediapipe"] is MediaPipeDetector
    assert DETECTORS["mediapipe-multi"] is MultiPersonMediaPipeDetector
    assert MultiPersonMediaPipeDetector.coco_from == BLAZEPOSE_TO_COCO
    monkeypatch.setattr(MultiPersonMediaPipeDetector, "available", classmethod(lambda cls: False))
    monkeypatch.setattr(MediaPipeDetector, "available", classmethod(lambda cls: True))
    monkeypatch.setattr(MediaPipeDetector, "__init__", lambda self: None)
    assert type(make_detector("auto")) is MediaPipeDetector
    with pytest.raises(DetectorUnavailable, match="needs MediaPipe and LiteRT"):
        make_detector("mediapipe-multi")


# ---------------------------------------------------------------------------- the models on real frames

@pytest.fixture(scope="module")
def clip_frames():
    pytest.importorskip("av", reason="PyAV is not installed (pip install -r requirements-video.txt)")
    if not MultiPersonMediaPipeDetector.available():
        pytest.skip("mediapipe-multi needs mediapipe and ai-edge-litert (pip install -r requirements-video.txt)")
    from common.storage.video import VideoFrames

    wanted = {20, 100, 116, 132, *range(60, 72)}
    frames = {}
    for i, frame in enumerate(VideoFrames(CLIP)):
        if i in wanted:
            frames[i] = frame
        if i >= max(wanted):
            return frames


@pytest.fixture(scope="module")
def multi(clip_frames):
    with MultiPersonMediaPipeDetector() as detector:
        yield detector


def test_a_black_frame_has_nobody(multi):
    multi.start_video()
    assert multi.detect(np.zeros((360, 640, 3), np.uint8)) == []
    with pytest.raises(ValueError, match=r"RGB frames \(h, w, 3\) uint8"):
        multi.detect(np.zeros((360, 640), np.uint8))


def test_both_people_of_the_clip_are_followed_and_the_detector_runs_every_fifth_frame(multi, clip_frames):
    multi.start_video()
    tracker = multi._tracker
    calls = []
    find = tracker.models.find_people
    tracker.models.find_people = lambda image: calls.append(len(calls)) or find(image)
    try:
        found = [multi.detect(clip_frames[i]) for i in range(60, 72)]
    finally:
        del tracker.models.find_people
    assert [len(people) for people in found] == [2] * 12             # the jumper and the walker
    assert len(calls) == 3                                            # frames 0, 5 and 10 of the 12
    for people in found:
        assert all(p.shape == (33, 3) and p.dtype == np.float32 for p in people)
        assert all(0 <= p[:, 2].min() and p[:, 2].max() <= 1 for p in people)
        hips = [p[[23, 24], :2].mean(axis=0) for p in people]
        assert np.linalg.norm(hips[0] - hips[1]) > 150                  # two people, not one twice
    # followed people keep their place in the list
    sides = {bool(people[0][23, 0] < people[1][23, 0]) for people in found}
    assert len(sides) == 1


def test_keypoints_agree_with_the_single_person_detector(multi, clip_frames):
    with MediaPipeDetector() as single:
        for i in (100, 116, 132):                                         # the walker, alone in view
            single.start_video()
            multi.start_video()
            reference = single.detect(clip_frames[i])
            people = multi.detect(clip_frames[i])
            assert len(reference) == 1 and len(people) >= 1
            gaps = [np.median(np.linalg.norm(p[COCO, :2] - reference[0][COCO, :2], axis=1)) for p in people]
            assert min(gaps) < 4.0, (i, gaps)                              # pixels, on a 640x360 frame


def test_a_person_beside_their_mirror_image_is_two_people(multi, clip_frames):
    frame = clip_frames[20]                                               # the jumper alone, at x ~ 233
    multi.start_video()
    alone = multi.detect(frame)
    twice = np.ascontiguousarray(np.concatenate([frame[:, :320], frame[:, :320][:, ::-1]], axis=1))
    multi.start_video()
    people = sorted(multi.detect(twice), key=lambda p: p[0, 0])
    assert len(alone) == 1 and len(people) == 2
    left, right = people
    assert np.median(np.linalg.norm(left[COCO, :2] - alone[0][COCO, :2], axis=1)) < 6.0
    assert abs(left[0, 0] + right[0, 0] - 639) < 10 and abs(left[0, 1] - right[0, 1]) < 10   # noses mirror
