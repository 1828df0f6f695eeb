"""Training speed: controlsprint's train step vs diffusers-0.39-style Flax and torch steps, same run.

    python bench/train.py [--batch 8] [--size 64] [--steps-per-timing 5] [--repeats 5]
                         [--torch-threads N]

One setup for all three (bench/_train_systems.py; the references in bench/_train_references.py):
the `tiny` training config in ControlNet mode (frozen VAE, text encoder and UNet; the ControlNet
trained; 64 px images; float32), AdamW with the config's hyper-parameters and global-norm clipping,
one random batch fixed once, the same weights:

  ours   controlsprint.training.step.train_step, built as the trainer builds it: jitted once ahead of
         time with explicit in/out shardings, the state donated, and (the config's default,
         data.cache_encodings) the frozen VAE encoder and text encoder run once per dataset row before
         training, not in every step (training/encodings.py; a fresh latent sample is still drawn
         every step)
  ours-uncached  the same step with data.cache_encodings=false: both encoders in every step, as
         the references run them
  flax   the step of diffusers' examples/controlnet/train_controlnet_flax.py written out on diffusers'
         Flax UNet, ControlNet and VAE and transformers' FlaxCLIPTextModel, jitted with the state
         donated (the example pmaps it; on one CPU device that is the same program)
  torch  the step of examples/controlnet/train_controlnet.py on diffusers' torch models and
         transformers' CLIPTextModel, torch.optim.AdamW, torch.set_num_threads(--torch-threads,
         default os.cpu_count())

Check first: fed identical random draws (latent sample, noise, timesteps, caption dropout) at step 0,
the three losses and gradient norms must agree. Then each system is warmed up, and timed alternately
(order flipped every round), each timing N optimiser steps ending when the last one has finished;
medians. Prints samples/s of each, the MFU of ours and of the Flax reference (FLOPs from each compiled
step's own XLA cost analysis, over the fp32 matmul peak measured in the same run), and ours / the
better reference. Goal (issue 8): >= 1.3x.

The encoding pass is paid once per dataset row, so it is reported apart: its cost per sample, and
ours' rate if every sample were seen only once (one epoch, the worst case for a cache; the tiny and
default configs see each row 3-12 times). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _train_references import FlaxReferenceStep, TorchReferenceStep
from _train_systems import OursStep, make_setup
from common import alternate, cpu_peak_gflops, emit

GOAL = 1.3


def key(name: str) -> str:
    """A system's name as a JSON key prefix ("ours-uncached" -> "ours_uncached")."""
    return name.replace("-", "_")


LOSS_RTOL = 1e-4
GRAD_NORM_RTOL = 1e-3


def quiet_references() -> None:
    import warnings

    import diffusers
    import transformers

    warnings.filterwarnings("ignore")
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()


def check_same_work(ours: OursStep, uncached: OursStep, flax, torch_ref, setup) -> dict:
    """Step 0 of ours (its first real step, cached and not) against both references fed the very
    draws ours made."""
    results = {}
    for name, system in (("ours", ours), ("ours-uncached", uncached)):
        metrics = system.run(1)  # also the warm-up
        results[name] = (float(metrics["loss"]), float(metrics["grad_norm"]))
    draws = ours.draws(setup, 0)
    results["flax"] = flax.loss_and_grad_norm(draws)
    results["torch"] = torch_ref.loss_and_grad_norm(draws)
    for name, (loss, norm) in results.items():
        print(f"  step 0, same draws: {name:<13} loss {loss:.6f}  grad norm {norm:.6f}", flush=True)
    reference_loss, reference_norm = results["ours"]
    for name in ("ours-uncached", "flax", "torch"):
        loss, norm = results[name]
        if not np.isclose(loss, reference_loss, rtol=LOSS_RTOL, atol=0.0):
            raise SystemExit(f"check failed: {name} loss {loss} differs from ours {reference_loss}")
        if not np.isclose(norm, reference_norm, rtol=GRAD_NORM_RTOL, atol=0.0):
            raise SystemExit(f"check failed: {name} gradient norm {norm} differs from ours {reference_norm}")
    return {
        f"{key(name)}_{quantity}": value
        for name, pair in results.items()
        for quantity, value in zip(("loss", "grad_norm"), pair, strict=True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8, help="samples per optimiser step")
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (a multiple of 8)")
    parser.add_argument("--steps-per-timing", type=int, default=5, help="optimiser steps in one timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per system (medians are reported)")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch intra-op threads (default: all cores; on a busy machine 1 can be much faster)",
    )
    args = parser.parse_args()
    if (
        args.batch < 1
        or args.size < 8
        or args.size % 8
        or args.steps_per_timing < 1
        or args.repeats < 1
        or args.torch_threads < 1
    ):
        parser.error(
            "--batch, --steps-per-timing, --repeats, --torch-threads must be >= 1; --size a multiple of 8"
        )

    from controlsprint.runtime import enable_compilation_cache

    enable_compilation_cache()  # as `controlsprint train` does; compile times are printed, not compared
    peak = cpu_peak_gflops()  # measured now, on an idle process, for the MFU figures
    quiet_references()

    with tempfile.TemporaryDirectory(prefix="bench-train-") as root:
        setup = make_setup(args.batch, args.size, Path(root))
        compile_s = {}
        start = time.perf_counter()
        ours = OursStep(setup)
        compile_s["ours"] = time.perf_counter() - start
        uncached = OursStep(setup, cache=False)
        start = time.perf_counter()
        flax = FlaxReferenceStep(setup)
        compile_s["flax"] = time.perf_counter() - start
        torch_ref = TorchReferenceStep(setup, threads=args.torch_threads)
    print(
        f"tiny ControlNet training, batch {args.batch}, {args.size} px, float32; build + compile: "
        f"ours {compile_s['ours']:.1f} s, flax {compile_s['flax']:.1f} s; torch threads {args.torch_threads}",
        flush=True,
    )
    check = check_same_work(ours, uncached, flax, torch_ref, setup)
    flax.run(1)  # warm-ups (ours had its first step in the check)
    torch_ref.run(1)

    n = args.steps_per_timing
    systems = {"ours": ours, "ours-uncached": uncached, "flax": flax, "torch": torch_ref}
    medians = alternate(
        {name: functools.partial(system.run, n) for name, system in systems.items()}, args.repeats
    )
    samples_per_s = {name: args.batch * n / seconds for name, seconds in medians.items()}
    best = max(("flax", "torch"), key=samples_per_s.get)
    ratio = samples_per_s["ours"] / samples_per_s[best]
    uncached_ratio = samples_per_s["ours-uncached"] / samples_per_s[best]
    one_epoch = 1.0 / (1.0 / samples_per_s["ours"] + ours.encode_ms_per_sample / 1e3)
    gflop = {"ours": ours.flops / 1e9, "ours-uncached": uncached.flops / 1e9, "flax": flax.flops / 1e9}
    mfu = {name: gflop[name] * samples_per_s[name] / args.batch / peak for name in gflop}
    print(
        "  ".join(f"{name} {rate:.2f} samples/s" for name, rate in samples_per_s.items())
        + f"\n-> ours / {best} = {ratio:.2f}x (goal >= {GOAL}x: {'met' if ratio >= GOAL else 'not met'});"
        + f" ours-uncached / {best} = {uncached_ratio:.2f}x"
        + f"\nencoding pass: {ours.encode_ms_per_sample:.2f} ms per sample, once per dataset row;"
        + f" ours with it paid every sample (one epoch): {one_epoch:.2f} samples/s"
        + f" = {one_epoch / samples_per_s[best]:.2f}x {best}"
        + "\nGFLOP per step (XLA cost analysis): "
        + ", ".join(f"{name} {value:.2f}" for name, value in gflop.items())
        + "; MFU "
        + ", ".join(f"{name} {value:.1%}" for name, value in mfu.items())
        + f" of {peak:.0f} GFLOP/s  [medians of {args.repeats} x {n} steps, load {os.getloadavg()[0]:.1f}]",
        flush=True,
    )
    emit(
        {
            "bench": "train",
            "config": "tiny",
            "mode": "controlnet",
            "batch": args.batch,
            "size": args.size,
            "steps_per_timing": n,
            "repeats": args.repeats,
            "torch_threads": args.torch_threads,
            **{f"{key(name)}_samples_per_s": round(rate, 3) for name, rate in samples_per_s.items()},
            "best_reference": best,
            "speedup_vs_best_reference": round(ratio, 3),
            "goal": GOAL,
            "goal_met": ratio >= GOAL,
            "uncached_speedup_vs_best_reference": round(uncached_ratio, 3),
            "encode_ms_per_sample": round(ours.encode_ms_per_sample, 3),
            "ours_one_epoch_samples_per_s": round(one_epoch, 3),
            "one_epoch_speedup_vs_best_reference": round(one_epoch / samples_per_s[best], 3),
            **{f"{key(name)}_gflop_per_step": round(value, 3) for name, value in gflop.items()},
            **{f"{key(name)}_mfu": round(value, 4) for name, value in mfu.items()},
            "peak_gflops": round(peak, 1),
            **{f"{name}_build_compile_s": round(value, 2) for name, value in compile_s.items()},
            "check_step0": {name: round(value, 6) for name, value in check.items()},
        }
    )


if __name__ == "__main__":
    main()
