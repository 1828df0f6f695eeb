"""Write the embedded default model's card (README.md) from a finished build directory.

Run by train/build_default_model.sh after the export and the evals; it reads what the build left:
eval/*/metrics.json (the figures), build_times.json (seconds per stage, written by the build script)
and the stage configs (steps, batch sizes, learning rates), so the card states what actually ran.

    python train/embedded_card.py BUILD_DIR MODEL_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from controlsprint.inference import VIDEO_HINT_STRENGTH
from controlsprint.training.presets import CONTROLNET_DATA, GAINS, GUIDANCE, LANES, embedded_stage

STAGES = ("vae", "unet", *CONTROLNET_DATA, "decoder", "video")
SCRIPT = Path(__file__).with_name("build_default_model.sh")
GOALS = {"canny": ">= 0.75 (off < 0.25)", "segment": ">= 0.6", "gray": ">= 20 dB", "hands": "-"}
GOAL_MINIMA = {"canny": 0.75, "segment": 0.6, "gray": 20.0}
CANNY_OFF_MAXIMUM = 0.25  # canny's goal also wants the ControlNet to matter: F1 below this when off
COLOUR_GOAL = 0.8  # under every shape control
HOUR_GOAL = 60  # minutes of wall time for the image model on 2 cores


def _build_commands() -> list[str]:
    """The build's commands in order: the synth lines verbatim from the build script, then the stages."""
    synth, keep = [], False
    for raw in SCRIPT.read_text().splitlines():
        line = raw.split("  #")[0].rstrip()
        if line.startswith("controlsprint synth") or keep:
            synth.append(line)
            keep = line.endswith("\\")  # a continued command goes on on the next line
    adds = " ".join(
        f"--add-controlnet {c}=runs/default/{c}/export/pipeline/controlnets/{c}" for c in CONTROLNET_DATA
    )
    gains = "".join(f" --controlnet-gain {c}={g:g}" for c, g in GAINS.items() if g != 1)
    return [
        *synth,
        "controlsprint train default-vae",
        "controlsprint train default-unet",
        "# the ControlNets and the decoder fine-tune in two lanes, one core each",
        *(
            "(" + " && ".join(f"taskset -c {core} controlsprint train default-{c}" for c in lane) + ") &"
            for core, lane in enumerate(LANES)
        ),
        "wait",
        "controlsprint train default-video",
        f"controlsprint export runs/default/unet/export/pipeline {adds}{gains} --guidance-scale {GUIDANCE:g} "
        "--vae runs/default/decoder/export/pipeline/vae --add-temporal runs/default/video/export/pipeline/temporal "
        "--format flax --half "
        "--base-model controlsprint/tiny-sd --out controlsprint/embedded/tiny-sd --overwrite",
        *(
            f"controlsprint eval --control {c} --model controlsprint/embedded/tiny-sd --num 32 --out eval/{c}"
            for c in CONTROLNET_DATA
        ),
        "controlsprint eval --control video --model controlsprint/embedded/tiny-sd --num 16 --frames 8 "
        "--out eval/video",
    ]


def _text_and_schedule() -> str:
    """What the UNet stage's config says about the text encoder and the noise schedule."""
    model = embedded_stage("unet").model
    text = (
        "trained with the UNet from its random initialisation"
        if model.train_text_encoder
        else "frozen at its random initialisation (the UNet learns to read it)"
    )
    schedule = {
        "zero-snr-v": "zero-terminal-SNR v-prediction (trailing DDIM timesteps)",
        "sd15": "SD1.5's epsilon prediction",
        "base": "SD1.5's epsilon prediction",
    }[model.schedule]
    return (
        f"Text encoder: CLIP architecture, {text}; tokenizer vocabulary built from the synthetic "
        f"captions, one token per word. Noise schedule: {schedule}."
    )


def _video_eval(build: Path) -> list[str]:
    """The video model's eval table (temporal layers on / off), or nothing if the build has none."""
    path = build / "eval" / "video" / "metrics.json"
    if not path.is_file():
        return []
    m = json.loads(path.read_text())
    on, off = m["with_temporal"], m["without_temporal"]
    figures = [
        ("first-frame PSNR vs the hint (dB)", "first_frame_psnr", "{:.1f}"),
        ("temporal difference (0-255 levels)", "temporal_diff", "{:.1f}"),
        ("motion direction accuracy", "direction_accuracy", "{:.0%}"),
    ]
    rows = [
        f"| {label} | {fmt.format(on[key])} | {fmt.format(off[key])} |"
        for label, key, fmt in figures
        if key in on
    ]
    return [
        "## Video (`controlsprint eval --control video`)",
        "",
        f"{m['num']} held-out motion clips of {m['frames']} frames (seed {m['seed']}, {m['steps']} steps, CFG "
        f"{m['guidance']:g}), each generated from its first frame and caption (every frame starting from the "
        f"hint noised to strength {VIDEO_HINT_STRENGTH}, frame 0 held on it); the ground truth's temporal "
        f"difference is {on['temporal_diff_truth']:.1f}. Temporal layers off = the image UNet on every frame.",
        "",
        "| figure | temporal layers on | off |",
        "|---|---|---|",
        *rows,
        "",
    ]


def _image_minutes(times: dict) -> float:
    """The image model's wall time in minutes: the VAE, the UNet, then the lanes (or their stages)."""
    after_unet = [stage for lane in LANES for stage in lane]
    image = ("vae", "unet", "lanes") if "lanes" in times else ("vae", "unet", *after_unet)
    return sum(times.get(stage, 0) for stage in image) / 60


def _total_line(times: dict) -> str:
    """The image model's wall time (VAE, UNet, the lanes or their stages) and the video stage's."""
    if not times:
        return ""
    image_minutes = _image_minutes(times)
    lanes = (
        " (ControlNets and decoder fine-tune in two one-core lanes side by side, their wall time counted)"
        if "lanes" in times
        else ""
    )
    video = f"; the video stage another {times['video'] / 60:.0f}" if "video" in times else ""
    return f"Image model (VAE, UNet, ControlNets, decoder): {image_minutes:.0f} minutes of wall time on 2 cores{lanes}{video}."


def _gains_line() -> str:
    baked = ", ".join(f"{c} {g:g}" for c, g in GAINS.items() if g != 1) or "none"
    return (
        f"ControlNet gains baked into the weights at export (`--controlnet-gain`): {baked}; so scale 1 acts "
        "as those conditioning scales did on the trained weights. Each is the best for its metric on "
        "calibration scenes (seed 20000, not the eval seed; `python bench/controlnet_gain.py`, at CFG 5, "
        "on the tenth build). "
        f"Classifier-free guidance scale recorded at export (`--guidance-scale`): {GUIDANCE:g}, what "
        "`generate`, `eval` and the image demos use when none is given; chosen on the same calibration "
        "scenes (`python bench/guidance_sweep.py`: every control holds better at low guidance)."
    )


def card(build: Path, model: Path) -> str:
    times = (
        json.loads((build / "build_times.json").read_text()) if (build / "build_times.json").is_file() else {}
    )
    rows = []
    for stage in STAGES:
        cfg = embedded_stage(stage)
        minutes = f"{times[stage] / 60:.1f}" if stage in times else "-"
        rows.append(
            f"| {stage} | {cfg.data.path.split('/')[-1]} | {cfg.run.steps} | {cfg.run.batch_size} "
            f"| {cfg.optim.learning_rate:g} | {minutes} |"
        )
    evals, met, missed, colours = [], [], [], []
    for control in CONTROLNET_DATA:
        path = build / "eval" / control / "metrics.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        if control in GOAL_MINIMA:
            off_ok = control != "canny" or m["without_control"] < CANNY_OFF_MAXIMUM
            (met if m["with_control"] >= GOAL_MINIMA[control] and off_ok else missed).append(control)
        if "colour_accuracy_with_control" in m:
            colours.append(m["colour_accuracy_with_control"])
        colour = (
            f"{m['colour_accuracy_with_control']:.0%} / {m['colour_accuracy_without_control']:.0%}"
            if "colour_accuracy_with_control" in m
            else "-"
        )
        evals.append(
            f"| {control} | {m['metric']} | {m['with_control']:.3f} | {m['without_control']:.3f} "
            f"| {GOALS[control]} | {colour} | {m['num']} (seed {m['seed']}, {m['steps']} steps, CFG {m['guidance']:g}) |"
        )
    if colours:
        (met if min(colours) >= COLOUR_GOAL else missed).append(
            f"colour of the largest shape ({COLOUR_GOAL:.0%})"
        )
    if times:
        minutes = _image_minutes(times)
        (met if minutes <= HOUR_GOAL else missed).append(f"the hour ({minutes:.0f} of {HOUR_GOAL} minutes)")
    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file()) / 2**20
    lines = [
        "---",
        "license: apache-2.0",
        "library_name: diffusers",
        "tags:",
        *(f"- {t}" for t in ("controlsprint", "jax", "flax", "controlnet", "stable-diffusion", "synthetic")),
        "---",
        "",
        "# controlsprint/tiny-sd: the embedded default model",
        "",
        "A small Stable-Diffusion-architecture pipeline (VAE 8x, CLIP-architecture text encoder, UNet, "
        "DDIM scheduler) with four ControlNets (`canny`, `segment`, `gray`, `hands`) and temporal layers "
        "that make its UNet a pseudo-3D video UNet (text + hint image -> short clip), trained from "
        "nothing by controlsprint's own commands on its own synthetic scenes (coloured shapes with "
        "captions naming colours and positions; stylised hands with their skeletons). 128x128 pixels. "
        "It exists so that a fresh machine with no downloadable weights still shows real controlled "
        "generation; it knows only the synthetic world (shapes, colours, positions, hands).",
        "",
        f"Size on disk: {size:.1f} MiB (float16 storage, Flax-layout safetensors). {_text_and_schedule()}",
        "",
        "## How it was made",
        "",
        "Data seeds 0 (mixed), 1 (shapes), 2 (hands), 11 (motion clips); eval scenes come from seed 10000, which training "
        "never saw. Commands, in order (`train/build_default_model.sh`):",
        "",
        "```bash",
        *_build_commands(),
        "```",
        "",
        "| stage | data | steps | batch | learning rate | minutes (2 CPU cores) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        _total_line(times),
        times.get("_note", ""),
        "",
        _gains_line(),
        "",
        "## Evaluation (`controlsprint eval`)",
        "",
        "Canny F1 (2 px tolerance), segment mIoU (output clustered by colour), gray PSNR of the output's "
        "grayscale, hands skeleton F1; each with the ControlNet on and switched off (scale 0, same seed). "
        "Colour: share of scenes whose largest shape has the caption's colour.",
        "",
        "| control | metric | with control | control off | goal | colour acc. on / off | scenes |",
        "|---|---|---|---|---|---|---|",
        *evals,
        "",
        f"Goals met: {', '.join(met) or 'none'}; missed: {', '.join(missed) or 'none'}. "
        "docs/embedded-model.md reads these figures against "
        "what the VAE lets through and says what the missed goals need next.",
        "",
        *_video_eval(build),
        "## Use",
        "",
        "```bash",
        "controlsprint generate --prompt 'a red circle above a blue square' --control canny=edges.png "
        "--raw-condition --out out.png",
        "controlsprint generate-video --prompt 'a red circle moving to the right on a yellow background' "
        "--hint first-frame.png --out clip.gif",
        "controlsprint demo",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python train/embedded_card.py BUILD_DIR MODEL_DIR", file=sys.stderr)
        return 2
    build, model = Path(argv[0]), Path(argv[1])
    (model / "README.md").write_text(card(build, model))
    print(f"wrote {model / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
