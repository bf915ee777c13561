#!/usr/bin/env bash
# The test command: lint, layer contracts, GUI tests under Xvfb, then every other test headless.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
status=0
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "ruff (lint and format)"
$bin/ruff check . && $bin/ruff format --check . || status=1

step "import-linter (one-way layers)"
$bin/lint-imports || status=1

# The wheel test installs a fresh virtual environment (torch alone is 5.5 GB to unpack: about
# 3 minutes of mostly disk work): it runs beside the GUI tests, and its output comes at the end.
wheel_pid=""
if [[ -d tests/install ]]; then
  step "wheel install test (in the background; its report comes last)"
  wheel_log=$(mktemp)
  wheel_tmp=$(mktemp -d)  # its own temp root: two pytest runs never tidy each other's folders
  env -u DISPLAY -u WAYLAND_DISPLAY $bin/python -m pytest -p no:xvfb --basetemp="$wheel_tmp" \
    tests/install "$@" >"$wheel_log" 2>&1 &
  wheel_pid=$!
fi

if [[ -d tests/gui ]]; then
  step "GUI tests under Xvfb"
  $bin/python -m pytest -m gui tests/gui "$@"; rc=$?
  # Exit 5: no GUI test selected (e.g. a -k filter left none): not a failure.
  if [[ $rc != 0 && $rc != 5 ]]; then status=1; fi
fi

step "tests without a display (CLI and core, as on a headless server)"
env -u DISPLAY -u WAYLAND_DISPLAY $bin/python -m pytest -m "not gui" -p no:xvfb \
  --ignore=tests/install "$@" || status=1

if [[ -n $wheel_pid ]]; then
  step "wheel install test (ran in the background)"
  wait "$wheel_pid"; rc=$?
  cat "$wheel_log"; rm -rf "$wheel_log" "$wheel_tmp"
  if [[ $rc != 0 && $rc != 5 ]]; then status=1; fi
fi

exit $status
