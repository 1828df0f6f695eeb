"""Generation speed: controlsprint's inference core vs diffusers 0.39's Flax and torch ControlNet pipelines.

    python bench/inference.py [--repeats 5] [--batches 1,4] [--steps 20] [--size 256]
                              [--no-first-call | --first-call-only] [--warm-processes 3]

One tiny Stable-Diffusion-architecture ControlNet pipeline (`bench_configs` in _inference_systems.py,
printed at the start) gets random weights, saved in our layout and exported to PyTorch-diffusers
safetensors; the diffusers Flax models get those weights through diffusers' own PyTorch->Flax
converter, the torch models load the export. All three generate from the same prompts, condition
image and initial latents (20 DDIM steps, classifier-free guidance 7.5, 256 px); their images are
compared first, then timed alternately (order flipped every round), several repeats, medians:

  ours   InferenceCore.generate(request): tokens, the one jitted program (text encoder, denoising loop
         with ControlNet + UNet, VAE decode), uint8 pixels back
  flax   FlaxStableDiffusionControlNetPipeline with jit=True: its whole `_generate` compiled as one
         program (pmapped over the one CPU device, inputs with the leading device axis its docs show).
         jit=False runs all but the loop op by op and re-traces the loop body on every call: slower.
  torch  StableDiffusionControlNetPipeline (float32, torch's default threads), output_type="np"

Every timed call goes from prompt strings to an image array. Goals (issue 6): B1 >= 1.5x faster than
the better reference, B4 >= 1.3x.

MFU: XLA's cost analysis counts a `fori_loop` body once, whatever the trip count. So the program's
flops F (the work outside the loop + one loop body) are completed with (steps - 1) x the flops B of
one loop body, got by compiling the body's work alone (ControlNet on the precomputed condition
features and UNet, both on the CFG-doubled batch, exactly as the loop runs them): total = F + (steps
- 1) x B. MFU = total / median seconds / the fp32 matmul peak measured at the start of the same run.
These are the flops our program executes; the references execute more (they rerun the ControlNet's condition stem every step, per CFG half).

First call: fresh processes timed from their start (Popen) to the first image: imports, model load,
trace or program-cache load, compile or compile-cache load, run. Ours (library: load_core +
generate; and the CLI: `controlsprint generate` start to exit) with an empty cache folder (cold), then
--warm-processes more with the same folder (warm: the median by first image is reported; the goal is
<= 3 s), and the diffusers Flax pipeline the same way (JAX's persistent cache on for it too). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _inference_systems import (
    bench_configs,
    build_folders,
    condition_image,
    flax_runner,
    ours_request,
    ours_runner,
    torch_runner,
)
from common import alternate, cpu_peak_gflops, emit


def quiet_references() -> None:
    """diffusers/transformers print deprecation and safety-checker notices on every model built."""
    warnings.filterwarnings("ignore")
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()


# -- flops ---------------------------------------------------------------------------------------


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0))


def program_flops(core, request) -> dict:
    """GFLOP of one whole generation; see the module docstring for how the loop is counted."""
    import jax
    import jax.numpy as jnp

    once = _flops(core.lower(request).compile())
    options, inputs = core.prepare(request)
    pipe = core.pipeline
    unet, controlnet = pipe.unet.module(), pipe.controlnets["canny"].module()
    rows = inputs["noise"].shape[0] * (2 if options.cfg else 1)
    _, lat_h, lat_w, channels = inputs["noise"].shape
    features = controlnet.apply(
        {"params": pipe.controlnets["canny"].params}, inputs["conditions"][0], method="embed_condition"
    )

    def body(unet_params, cn_params, latents, t, context):
        down, mid = controlnet.apply(
            {"params": cn_params}, latents, t, context, None, 1.0, condition_embedding=features
        )
        return unet.apply({"params": unet_params}, latents, t, context, down, mid)

    shapes = (
        jax.ShapeDtypeStruct((rows, lat_h, lat_w, channels), jnp.float32),
        jax.ShapeDtypeStruct((), jnp.float32),
        jax.ShapeDtypeStruct(
            (rows, inputs["ids"].shape[1], pipe.unet.config.cross_attention_dim), jnp.float32
        ),
    )
    params = (pipe.unet.params, pipe.controlnets["canny"].params)
    step = _flops(jax.jit(body).lower(*params, *shapes).compile())
    return {"program": once / 1e9, "step": step / 1e9, "total": (once + (request.steps - 1) * step) / 1e9}


# -- first call in a fresh process ----------------------------------------------------------------


def first_call_child(args: argparse.Namespace) -> None:
    """Runs in the fresh process: load, first image, then one JSON line with the time it was ready."""
    marks = {"start": time.time()}
    from controlsprint.runtime import enable_compilation_cache

    enable_compilation_cache(args.cache)
    condition = condition_image(args.size)
    if args.first_call == "ours":
        import controlsprint.inference.core  # noqa: F401  (jax, flax: import time, measured apart)

        marks["imported"] = time.time()
        from controlsprint.inference.loading import load_core

        core = load_core(args.model)
        marks["loaded"] = time.time()
        image = core.generate(ours_request(condition, 1, args.steps, args.guidance))
    else:
        quiet_references()
        marks["imported"] = time.time()
        run = flax_runner(Path(args.model), condition, args.steps, args.guidance)
        marks["loaded"] = time.time()
        latents = np.random.default_rng(0).standard_normal((1, args.size // 8, args.size // 8, 4))
        image = run(1, latents.astype(np.float32))
    marks["ready"] = time.time()
    assert image.shape == (1, args.size, args.size, 3)
    print(json.dumps(marks))


def first_call(kind: str, model: Path, cache: Path, args: argparse.Namespace) -> dict:
    """Seconds from spawning a fresh process to its first image, and how they split."""
    command = [sys.executable, __file__, "--first-call", kind, "--model", str(model), "--cache", str(cache)]
    command += ["--size", str(args.size), "--steps", str(args.steps), "--guidance", str(args.guidance)]
    spawned = time.time()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "total_s": round(marks["ready"] - spawned, 2),
        "interpreter_and_imports_s": round(marks["imported"] - spawned, 2),
        "load_s": round(marks["loaded"] - marks["imported"], 2),
        "first_image_s": round(marks["ready"] - marks["loaded"], 2),
    }


def cli_first_call(model: Path, cache: Path, out: Path, args: argparse.Namespace) -> float:
    """`controlsprint generate` with a raw condition, process start to exit (writes one PNG)."""
    from PIL import Image

    condition = out.parent / "condition.png"
    Image.fromarray(condition_image(args.size)).save(condition)
    command = [sys.executable, "-m", "controlsprint", "--compile-cache", str(cache), "generate"]
    command += ["--model", str(model), "--prompt", "a red circle above a blue square", "--raw-condition"]
    command += ["--control", f"canny={condition}", "--steps", str(args.steps), "--out", str(out)]
    start = time.time()
    subprocess.run(command, capture_output=True, text=True, check=True)
    return round(time.time() - start, 2)


def first_calls(ours_dir: Path, pt_dir: Path, root: Path, args: argparse.Namespace) -> dict:
    results = {}
    for kind, model in (("ours", ours_dir), ("flax", pt_dir)):
        cache = root / f"cache-{kind}"  # starts empty: the first process compiles, the second reads
        results[f"{kind}_cold"] = first_call(kind, model, cache, args)
        warm = [first_call(kind, model, cache, args) for _ in range(args.warm_processes)]
        results[f"{kind}_warm_runs"] = warm
        # the median process by its first image (the figure the goal names)
        results[f"{kind}_warm"] = sorted(warm, key=lambda run: run["first_image_s"])[len(warm) // 2]
        print(
            f"first call {kind}: cold {results[f'{kind}_cold']}, warm {results[f'{kind}_warm']}", flush=True
        )
    cache = root / "cache-cli"
    results["cli_cold_s"] = cli_first_call(ours_dir, cache, root / "cli-cold.png", args)
    results["cli_warm_s"] = cli_first_call(ours_dir, cache, root / "cli-warm.png", args)
    print(f"first call CLI: cold {results['cli_cold_s']} s, warm {results['cli_warm_s']} s", flush=True)
    return results


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,4", help="comma list of batch sizes (prompts)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=256, help="image size in pixels (latents are size/8)")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--only", default="ours,flax,torch", help="systems to time (ours is always built)")
    parser.add_argument("--no-first-call", action="store_true", help="skip the fresh-process measurements")
    parser.add_argument(
        "--warm-processes", type=int, default=3, help="fresh processes on the warm cache (median reported)"
    )
    parser.add_argument("--first-call-only", action="store_true", help="only the fresh-process measurements")
    parser.add_argument("--first-call", choices=("ours", "flax"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_call:
        first_call_child(args)
        return

    from controlsprint.runtime import enable_compilation_cache

    quiet_references()
    enable_compilation_cache()
    cpu_peak_gflops()  # measured now, on an idle process; the MFU figures read it at the end
    configs = bench_configs(args.size)
    print(f"load average at start {os.getloadavg()}", flush=True)
    for kind, config in configs.items():
        print(f"{kind}: {config}", flush=True)
    record: dict = {"bench": "inference", "size": args.size, "steps": args.steps, "guidance": args.guidance}
    record["config"] = {kind: repr(config) for kind, config in configs.items()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ours_dir, pt_dir = build_folders(root, args.size)
        if not args.first_call_only:
            record.update(steady_state(ours_dir, pt_dir, args))
        if not args.no_first_call:
            record["first_call"] = first_calls(ours_dir, pt_dir, root, args)
    emit(record)


def steady_state(ours_dir: Path, pt_dir: Path, args: argparse.Namespace) -> dict:
    """Warm timings of every system for each batch size, in this process."""
    condition = condition_image(args.size)
    ours, core = ours_runner(ours_dir, condition, args.steps, args.guidance)
    systems = {"ours": ours}
    factories = {"flax": flax_runner, "torch": torch_runner}
    for name in [n for n in args.only.split(",") if n in factories]:
        systems[name] = factories[name](pt_dir, condition, args.steps, args.guidance)
    return {
        f"B{batch}": bench_batch(systems, core, condition, batch, args)
        for batch in [int(b) for b in args.batches.split(",")]
    }


def bench_batch(systems: dict, core, condition: np.ndarray, batch: int, args: argparse.Namespace) -> dict:
    shape = (batch, args.size // 8, args.size // 8, 4)
    latents = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
    images, first = {}, {}
    for name, run in systems.items():  # first calls compile (or load from the cache); not timed below
        start = time.perf_counter()
        images[name] = run(batch, latents).astype(np.int16)
        first[name] = time.perf_counter() - start
    levels = {
        f"{a}_vs_{b}": int(np.abs(images[a] - images[b]).max())
        for a, b in (("ours", "flax"), ("ours", "torch"), ("flax", "torch"))
        if a in images and b in images
    }
    print(f"B{batch}: first calls {first}; max image differences in uint8 levels {levels}", flush=True)
    medians = alternate(
        {name: (lambda run=run: run(batch, latents)) for name, run in systems.items()}, args.repeats
    )
    references = {name: s for name, s in medians.items() if name != "ours"}
    best = min(references, key=references.get) if references else None
    gflop = program_flops(core, ours_request(condition, batch, args.steps, args.guidance, latents))
    peak = cpu_peak_gflops()
    result = {
        **{f"{name}_s": round(s, 3) for name, s in medians.items()},
        "speedup_vs_best_reference": round(references[best] / medians["ours"], 3) if best else None,
        "best_reference": best,
        "gflop": round(gflop["total"], 2),
        "gflop_program_as_counted": round(gflop["program"], 2),
        "gflop_per_step": round(gflop["step"], 3),
        "mfu": round(gflop["total"] / medians["ours"] / peak, 4),
        "peak_gflops": round(peak, 1),
        "max_level_difference": levels,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    goal = 1.5 if batch == 1 else 1.3
    print(
        f"B{batch}: "
        + "  ".join(f"{name} {s:.3f} s" for name, s in medians.items())
        + (f"  -> ours is {result['speedup_vs_best_reference']:.2f}x faster than {best}" if best else "")
        + f" (goal >= {goal}x)  {gflop['total']:.1f} GFLOP, MFU {result['mfu']:.1%}"
        + f"  [medians of {args.repeats}, load {os.getloadavg()[0]:.1f}]",
        flush=True,
    )
    return result


if __name__ == "__main__":
    main()
