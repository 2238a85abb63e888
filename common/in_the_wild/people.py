"""Every person of a video's detections: people_from_detections links a detector's people per
frame into people (tracks.link_by_position) and turns each into that person's keypoints
(keypoints_of_track), with ids in the order people appear."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .keypoints import NUM_JOINTS, Keypoints2D, fill_clip
from .tracks import centre_and_size, link_by_position, longest_segment, track_array, track_rank


def keypoints_of_track(track: dict, source: str, threshold: float = 0.3, max_gap: int = 30,
                       max_missing: float = 0.5, res_w: int | None = None, res_h: int | None = None,
                       warnings: list | None = None) -> Keypoints2D:
    """One track {frame: (score, (17, 3))} -> Keypoints2D over its frames: the longest stretch
    without a gap over max_gap, frames without the person interpolated (refused above max_missing)."""
    warnings = [] if warnings is None else warnings
    track = longest_segment(track, max_gap, Path(source), warnings, strict=False)
    frame_ids = np.arange(min(track), max(track) + 1, dtype=np.int64)
    return fill_clip(track_array(track, frame_ids, NUM_JOINTS), frame_ids, res_w, res_h, warnings, threshold,
                     max_missing, source, "the person is not followed through the video")


def people_from_detections(per_frame: dict, source: str, threshold: float = 0.3, max_gap: int = 30,
                           max_missing: float = 0.5, min_frames: int = 30, res_w: int | None = None,
                           res_h: int | None = None, person: int | str | None = None
                           ) -> tuple[list[tuple[int, Keypoints2D]], list[str]]:
    """The people of a detector's detections per frame, as keypoint files are read.

    per_frame: {frame number: [(score, (17, 3) COCO-17 x, y, confidence), ...]} for the frames
    where someone was found. The detections link into tracks by position (link_by_position,
    also when the detector reports one person per frame, since it may jump to another person;
    each track's motion is predicted across frames, so people who cross keep their tracks while
    their paths stay apart by more than their distance from their predictions; a track
    continues across at most max_gap frames without the person). Each track is one person,
    numbered 1, 2, ... in the order people first appear (left to right among people who
    appear in the same frame); a person gone for more than max_gap
    frames who comes back is a new person. A person's frames run from their first detection to
    their last; the frames between without them are interpolated (keypoints_of_track).

    person: None, everyone detected in at least min_frames frames (a person with more than
    max_missing of their frames undetected is left out with a warning; when nobody was
    detected that long, as in a short clip, the longest-followed person); 'longest', the person
    of the longest track (refused above max_missing, as a keypoint file is); an id, that person.
    Returns ([(id, Keypoints2D)], warnings), ids ascending.
    """
    if not per_frame:
        raise ValueError(f"{source}: no person was detected in any frame")
    linked = sorted(link_by_position(per_frame, max_skip=max_gap),
                    key=lambda t: (min(t), float(centre_and_size(t[min(t)][1])[0][0])))
    tracks = dict(enumerate(linked, start=1))
    warnings: list = []
    if person is not None:
        if person == "longest":
            chosen = max(tracks, key=lambda t: track_rank(tracks[t]))
        elif person in tracks:
            chosen = person
        else:
            raise ValueError(f"{source}: no person {person!r}; the detections link into people 1..{len(tracks)} "
                             f"(give --track-id one of them, or leave it out to lift everyone)")
        if len(tracks) > 1:
            crowded = max(len(d) for d in per_frame.values())
            people = f", up to {crowded} people a frame" if crowded > 1 else ""
            warnings.append(f"the detections ({len(per_frame)} frames{people}) link by position into {len(tracks)} "
                            f"tracks (another person, or the person lost for over {max_gap} frames); followed "
                            f"{'the longest, ' if person == 'longest' else ''}person {chosen} "
                            f"({len(tracks[chosen])} frames); the others' frames count as frames without the person")
        kp = keypoints_of_track(tracks[chosen], source, threshold, max_gap, max_missing, res_w, res_h, warnings)
        return [(chosen, kp)], []
    people, short = [], []
    for person_id, track in tracks.items():
        if len(track) < min_frames:
            short.append(f"{person_id} ({len(track)})")
            continue
        try:
            people.append((person_id, keypoints_of_track(track, f"{source} person {person_id}", threshold, max_gap,
                                                         max_missing, res_w, res_h)))
        except ValueError as e:
            warnings.append(f"left out person {person_id}: {e}")
    if short:
        warnings.append(f"left out {len(short)} people seen in fewer than {min_frames} frames (--min-frames): "
                        f"id (frames) {', '.join(short[:10])}{' ...' if len(short) > 10 else ''}")
    if not people and not any(len(t) >= min_frames for t in tracks.values()):   # a short clip: its longest person
        warnings.append(f"nobody was followed through {min_frames} frames (--min-frames); lifted the person followed "
                        f"longest")
        return people_from_detections(per_frame, source, threshold, max_gap, max_missing, min_frames, res_w, res_h,
                                      "longest")[0], warnings
    if not people:
        raise ValueError(f"{source}: {warnings[0]}")
    return people, warnings
