"""Clip metrics for the Make-a-Video style demo: temporal difference and motion direction.

- `temporal_difference(frames)`: mean absolute frame-to-frame change, in the frames' own units (0-255
  levels for uint8). Compared with the same number on the synthetic ground truth it says whether a
  generated clip flickers (much higher) or freezes (much lower).
- `motion_direction(frames)`: "left", "right", "up", "down" or None, the dominant displacement of what
  moves in the clip. Scored against the `direction` of the synth `motion` record.

How the direction is found: between consecutive frames, the pixels that change most are the moving
shape's leading and trailing edges; their centroid travels with the shape (for a pure translation it
moves by exactly the shape's step each frame, whatever the shape). A straight line fitted to that
centroid track gives the displacement over the clip. Growth, shrinking and colour changes change pixels
symmetrically about a fixed centre (every synth shape is symmetric about its centre), so their track
stands still and the answer is None. Only colour differences are used, never which colour is the
background, so the same code scores generated clips.
"""

from __future__ import annotations

import numpy as np

DIRECTION_NAMES = ("left", "right", "up", "down")
# A pixel counts as changed between two frames when its change is at least this fraction of the
# largest change between them, so faint noise all over a generated frame does not pull the centroid.
CHANGE_FRACTION = 0.2
# Displacements shorter than this fraction of the frame width are not motion. The change of a growing
# or shrinking shape is a thin ring whose centroid pixel rounding pushes about: on synth clips its track
# wandered up to 12% of a 32 px frame (3 frames), under 7% from 64 px on; synth moves travel 30-45%.
MIN_SHIFT = 0.15


def _check_clip(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4):
        raise ValueError(f"frames: expected [F, H, W] or [F, H, W, C], got shape {frames.shape}")
    return frames.astype(np.float64)


def temporal_difference(frames: np.ndarray) -> float:
    """Mean |frame[t+1] - frame[t]| over all pixels, channels and consecutive pairs (0.0 for one frame)."""
    clip = _check_clip(frames)
    if clip.shape[0] < 2:
        return 0.0
    return float(np.abs(np.diff(clip, axis=0)).mean())


def change_centroids(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pair indices t, centroids [n, 2] as (x, y)) of the strongest change between frames t and t+1.

    Pairs with no change at all are left out.
    """
    clip = _check_clip(frames)
    change = np.abs(np.diff(clip, axis=0))
    if change.ndim == 4:
        change = change.mean(axis=-1)
    ys, xs = np.mgrid[: change.shape[1], : change.shape[2]]
    pairs, centroids = [], []
    for t, pair in enumerate(change):
        peak = pair.max()
        if peak <= 0:
            continue
        weight = np.where(pair >= CHANGE_FRACTION * peak, pair, 0.0)
        total = weight.sum()
        pairs.append(t)
        centroids.append([(weight * xs).sum() / total, (weight * ys).sum() / total])
    return np.asarray(pairs, np.float64), np.asarray(centroids, np.float64).reshape(-1, 2)


def motion_direction(frames: np.ndarray, *, min_shift: float = MIN_SHIFT) -> str | None:
    """The dominant direction of motion in `frames` ([F, H, W(, C)]), or None when nothing travels.

    Needs at least 3 frames: a single pair of frames cannot tell a shape moving right from a hole in the
    background moving left. `min_shift` is the least displacement over the clip, as a fraction of the
    frame width, that counts as motion.
    """
    pairs, centroids = change_centroids(frames)
    if len(pairs) < 2:
        return None
    slope = np.polyfit(pairs, centroids, 1)[0]  # (dx, dy) per frame
    shift = slope * (pairs[-1] - pairs[0] + 1)  # over the whole clip the pairs span
    width = np.asarray(frames).shape[2]
    if np.abs(shift).max() < min_shift * width:
        return None
    if abs(shift[0]) >= abs(shift[1]):
        return "right" if shift[0] > 0 else "left"
    return "down" if shift[1] > 0 else "up"


def direction_accuracy(clips, records) -> float | None:
    """Share of clips whose `motion_direction` is their record's `direction`, over records that name one."""
    scored = [
        motion_direction(clip) == record["direction"]
        for clip, record in zip(clips, records, strict=True)
        if record.get("direction")
    ]
    return float(np.mean(scored)) if scored else None


def clip_scores(generated: list, truths: list, records: list) -> dict[str, float]:
    """The video eval's figures over clips ([F, H, W, 3] uint8 each) made from their truth's first frame:

    first_frame_psnr   frame 0 against the hint (the truth's frame 0), dB
    temporal_diff      mean frame-to-frame difference of the generated clips (0-255 levels) ...
    temporal_diff_truth ... and of the synthetic ground truth, the figure it should be near
    direction_accuracy share of clips moving the way their caption says (only captions naming a direction)
    """
    from controlsprint.training.validate import psnr

    scores = {
        "first_frame_psnr": float(
            np.mean([psnr(g[0], t[0]) for g, t in zip(generated, truths, strict=True)])
        ),
        "temporal_diff": float(np.mean([temporal_difference(g) for g in generated])),
        "temporal_diff_truth": float(np.mean([temporal_difference(t) for t in truths])),
    }
    accuracy = direction_accuracy(generated, records)
    if accuracy is not None:
        scores["direction_accuracy"] = accuracy
    return scores
