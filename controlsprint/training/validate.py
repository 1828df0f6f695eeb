"""Validation during training: a grid of samples made by the shared inference core, and a metric.

vae         original | reconstruction, PSNR
unet        one text-to-image sample per validation caption
controlnet  condition | with control | control off (scale 0), and the controllability metric
            (canny F1, segment mIoU, gray PSNR, hands F1) with and without control
video       per clip, the true frames above the frames generated from its first frame and caption;
            first-frame PSNR, temporal difference against the truth's, direction accuracy
"""

from __future__ import annotations

import numpy as np

from controlsprint.evaluation.metrics import metric_for


def grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Stack equally sized uint8 tiles into one image, rows x columns, 2 px white gutters."""
    height, width = rows[0][0].shape[:2]
    gutter = 2
    cols = max(len(r) for r in rows)
    out = np.full(
        (len(rows) * (height + gutter) - gutter, cols * (width + gutter) - gutter, 3), 255, np.uint8
    )
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            out[
                i * (height + gutter) : i * (height + gutter) + height,
                j * (width + gutter) : j * (width + gutter) + width,
            ] = tile
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


class Validator:
    """Holds the validation examples and an `InferenceCore` whose weights follow the training run."""

    def __init__(self, pipeline, mode: str, condition: str, examples: dict, steps: int, seed: int = 1234):
        from controlsprint.inference.core import InferenceCore

        self.mode, self.condition, self.examples, self.steps, self.seed = (
            mode,
            condition,
            examples,
            steps,
            seed,
        )
        self.core = InferenceCore(pipeline)

    def run(self, params) -> tuple[np.ndarray, dict[str, float]]:
        if self.mode == "vae":
            return self._vae(params)
        if self.mode == "video":
            self.core.set_params("temporal", params)
            return video_grid_and_scores(self.core, self.examples, steps=self.steps, seed=self.seed)
        from controlsprint.inference import Control, make_request

        if self.mode == "unet" and "text_encoder" in params:  # the text encoder trains with the UNet
            self.core.set_params("unet", params["unet"])
            self.core.set_params("text_encoder", params["text_encoder"])
        elif self.mode == "unet":
            self.core.set_params("unet", params)
        else:
            self.core.set_params("controlnet", params, self.condition)
        rows, on_scores, off_scores = [], [], []
        metric = metric_for(self.condition)
        for image, cond, text in zip(
            self.examples["images"], self.examples["conditions"], self.examples["texts"], strict=True
        ):
            size = image.shape[0]
            common = {"steps": self.steps, "seed": self.seed, "guidance": 5.0, "height": size, "width": size}
            if self.mode == "unet":
                rows.append([image, self.core.generate(make_request(text, **common))[0]])
                continue
            on = self.core.generate(
                make_request(text, controls=[Control(self.condition, cond, 1.0)], **common)
            )[0]
            off = self.core.generate(
                make_request(text, controls=[Control(self.condition, cond, 0.0)], **common)
            )[0]
            rows.append([cond, on, off])
            if metric is not None:
                on_scores.append(metric(cond, on))
                off_scores.append(metric(cond, off))
        scores = {}
        if on_scores:
            scores = {
                f"{self.condition}_control": float(np.mean(on_scores)),
                f"{self.condition}_off": float(np.mean(off_scores)),
            }
        return grid(rows), scores

    def _vae(self, params) -> tuple[np.ndarray, dict[str, float]]:
        vae = self.core.pipeline.vae.module()
        pixels = self.examples["images"].astype(np.float32) / 127.5 - 1.0
        mean, _ = vae.apply({"params": params}, pixels, method="encode")
        recon = np.asarray(vae.apply({"params": params}, mean, method="decode"))
        recon = np.round(np.clip(recon / 2 + 0.5, 0, 1) * 255).astype(np.uint8)
        rows = [[a, b] for a, b in zip(self.examples["images"], recon, strict=True)]
        return grid(rows), {"psnr": float(np.mean([psnr(a, b) for a, b in rows]))}


def video_grid_and_scores(core, examples: dict, *, steps: int, seed: int, guidance: float = 5.0):
    """Clips generated from each example's first frame and caption: (grid, `clip_scores`)."""
    from controlsprint.evaluation.motion import clip_scores
    from controlsprint.evaluation.video import generate_clips

    truths = list(examples["frames"])
    generated = generate_clips(core, examples, steps=steps, seed=seed, guidance=guidance)
    rows = [row for truth, clip in zip(truths, generated, strict=True) for row in (list(truth), list(clip))]
    return grid(rows), clip_scores(generated, truths, examples["motion"])
