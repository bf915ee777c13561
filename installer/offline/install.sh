#!/usr/bin/env bash
# Install CytoReview from this offline bundle: no network is used (pip --no-index).
#   ./install.sh                    into ~/.local/share/cytoreview, launcher in ~/.local/bin
#   ./install.sh --prefix DIR       the virtual environment goes to DIR/venv
#   ./install.sh --bin-dir DIR      where the `cytoreview` launcher goes
#   ./install.sh --no-desktop       no desktop entry (servers)
# PYTHON=/path/to/python3.11 picks the interpreter; it must match the bundle (see BUNDLE).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data_home=${XDG_DATA_HOME:-$HOME/.local/share}
prefix=$data_home/cytoreview
bin_dir=$HOME/.local/bin
desktop=1
while (($#)); do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --no-desktop) desktop=0; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
say() { printf '\033[1mcytoreview install:\033[0m %s\n' "$*"; }

# The wheels were built for one Python (major.minor) and platform: BUNDLE says which.
want=$(sed -n 's/^python=//p' "$here/BUNDLE")
python=${PYTHON:-}
if [[ -z "$python" ]]; then
  for candidate in "python$want" python3; do
    if command -v "$candidate" >/dev/null &&
       [[ $("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])') == "$want" ]]; then
      python=$candidate; break
    fi
  done
fi
if [[ -z "$python" ]]; then
  say "this bundle needs Python $want (install python$want and python$want-venv, or set PYTHON=...)"
  exit 1
fi

venv=$prefix/venv
say "creating $venv with $("$python" --version)"
mkdir -p "$prefix"
"$python" -m venv --clear "$venv"
# requirements.txt names cytoreview[app] and the plugins; constraints.txt pins every version
# the bundle was built with, so the install is the tested one.
log=$prefix/install.log
if ! "$venv/bin/python" -m pip install --no-index --find-links "$here/wheelhouse" \
     --disable-pip-version-check -c "$here/constraints.txt" -r "$here/requirements.txt" >"$log" 2>&1; then
  tail -n 30 "$log"
  say "installation failed; the full log is $log"
  exit 1
fi

# The launcher: a small script, so that the venv can move with --prefix without a dangling link.
mkdir -p "$bin_dir"
cat > "$bin_dir/cytoreview" <<LAUNCHER
#!/bin/sh
exec "$venv/bin/cytoreview" "\$@"
LAUNCHER
chmod +x "$bin_dir/cytoreview"

if ((desktop)); then
  icon=cytoreview
  for candidate in "$here"/resources/cytoreview.svg "$here"/resources/cytoreview.png; do
    if [[ -f "$candidate" ]]; then
      icon=$prefix/$(basename "$candidate"); cp "$candidate" "$icon"; break
    fi
  done
  apps=$data_home/applications
  mkdir -p "$apps"
  {
    echo "[Desktop Entry]"
    echo "Type=Application"
    echo "Name=CytoReview"
    echo "Comment=Paint, segment, classify and review cervical cytology images"
    echo "Exec=\"$bin_dir/cytoreview\" gui %f"
    echo "Icon=$icon"
    echo "Terminal=false"
    echo "Categories=Science;MedicalSoftware;Graphics;"
  } > "$apps/cytoreview.desktop"
  say "desktop entry: $apps/cytoreview.desktop"
fi

version=$("$bin_dir/cytoreview" --version)
say "$version installed; run: $bin_dir/cytoreview gui   (add $bin_dir to PATH if it is not)"
