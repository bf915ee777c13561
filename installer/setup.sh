#!/usr/bin/env bash
# Set up (or refresh) the CytoReview environment in .venv at the repository root.
#   installer/setup.sh          runtime: what `make demo` needs
#   installer/setup.sh --dev    plus test and lint tools, and Xvfb for the GUI tests
# The first-party plugins in plugins/ are installed too (CYTOREVIEW_NO_PLUGINS=1 leaves them out).
# Safe to run again: it does nothing when pyproject.toml and the constraints have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=runtime
[[ "${1:-}" == "--dev" ]] && mode=dev

say() { printf '\033[1mcytoreview setup:\033[0m %s\n' "$*"; }

# -- Python 3.11 ---------------------------------------------------------------------------------
python=${PYTHON:-}
if [[ -z "$python" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate; break
    fi
  done
fi
if [[ -z "$python" ]]; then
  say "Python 3.11 is needed (apt-get install python3.11 python3.11-venv, or set PYTHON=/path/to/python3.11)"
  exit 1
fi

# -- System packages for the GUI tests (a virtual X server) ---------------------------------------
apt_packages=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
  libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-randr0 libxcb-shape0 libxcb-cursor0
  libgl1 libegl1 libdbus-1-3 libfontconfig1)
if [[ $mode == dev ]]; then
  missing=()
  for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
    if [[ $sudo == none ]]; then
      say "please install: sudo apt-get install -y ${missing[*]}  (needed for the GUI tests)"
      exit 1
    fi
    say "installing system packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# -- The virtual environment ---------------------------------------------------------------------
stamp=".venv/.cytoreview-$mode"
# Every package in plugins/ (its own pyproject.toml), unless CYTOREVIEW_NO_PLUGINS=1.
plugins=()
if [[ "${CYTOREVIEW_NO_PLUGINS:-0}" != 1 ]]; then
  for manifest in plugins/*/pyproject.toml; do
    [[ -f "$manifest" ]] && plugins+=(-e "$(dirname "$manifest")")
  done
fi
wanted=$( { cat pyproject.toml installer/constraints.txt; cat plugins/*/pyproject.toml 2>/dev/null;
           echo "plugins:${plugins[*]:-none}"; } | sha256sum | cut -c1-16)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" && -x .venv/bin/cytoreview ]]; then
  exit 0
fi
[[ -x .venv/bin/python ]] || { say "creating .venv with $($python --version)"; "$python" -m venv .venv; }
# `app`: the Qt binding of the stand-alone window (the core leaves it to napari's environment).
extra="[app]"; [[ $mode == dev ]] && extra="[app,dev]"
say "installing CytoReview$extra and its dependencies into .venv (the first time takes a few minutes)"
log=.venv/setup.log
# pip's own chatter goes to a log; it is shown only if the install fails.
if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip &&
       .venv/bin/python -m pip install --disable-pip-version-check \
         -c installer/constraints.txt -e ".$extra" "${plugins[@]}"; } >"$log" 2>&1; then
  tail -n 40 "$log"
  say "installation failed; the full log is $log"
  exit 1
fi
# A dev install also satisfies a runtime one.
echo "$wanted" > "$stamp"; [[ $mode == dev ]] && echo "$wanted" > .venv/.cytoreview-runtime
say "ready${plugins[*]:+ (plugins:${plugins[*]//-e/})}"
