#!/usr/bin/env bash
# Rebuild the embedded default model (controlsprint/embedded/tiny-sd) from nothing, with the project's
# own commands: four synthetic datasets, eight training runs, one export that gathers them, then eval.
# Run from a scratch directory with controlsprint on PATH (e.g. after `source .venv/bin/activate`):
#   mkdir -p /tmp/build && cd /tmp/build && /path/to/controlsprint/train/build_default_model.sh
# Times and figures of the committed build: docs/embedded-model.md.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${1:-$repo/controlsprint/embedded/tiny-sd}"

controlsprint synth --out data/default/mixed --num 16000 --size 128 --kinds shapes,hands \
  --conditions segment,canny,gray,hands --seed 0
controlsprint synth --out data/default/shapes --num 6000 --size 128 --kinds shapes \
  --conditions segment,canny,gray --seed 1
controlsprint synth --out data/default/hands --num 4000 --size 128 --kinds hands --conditions hands,canny --seed 2
controlsprint synth --out data/default/motion --num 1500 --size 128 --kinds motion --frames 8 --seed 11

timed() {  # $1: stage name; the rest: the command. Seconds per stage go to build_times.json (model card)
  local stage="$1" start=$SECONDS
  shift
  "$@"
  python - "$stage" "$((SECONDS - start))" <<'PY'
import fcntl, json, pathlib, sys
path = pathlib.Path("build_times.json")
with open("build_times.lock", "w") as lock:  # two ControlNet lanes may finish a stage at once
    fcntl.flock(lock, fcntl.LOCK_EX)
    times = json.loads(path.read_text()) if path.is_file() else {}
    times[sys.argv[1]] = int(sys.argv[2])
    path.write_text(json.dumps(times, indent=2) + "\n")
PY
}

timed vae controlsprint train default-vae     # -> runs/default/vae/export/pipeline (fresh UNet, text encoder, tokenizer)
timed unet controlsprint train default-unet   # base: the VAE run's export
# The ControlNets (base: the UNet run's export, frozen; the three on `shapes` share one encoding pass on
# disk, presets.ENCODINGS) and the decoder fine-tune (base: the VAE run's export, encoder frozen) in two
# lanes of one core each: on 2 cores two one-core runs side by side do 1.2x the steps of one run on both
# (measured, docs/embedded-model.md).
lane() {  # $1: the core; the rest: the stages this lane trains, one after another
  local core="$1"
  shift
  for stage in "$@"; do
    if command -v taskset > /dev/null; then
      timed "$stage" taskset -c "$core" controlsprint train "default-$stage"
    else
      timed "$stage" controlsprint train "default-$stage"
    fi
  done
}
lanes() {  # presets.LANES: one line of stages per lane, lane i on core i
  local core=0 pids=() stages
  while read -r -a stages; do
    lane "$core" "${stages[@]}" &
    pids+=($!)
    core=$((core + 1))
  done < <(python -c 'from controlsprint.training.presets import LANES as L
print("\n".join(" ".join(lane) for lane in L))')
  [ "${#pids[@]}" -gt 0 ] || { echo "build: no lanes read from presets" >&2; return 1; }
  for pid in "${pids[@]}"; do wait "$pid"; done
}
timed lanes lanes   # the lanes' wall time; the stages' own times are recorded too
timed video controlsprint train default-video   # temporal layers on motion clips; image parts frozen

args=()
for condition in canny segment gray hands; do
  args+=(--add-controlnet "$condition=runs/default/$condition/export/pipeline/controlnets/$condition")
done
# each ControlNet's conditioning scale baked into its weights (presets.GAINS, chosen on calibration scenes)
while read -r gain; do
  args+=(--controlnet-gain "$gain")
done < <(python -c 'from controlsprint.training.presets import GAINS
print("\n".join(f"{name}={gain:g}" for name, gain in GAINS.items() if gain != 1))')
# and the guidance scale every command samples it at by default (presets.GUIDANCE)
args+=(--guidance-scale "$(python -c 'from controlsprint.training.presets import GUIDANCE; print(GUIDANCE)')")
controlsprint export runs/default/unet/export/pipeline "${args[@]}" --format flax --half \
  --vae runs/default/decoder/export/pipeline/vae --add-temporal runs/default/video/export/pipeline/temporal \
  --base-model controlsprint/tiny-sd --out "$target" --overwrite

for condition in canny segment gray hands; do
  controlsprint eval --control "$condition" --model "$target" --num 32 --out "eval/$condition"
done
controlsprint eval --control video --model "$target" --num 16 --frames 8 --out eval/video
python "$repo/train/embedded_card.py" . "$target"   # README.md: commands, steps, times, eval figures
