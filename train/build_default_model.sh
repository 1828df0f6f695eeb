#!/usr/bin/env bash
# Rebuild the embedded default model (controlsprint/embedded/tiny-sd) from nothing, with the project's
# own commands: four synthetic datasets, seven training runs, one export that gathers them, then eval.
# Run from a scratch directory with controlsprint on PATH (e.g. after `source .venv/bin/activate`):
#   mkdir -p /tmp/build && cd /tmp/build && /path/to/controlsprint/train/build_default_model.sh
# Times and figures of the committed build: docs/embedded-model.md.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${1:-$repo/controlsprint/embedded/tiny-sd}"

controlsprint synth --out data/default/mixed --num 16000 --size 128 --kinds shapes,hands \
  --conditions segment,canny,gray,hands --seed 0
controlsprint synth --out data/default/shapes --num 16000 --size 128 --kinds shapes \
  --conditions segment,canny,gray --seed 1
controlsprint synth --out data/default/hands --num 8000 --size 128 --kinds hands --conditions hands,canny --seed 2
controlsprint synth --out data/default/motion --num 1500 --size 128 --kinds motion --frames 8 --seed 11

timed() {  # $1: stage name; the rest: the command. Seconds per stage go to build_times.json (model card)
  local stage="$1" start=$SECONDS
  shift
  "$@"
  python - "$stage" "$((SECONDS - start))" <<'PY'
import json, pathlib, sys
path = pathlib.Path("build_times.json")
times = json.loads(path.read_text()) if path.is_file() else {}
times[sys.argv[1]] = int(sys.argv[2])
path.write_text(json.dumps(times, indent=2) + "\n")
PY
}

timed vae controlsprint train default-vae     # -> runs/default/vae/export/pipeline (fresh UNet, text encoder, tokenizer)
timed unet controlsprint train default-unet   # base: the VAE run's export
for condition in canny segment gray hands; do
  timed "$condition" controlsprint train "default-$condition"   # base: the UNet run's export; base frozen
done
timed video controlsprint train default-video   # temporal layers on motion clips; image parts frozen

args=()
for condition in canny segment gray hands; do
  args+=(--add-controlnet "$condition=runs/default/$condition/export/pipeline/controlnets/$condition")
done
controlsprint export runs/default/unet/export/pipeline "${args[@]}" --format flax --half \
  --add-temporal runs/default/video/export/pipeline/temporal \
  --base-model controlsprint/tiny-sd --out "$target" --overwrite

for condition in canny segment gray hands; do
  controlsprint eval --control "$condition" --model "$target" --num 32 --out "eval/$condition"
done
controlsprint eval --control video --model "$target" --num 16 --frames 8 --out eval/video
python "$repo/train/embedded_card.py" . "$target"   # README.md: commands, steps, times, eval figures
