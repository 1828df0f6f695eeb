"""The ceiling an autoencoder leaves the ControlNets: held-out scenes encoded and decoded, scored with eval.

Every figure `controlsprint eval` reports is read through the VAE's decoder: a ControlNet that steered
the latents perfectly would still score what the true picture scores after one trip through the
autoencoder. This renders `--num` held-out shape scenes (eval's seed by default), encodes and decodes
each with every VAE given, and scores the round trip with eval's own metrics against the scene's true
conditions (canny F1, segment mIoU, gray PSNR) plus the RGB PSNR; each figure is printed with its
ratio to the first VAE's, measured in the same run.

    python bench/vae_ceiling.py runs/default/vae/export/pipeline runs/default/decoder/export/pipeline
    python bench/vae_ceiling.py controlsprint/embedded/tiny-sd my-build/vae --num 64

A pipeline folder or a bare `vae/` folder is accepted (a training run's export has both).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import emit

CONTROLS = ("canny", "segment", "gray")


def load_vae(folder: str):
    """The VAE component of a pipeline folder, or of a folder that is itself a `vae/` component."""
    from controlsprint.errors import UserError
    from controlsprint.models.io import load_component
    from controlsprint.models.pipeline import load_pipeline

    path = Path(folder)
    if (path / "model_index.json").is_file():
        return load_pipeline(path, with_controlnets=False).vae
    if (path / "config.json").is_file():
        return load_component(path, "vae")
    raise UserError(f"{folder}: neither a pipeline folder (model_index.json) nor a vae folder (config.json)")


def round_trip(vae):
    """A jitted image -> image function: encode to the latent mean, decode (float32)."""
    import jax
    import jax.numpy as jnp

    module = vae.module()
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), vae.params)
    apply = jax.jit(lambda x: module.apply({"params": params}, x))

    def run(image: np.ndarray) -> np.ndarray:
        x = jnp.asarray(image, jnp.float32)[None] / 127.5 - 1
        y = np.asarray(apply(x))[0]
        return np.clip((y + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)

    return run


def held_out_scenes(num: int, seed: int, size: int = 128):
    """(picture, {control: true condition}) for `num` shape scenes of eval's kind."""
    from controlsprint.data.synth import render_scene, row_seed
    from controlsprint.data.synth.job import ground_truth_conditions

    extractors: dict = {}
    for i in range(num):
        scene = render_scene("shapes", row_seed(seed, i), size)
        yield scene.image, ground_truth_conditions(scene, CONTROLS, extractors)


def ceiling(vae, scenes) -> dict[str, float]:
    from controlsprint.evaluation.metrics import metric_for
    from controlsprint.training.validate import psnr

    run = round_trip(vae)
    scores: dict[str, list[float]] = {name: [] for name in (*CONTROLS, "rgb_psnr")}
    for image, conditions in scenes:
        out = run(image)
        for control in CONTROLS:
            scores[control].append(metric_for(control)(conditions[control], out))
        scores["rgb_psnr"].append(psnr(image, out))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def main() -> None:
    from controlsprint.evaluation.evaluate import EVAL_SEED

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "vaes", nargs="+", metavar="FOLDER", help="pipeline or vae folders; the first is the reference"
    )
    parser.add_argument("--num", type=int, default=32, help="held-out scenes (default 32)")
    parser.add_argument(
        "--seed", type=int, default=EVAL_SEED, help=f"scene seed (default eval's, {EVAL_SEED})"
    )
    args = parser.parse_args()
    from controlsprint.errors import UserError

    try:
        vaes = {folder: load_vae(folder) for folder in args.vaes}
    except UserError as error:
        raise SystemExit(f"vae_ceiling: {error}") from None
    scenes = list(held_out_scenes(args.num, args.seed))
    results = {folder: ceiling(vae, scenes) for folder, vae in vaes.items()}
    reference = results[args.vaes[0]]
    for folder, figures in results.items():
        shown = ", ".join(
            f"{name} {value:.3f} ({value / reference[name]:.2f}x)" for name, value in figures.items()
        )
        print(f"{folder}: {shown}", flush=True)
    emit(
        {
            "bench": "vae_ceiling",
            "num": args.num,
            "seed": args.seed,
            "reference": args.vaes[0],
            "ceilings": results,
        }
    )


if __name__ == "__main__":
    main()
