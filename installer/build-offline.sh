#!/usr/bin/env bash
# Build an offline bundle: one folder (and a .tar of it) with every wheel that CytoReview, its
# app extra and the plugins in plugins/ need on one platform and Python, plus install.sh and
# install.ps1. Copy it to a machine with no network and run its install.sh (or install.ps1).
#   installer/build-offline.sh                       GPU variant (torch CUDA build, onnxruntime-gpu)
#   installer/build-offline.sh --variant cpu --torch-wheels DIR
#                                                    CPU variant: torch and torchvision from DIR
#   installer/build-offline.sh --platform win_amd64 --variant cpu
#                                                    Windows, CPU (PyPI's Windows torch is CPU-only)
#   --platform P   win_amd64 or linux_x86_64 (default: this machine's)
#   --python X.Y   the target's Python, 3.11 or 3.12 (default: the building Python's)
#   --out DIR      where the bundle folder and .tar go (default dist/offline)
#   --no-tar       the folder only
# Needs the registry (or PIP_FIND_LINKS) once, here; the bundle needs nothing. PYTHON=... is the
# Python that builds (default .venv/bin/python, with `build`; `uv` too for another target).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1mbuild-offline:\033[0m %s\n' "$*"; }
die() { say "$*"; exit 1; }

variant=gpu torch_wheels="" out=dist/offline tar=1 platform="" target_py=""
while (($#)); do
  case $1 in
    --variant) variant=$2; shift 2 ;;
    --torch-wheels) torch_wheels=$2; shift 2 ;;
    --platform) platform=$2; shift 2 ;;
    --python) target_py=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-tar) tar=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
py=${PYTHON:-.venv/bin/python}
[[ -x $py ]] || command -v "$py" >/dev/null || die "no Python at $py (run installer/setup.sh --dev, or set PYTHON)"
"$py" -c 'import build' 2>/dev/null || die "$py has no 'build' module (pip install build)"

# -- Which target: this machine, or another platform or Python (resolved by uv, see below) -------
host_py=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
host_plat=$("$py" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))')
pytag=${target_py:-$host_py}
plat=${platform:-$host_plat}
[[ $pytag == 3.11 || $pytag == 3.12 ]] || die "--python is 3.11 or 3.12 (what CytoReview supports), not $pytag"
cross=0
[[ $pytag != "$host_py" || $plat != "$host_plat" ]] && cross=1
case $plat in
  win_amd64) uv_plat=x86_64-pc-windows-msvc; pip_plats=(win_amd64) ;;
  linux_x86_64)
    uv_plat=x86_64-manylinux_2_28
    pip_plats=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64 linux_x86_64) ;;
  *) ((cross)) && die "--platform is win_amd64 or linux_x86_64, not $plat" ;;
esac
if ((cross)); then
  # pip evaluates dependencies' environment markers against the machine it runs on, so a
  # Windows bundle resolved by pip would miss colorama and pywin32 and ask for Linux's CUDA
  # wheels: uv resolves for the target, then pip downloads exactly that list.
  "$py" -m uv --version >/dev/null 2>&1 || die "building for $plat / Python $pytag needs uv in $py (pip install uv; installer/setup.sh --dev has it)"
fi

# -- Which torch: the constraints' CUDA build, or a CPU build --------------------------------------
constraints=installer/constraints.txt
case $variant in
  gpu)
    # PyPI's torch for Windows is the CPU build; a CUDA build there comes from PyTorch's index.
    [[ $plat != win_amd64 || -n $torch_wheels ]] || die "PyPI's torch for Windows is CPU-only: use --variant cpu, or bring a CUDA torch and torchvision pair with --torch-wheels DIR"
    ;;
  cpu)
    # PyPI serves only CUDA builds of torch for Linux; CPU-only builds live on PyTorch's own
    # index, which a locked-down build machine may not reach: the caller supplies the pair.
    # (Windows needs none: PyPI's Windows torch is the CPU build.)
    if [[ $plat != win_amd64 ]]; then
      [[ -n $torch_wheels ]] || die "the CPU variant needs --torch-wheels DIR with a CPU-only torch and torchvision wheel pair (from PyTorch's CPU index); PyPI has none for Linux"
    fi
    ;;
  *) die "--variant is gpu or cpu, not $variant" ;;
esac
if [[ -n $torch_wheels ]]; then
  ls "$torch_wheels"/torch-*.whl >/dev/null 2>&1 || die "no torch-*.whl in $torch_wheels"
  ls "$torch_wheels"/torchvision-*.whl >/dev/null 2>&1 || die "no torchvision-*.whl in $torch_wheels"
fi

version=$("$py" -c 'import re,pathlib; print(re.search(r"__version__ = \"(.+?)\"", pathlib.Path("cytoreview/__init__.py").read_text())[1])')
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
if [[ -n $torch_wheels ]]; then
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

# -- Every dependency as a wheel for the target platform and Python --------------------------------
if ((cross)); then
  # uv resolves for the target (markers evaluated there, wheels only), with the project's wheels
  # and any supplied torch pair as local files; pip then downloads that exact list.
  say "resolving for $plat, Python $pytag ($variant variant)"
  links=(--find-links "$bundle/wheelhouse")
  [[ -n $torch_wheels ]] && links+=(--find-links "$torch_wheels")
  if ! "$py" -m uv pip compile --quiet --no-header --no-annotate --only-binary :all: \
       --python-platform "$uv_plat" --python-version "$pytag" "${links[@]}" \
       -c "$work/constraints.txt" "$bundle/requirements.txt" -o "$work/lock.txt" >"$work/lock.log" 2>&1; then
    tail -n 30 "$work/lock.log"; die "no set of wheels for $plat and Python $pytag satisfies the constraints"
  fi
  grep -v -E '^cytoreview([-_][a-z0-9]+)?==' "$work/lock.txt" > "$work/download.txt"
  abis=(--abi "cp${pytag/./}" --abi abi3 --abi none)
  say "downloading $(wc -l < "$work/download.txt") wheels"
  if ! "$py" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
       --dest "$bundle/wheelhouse" "${links[@]}" --python-version "$pytag" --implementation cp \
       "${abis[@]}" "${pip_plats[@]/#/--platform=}" -r "$work/download.txt" >"$work/wheel.log" 2>&1; then
    tail -n 30 "$work/wheel.log"; die "downloading the wheels failed"
  fi
  # The bundle installs exactly what was resolved for its platform.
  cp "$work/lock.txt" "$bundle/constraints.txt"
else
  # pip wheel copies ready wheels and builds the rare sdist-only dependency into one, so
  # install.sh never needs a compiler. The wheelhouse comes first, so the project's and the
  # supplied torch wheels win over any other copy.
  say "collecting every dependency as a wheel ($variant variant; the GPU one is ~3.5 GB)"
  if ! "$py" -m pip wheel --disable-pip-version-check --wheel-dir "$bundle/wheelhouse" \
       --find-links "$bundle/wheelhouse" -c "$work/constraints.txt" \
       "${own[@]}" >"$work/wheel.log" 2>&1; then
    tail -n 30 "$work/wheel.log"; die "collecting the wheels failed"
  fi
fi
if [[ $variant == cpu ]] && ls "$bundle/wheelhouse" | grep -qE '^(nvidia_|triton-|cuda_)'; then
  die "the CPU variant pulled CUDA wheels: $(ls "$bundle/wheelhouse" | grep -E '^(nvidia_|triton-|cuda_)' | tr '\n' ' ')"
fi

# -- Check: the bundle alone resolves, with no index -----------------------------------------------
if ((cross)); then  # resolved for the target, from the wheelhouse alone
  "$py" -m uv pip compile --quiet --no-index --only-binary :all: --python-platform "$uv_plat" \
    --python-version "$pytag" --find-links "$bundle/wheelhouse" -c "$bundle/constraints.txt" \
    "$bundle/requirements.txt" -o "$work/check.txt" >"$work/check.log" 2>&1
else
  "$py" -m pip install --disable-pip-version-check --dry-run --ignore-installed --no-index \
    --find-links "$bundle/wheelhouse" -c "$bundle/constraints.txt" -r "$bundle/requirements.txt" \
    >"$work/check.log" 2>&1
fi || { tail -n 30 "$work/check.log"; die "the wheelhouse is incomplete"; }

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
