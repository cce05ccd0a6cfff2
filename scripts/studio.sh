#!/usr/bin/env bash
# One entry point for a fresh machine: sets up .venv (CPU torch first, then the project) and
#   bash scripts/studio.sh app    -> launches the app on the shipped sample night
#   bash scripts/studio.sh test   -> runs the test suite (pytest's exit code 5, "no tests", counts as failure-free)
# Extra arguments after the command go to streamlit / pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${S2V_VENV:-.venv}"
PY="${PYTHON:-python3}"

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.s2v-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # CPU build of torch first, so the project's torch range pulls nothing bigger.
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -e ".[test]"
    touch "$stamp"
  fi
}

cmd="${1:-}"; shift || true
case "$cmd" in
  app)
    setup
    exec "$VENV/bin/streamlit" run app.py --server.headless true "$@"
    ;;
  test)
    setup
    set +e
    "$VENV/bin/python" -m pytest -n 2 "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then
      echo "pytest collected no tests for this selection (exit 5); nothing failed"
      exit 0
    fi
    exit "$rc"
    ;;
  *)
    echo "usage: bash scripts/studio.sh app|test [args...]" >&2
    exit 64
    ;;
esac
