"""Which conditioning scale (gain) serves each ControlNet best, measured on calibration scenes.

A ControlNet trained for a few hundred steps can steer more faithfully at a scale above 1: its zero
convolutions have not grown to full strength yet. This runs `controlsprint eval`'s measurement (same
metric, same sampler) for each control at each gain, on scenes from a calibration seed (20000 by
default: neither the training data's small seeds nor eval's 10000, so the figures eval reports are
not the ones the gain was chosen on), and prints each figure with its ratio to gain 1 measured in the
same run, then the best gain per control. `controlsprint export --controlnet-gain NAME=G` bakes a
chosen gain into the weights.

    python bench/controlnet_gain.py --controls canny,gray --gains 1,1.5,2,2.5,3,4 --guidance 5
    python bench/controlnet_gain.py --model my-model --controls segment --num 16
"""

from __future__ import annotations

import argparse

from common import emit

CALIBRATION_SEED = 20_000


def sweep(
    model: str | None, control: str, gains: list[float], *, num: int, seed: int, guidance: float | None = None
) -> dict[float, dict]:
    from controlsprint.evaluation.evaluate import evaluate
    from controlsprint.inference.loading import load_core

    core = load_core(model)
    results, off = {}, None
    for gain in gains:
        # the ControlNet switched off does not depend on the gain: measured with the first one only
        result = evaluate(
            core, control, num=num, seed=seed, scale=gain, guidance=guidance, without_control=off is None
        )
        off = result["without_control"] if off is None else off
        results[gain] = {
            "with_control": result["with_control"],
            "without_control": off,
            "colour_accuracy": result.get("colour_accuracy_with_control"),
        }
        print(
            f"{control} gain {gain:g}: {result['metric']} {result['with_control']:.3f} "
            f"(off {off:.3f}), colour {result.get('colour_accuracy_with_control')}",
            flush=True,
        )
    return results


def against_reference(control: str, name: str, results: dict[float, dict], reference: float) -> dict:
    """Print each setting's figure with its ratio to the reference setting's, then the best; returns
    the control's summary for the JSON line ({"best_<name>": ..., "results": ...})."""
    base = results[reference]["with_control"]
    for value, figures in results.items():
        ratio = figures["with_control"] / base if base else float("inf")
        print(
            f"{control} {name} {value:g}: {figures['with_control']:.3f} = {ratio:.2f}x "
            f"{name} {reference:g}'s {base:.3f}"
        )
    best = max(results, key=lambda v: results[v]["with_control"])
    print(f"{control}: best {name} {best:g} ({results[best]['with_control']:.3f})", flush=True)
    return {f"best_{name}": best, "results": {str(v): r for v, r in results.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="pipeline folder (default: the embedded model)")
    parser.add_argument("--controls", default="canny,segment,gray,hands")
    parser.add_argument("--gains", default="1,1.5,2,2.5,3,4", help="comma-separated; 1 is always added")
    parser.add_argument("--num", type=int, default=32)
    parser.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    parser.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="CFG scale (default: the model's, as eval; the presets' gains were chosen at 5)",
    )
    args = parser.parse_args()
    gains = sorted({1.0, *(float(g) for g in args.gains.split(","))})
    summary = {}
    for control in args.controls.split(","):
        results = sweep(args.model, control, gains, num=args.num, seed=args.seed, guidance=args.guidance)
        summary[control] = against_reference(control, "gain", results, 1.0)
    emit(
        {
            "bench": "controlnet_gain",
            "model": args.model,
            "num": args.num,
            "seed": args.seed,
            "guidance": args.guidance,
            "controls": summary,
        }
    )


if __name__ == "__main__":
    main()
