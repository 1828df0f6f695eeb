"""Training speed: controlsprint's train step vs diffusers-0.39-style Flax and torch steps, same run.

    python bench/train.py [--batch 8] [--size 64] [--steps-per-timing 5] [--repeats 5]
                         [--torch-threads N]

One setup for all three (bench/_train_systems.py; the references in bench/_train_references.py):
the `tiny` training config in ControlNet mode (frozen VAE, text encoder and UNet; the ControlNet
trained; 64 px images; float32), AdamW with the config's hyper-parameters and global-norm clipping,
one random batch fixed once, the same weights:

  ours   controlsprint.training.step.train_step, built as the trainer builds it: jitted once ahead of
         time with explicit in/out shardings, the state donated
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
better reference. Goal (issue 8):
>= 1.3x. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _train_references import FlaxReferenceStep, TorchReferenceStep
from _train_systems import OursStep, make_setup
from common import alternate, cpu_peak_gflops, emit

GOAL = 1.3
LOSS_RTOL = 1e-4
GRAD_NORM_RTOL = 1e-3


def quiet_references() -> None:
    import warnings

    import diffusers
    import transformers

    warnings.filterwarnings("ignore")
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()


def check_same_work(ours: OursStep, flax: FlaxReferenceStep, torch_ref: TorchReferenceStep, setup) -> dict:
    """Step 0 of ours (its first real step) against both references fed the very draws ours made."""
    metrics = ours.run(1)  # also the warm-up of ours
    draws = ours.draws(setup, 0)
    results = {
        "ours": (float(metrics["loss"]), float(metrics["grad_norm"])),
        "flax": flax.loss_and_grad_norm(draws),
        "torch": torch_ref.loss_and_grad_norm(draws),
    }
    for name, (loss, norm) in results.items():
        print(f"  step 0, same draws: {name:<5} loss {loss:.6f}  grad norm {norm:.6f}", flush=True)
    reference_loss, reference_norm = results["ours"]
    for name in ("flax", "torch"):
        loss, norm = results[name]
        if not np.isclose(loss, reference_loss, rtol=LOSS_RTOL, atol=0.0):
            raise SystemExit(f"check failed: {name} loss {loss} differs from ours {reference_loss}")
        if not np.isclose(norm, reference_norm, rtol=GRAD_NORM_RTOL, atol=0.0):
            raise SystemExit(f"check failed: {name} gradient norm {norm} differs from ours {reference_norm}")
    return {
        f"{name}_{key}": value
        for name, pair in results.items()
        for key, value in zip(("loss", "grad_norm"), pair, strict=True)
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
        start = time.perf_counter()
        flax = FlaxReferenceStep(setup)
        compile_s["flax"] = time.perf_counter() - start
        torch_ref = TorchReferenceStep(setup, threads=args.torch_threads)
    print(
        f"tiny ControlNet training, batch {args.batch}, {args.size} px, float32; build + compile: "
        f"ours {compile_s['ours']:.1f} s, flax {compile_s['flax']:.1f} s; torch threads {args.torch_threads}",
        flush=True,
    )
    check = check_same_work(ours, flax, torch_ref, setup)
    flax.run(1)  # warm-ups (ours had its first step in the check)
    torch_ref.run(1)

    n = args.steps_per_timing
    medians = alternate(
        {"ours": lambda: ours.run(n), "flax": lambda: flax.run(n), "torch": lambda: torch_ref.run(n)},
        args.repeats,
    )
    samples_per_s = {name: args.batch * n / seconds for name, seconds in medians.items()}
    best = max(("flax", "torch"), key=samples_per_s.get)
    ratio = samples_per_s["ours"] / samples_per_s[best]
    gflop = {"ours": ours.flops / 1e9, "flax": flax.flops / 1e9}
    mfu = {name: gflop[name] * samples_per_s[name] / args.batch / peak for name in gflop}
    print(
        "  ".join(f"{name} {rate:.2f} samples/s" for name, rate in samples_per_s.items())
        + f"  -> ours / {best} = {ratio:.2f}x (goal >= {GOAL}x: {'met' if ratio >= GOAL else 'not met'})"
        + f"\nGFLOP per step (XLA cost analysis): ours {gflop['ours']:.2f}, flax {gflop['flax']:.2f};"
        + f" MFU ours {mfu['ours']:.1%}, flax {mfu['flax']:.1%} of {peak:.0f} GFLOP/s"
        + f"  [medians of {args.repeats} x {n} steps, load {os.getloadavg()[0]:.1f}]",
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
            **{f"{name}_samples_per_s": round(rate, 3) for name, rate in samples_per_s.items()},
            "best_reference": best,
            "speedup_vs_best_reference": round(ratio, 3),
            "goal": GOAL,
            "goal_met": ratio >= GOAL,
            **{f"{name}_gflop_per_step": round(value, 3) for name, value in gflop.items()},
            **{f"{name}_mfu": round(value, 4) for name, value in mfu.items()},
            "peak_gflops": round(peak, 1),
            **{f"{name}_build_compile_s": round(value, 2) for name, value in compile_s.items()},
            "check_step0": {key: round(value, 6) for key, value in check.items()},
        }
    )


if __name__ == "__main__":
    main()
