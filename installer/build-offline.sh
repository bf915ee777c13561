#!/usr/bin/env bash
# Build an offline bundle: one folder (and a .tar of it) with every wheel that CytoReview, its
# app extra and the plugins in plugins/ need on THIS platform and Python, plus install.sh and
# install.ps1. Copy it to a machine with no network and run its install.sh.
#   installer/build-offline.sh                       GPU variant (torch CUDA build, onnxruntime-gpu)
#   installer/build-offline.sh --variant cpu --torch-wheels DIR
#                                                    CPU variant: torch and torchvision from DIR
#   --out DIR      where the bundle folder and .tar go (default dist/offline)
#   --no-tar       the folder only
# Needs the registry (or PIP_FIND_LINKS) once, here; the bundle needs nothing. The Python that
# builds it is the one it installs for: PYTHON=... (default .venv/bin/python, with `build`).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1mbuild-offline:\033[0m %s\n' "$*"; }
die() { say "$*"; exit 1; }

variant=gpu torch_wheels="" out=dist/offline tar=1
while (($#)); do
  case $1 in
    --variant) variant=$2; shift 2 ;;
    --torch-wheels) torch_wheels=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-tar) tar=0; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
py=${PYTHON:-.venv/bin/python}
[[ -x $py ]] || command -v "$py" >/dev/null || die "no Python at $py (run installer/setup.sh --dev, or set PYTHON)"
"$py" -c 'import build' 2>/dev/null || die "$py has no 'build' module (pip install build)"

# -- Which torch: the constraints' CUDA build, or a CPU build the caller brings ------------------
constraints=installer/constraints.txt
case $variant in
  gpu) ;;
  cpu)
    # PyPI serves only CUDA builds of torch for Linux; CPU-only builds live on PyTorch's own
    # index, which a locked-down build machine may not reach: the caller supplies the pair.
    [[ -n $torch_wheels ]] || die "the CPU variant needs --torch-wheels DIR with a CPU-only torch and torchvision wheel pair (from PyTorch's CPU index); PyPI has none for Linux"
    ls "$torch_wheels"/torch-*.whl >/dev/null 2>&1 || die "no torch-*.whl in $torch_wheels"
    ls "$torch_wheels"/torchvision-*.whl >/dev/null 2>&1 || die "no torchvision-*.whl in $torch_wheels"
    ;;
  *) die "--variant is gpu or cpu, not $variant" ;;
esac

version=$("$py" -c 'import re,pathlib; print(re.search(r"__version__ = \"(.+?)\"", pathlib.Path("cytoreview/__init__.py").read_text())[1])')
pytag=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
plat=$("$py" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))')
name=cytoreview-$version-$variant-py$pytag-$plat
bundle=$out/$name
rm -rf "$bundle" "$out/$name.tar"
mkdir -p "$bundle/wheelhouse"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# -- The project's own wheels (and sdists, beside them in dist/) ----------------------------------
say "building the cytoreview wheel and one per plugin"
"$py" -m build --outdir dist . >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log"; die "building cytoreview failed"; }
requirements=("cytoreview[app]==$version")
for manifest in plugins/*/pyproject.toml; do
  [[ -f $manifest ]] || continue
  dir=$(dirname "$manifest")
  "$py" -m build --outdir dist "$dir" >>"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log"; die "building $dir failed"; }
  requirements+=("$(basename "$dir")")
done
# pip collects from these files, not by name: a same-named project on the registry never wins.
core=dist/cytoreview-$version-py3-none-any.whl
cp "$core" "$bundle/wheelhouse/"
own=("$PWD/$core[app]")
for manifest in plugins/*/pyproject.toml; do
  [[ -f $manifest ]] || continue
  pkg=$(basename "$(dirname "$manifest")"); pkg=${pkg//-/_}
  newest=$(ls -t dist/"$pkg"-*.whl | head -n 1); cp "$newest" "$bundle/wheelhouse/"
  own+=("$PWD/$newest")
done

# -- Constraints for the variant -------------------------------------------------------------------
if [[ $variant == cpu ]]; then
  # Drop the CUDA stack (torch, torchvision, triton, nvidia-*, cuda-*) and pin the supplied pair.
  grep -viE '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==' "$constraints" > "$work/constraints.txt"
  for wheel in "$torch_wheels"/torch-*.whl "$torch_wheels"/torchvision-*.whl; do
    base=$(basename "$wheel"); echo "${base%%-*}==$(cut -d- -f2 <<<"$base")" >> "$work/constraints.txt"
    cp "$wheel" "$bundle/wheelhouse/"
  done
else
  cp "$constraints" "$work/constraints.txt"
fi
cp "$work/constraints.txt" "$bundle/constraints.txt"
printf '%s\n' "${requirements[@]}" > "$bundle/requirements.txt"

# -- Every dependency as a wheel for this platform and Python --------------------------------------
# pip wheel copies ready wheels and builds the rare sdist-only dependency into one, so install.sh
# never needs a compiler. The wheelhouse comes first, so the project's and the supplied torch
# wheels win over any other copy.
say "collecting every dependency as a wheel ($variant variant; the GPU one is ~3.5 GB)"
if ! "$py" -m pip wheel --disable-pip-version-check --wheel-dir "$bundle/wheelhouse" \
     --find-links "$bundle/wheelhouse" -c "$work/constraints.txt" \
     "${own[@]}" >"$work/wheel.log" 2>&1; then
  tail -n 30 "$work/wheel.log"; die "collecting the wheels failed"
fi
if [[ $variant == cpu ]] && ls "$bundle/wheelhouse" | grep -qE '^(nvidia_|triton-|cuda_)'; then
  die "the CPU variant pulled CUDA wheels: $(ls "$bundle/wheelhouse" | grep -E '^(nvidia_|triton-|cuda_)' | tr '\n' ' ')"
fi

# -- Check: the bundle alone resolves, with no index -----------------------------------------------
"$py" -m pip install --disable-pip-version-check --dry-run --ignore-installed --no-index \
  --find-links "$bundle/wheelhouse" -c "$bundle/constraints.txt" -r "$bundle/requirements.txt" \
  >"$work/check.log" 2>&1 || { tail -n 30 "$work/check.log"; die "the wheelhouse is incomplete"; }

# -- Install scripts, icon and desktop file, and what the bundle is ---------------------------------
cp installer/offline/install.sh installer/offline/install.ps1 "$bundle/"
mkdir -p "$bundle/resources"
for f in resources/cytoreview.desktop resources/cytoreview.svg resources/cytoreview.png resources/cytoreview.ico; do
  [[ -f $f ]] && cp "$f" "$bundle/resources/"
done
{
  echo "cytoreview=$version"
  echo "variant=$variant"
  echo "python=$pytag"
  echo "platform=$plat"
  echo "wheels=$(ls "$bundle/wheelhouse" | wc -l)"
} > "$bundle/BUNDLE"
size=$(du -sh "$bundle" | cut -f1)
say "bundle: $bundle ($size, $(ls "$bundle/wheelhouse" | wc -l) wheels)"
if ((tar)); then
  # Wheels are zip files already: a plain tar, no second compression.
  tar -cf "$out/$name.tar" -C "$out" "$name"
  say "archive: $out/$name.tar ($(du -sh "$out/$name.tar" | cut -f1))"
fi
