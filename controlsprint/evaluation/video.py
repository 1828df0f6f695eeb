"""Video evaluation on held-out synthetic clips (`controlsprint eval --control video`).

Each clip is rendered fresh from an eval seed (synth `motion` kind); the model gets the clip's first
frame as the hint and its caption as the prompt, and the generated clip is scored by `clip_scores`
(motion.py): first-frame PSNR against the hint, temporal difference next to the ground truth's, and
motion direction accuracy for captions that name a direction. The same clips are also generated with
the temporal layers switched off (all zero: the video UNet is then the image UNet on every frame), so
what the temporal layers add is visible, as `eval` shows a ControlNet on and off.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

EVAL_SEED = 10_000


def generate_clips(core, examples: dict, *, steps: int, seed: int, guidance: float) -> list[np.ndarray]:
    """One clip per example ({"frames": [N, F, r, r, 3], "texts": [...]}), hinted by its first frame."""
    from controlsprint.inference import VIDEO_HINT_STRENGTH, make_request

    clips = []
    for frames, text in zip(examples["frames"], examples["texts"], strict=True):
        request = make_request(
            text,
            frames=len(frames),
            hint_image=frames[0],
            hint_strength=VIDEO_HINT_STRENGTH,
            steps=steps,
            seed=seed,
            guidance=guidance,
        )
        clips.append(core.generate(request)[0])
    return clips


def held_out_clips(num: int, seed: int, size: int, frames: int) -> dict:
    from controlsprint.data.synth import render_scene, row_seed

    scenes = [render_scene("motion", row_seed(seed, i), size, frames=frames) for i in range(num)]
    return {
        "frames": np.stack([s.frames for s in scenes]),
        "texts": [s.caption for s in scenes],
        "motion": [s.motion for s in scenes],
    }


def evaluate_video(
    core,
    *,
    num: int = 16,
    seed: int = EVAL_SEED,
    frames: int = 8,
    steps: int = 20,
    guidance: float | None = None,
    out: Path | None = None,
    grid_clips: int = 4,
) -> dict:
    import jax

    from controlsprint.errors import UserError
    from controlsprint.evaluation.motion import clip_scores
    from controlsprint.inference import VIDEO_GUIDANCE
    from controlsprint.training.validate import grid

    if not core.has_video:
        raise UserError("--control video: the model has no temporal layers (a temporal/ folder)")
    examples = held_out_clips(num, seed, core.native_size, frames)
    guidance = VIDEO_GUIDANCE if guidance is None else guidance  # as generate-video and the demo
    common = {"steps": steps, "seed": seed, "guidance": guidance}
    with_temporal = generate_clips(core, examples, **common)
    trained = core.pipeline.temporal.params
    core.set_params("temporal", jax.tree_util.tree_map(np.zeros_like, trained))
    try:
        without = generate_clips(core, examples, **common)
    finally:
        core.set_params("temporal", trained)
    truths = list(examples["frames"])
    result = {
        "control": "video",
        "with_temporal": clip_scores(with_temporal, truths, examples["motion"]),
        "without_temporal": clip_scores(without, truths, examples["motion"]),
        "num": num,
        "frames": frames,
        "seed": seed,
        "steps": steps,
        "guidance": guidance,
        "model": str(core.pipeline.folder),
    }
    if out is not None:
        from controlsprint.clipio import save_clip
        from controlsprint.imageio import save_png

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(min(grid_clips, num)):  # per clip: truth, generated, temporal layers off
            rows += [list(truths[i]), list(with_temporal[i]), list(without[i])]
        save_png(out / "grid.png", grid(rows))
        for i in range(min(grid_clips, num)):
            save_clip(out / f"clip_{i}.gif", with_temporal[i], fps=8)
        (out / "metrics.json").write_text(
            json.dumps({**result, "captions": examples["texts"]}, indent=2) + "\n"
        )
    return result
