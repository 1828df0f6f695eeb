#!/usr/bin/env bash
# controlsprint's two entry points for a fresh clone:
#   ./sprint.sh run    create .venv, install controlsprint, serve the demo suite on the embedded default
#                      model at http://127.0.0.1:7860 (extra arguments go to `controlsprint demo all`)
#   ./sprint.sh test   create .venv, install controlsprint[dev], run the whole test suite (slow tests too)
# Extra arguments after `test` go to pytest (e.g. ./sprint.sh test -m "not slow" -x).
# PYTHON picks the interpreter (3.10-3.12; mediapipe 0.10.21 has no wheels for newer ones).
set -euo pipefail
cd "$(dirname "$0")"

action="${1:-}"
shift || true
venv=".venv"

ensure_venv() {  # $1: the extras to install, e.g. "" or "[dev]"
  local python="${PYTHON:-python3}"
  if [ ! -x "$venv/bin/python" ]; then
    "$python" -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else
      f"controlsprint needs Python 3.10-3.12 (mediapipe 0.10.21), found {v[0]}.{v[1]}; set PYTHON=")'
    "$python" -m venv "$venv"
  fi
  # Reinstall only when pyproject.toml or the extras changed: a second run starts at once.
  local stamp="$venv/.installed$1"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e ".$1"
    touch "$stamp"
  fi
}

case "$action" in
  run)
    ensure_venv ""
    # The main job: the demo suite (every app as a tab) over the embedded default model, until Ctrl-C.
    exec "$venv/bin/controlsprint" demo all "$@"
    ;;
  test)
    ensure_venv "[dev]"
    set +e
    "$venv/bin/python" -m pytest -m "slow or not slow" "$@"
    code=$?
    set -e
    # pytest exits 5 when it collected no tests: that is a broken suite, not a pass.
    if [ "$code" -eq 5 ]; then
      echo "sprint.sh: pytest collected no tests" >&2
    fi
    exit "$code"
    ;;
  *)
    echo "usage: ./sprint.sh run | ./sprint.sh test [pytest args]" >&2
    exit 2
    ;;
esac
