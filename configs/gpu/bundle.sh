#!/usr/bin/env bash
# Bundle what a GPU machine without network access needs to train and measure the paper-size model.
#   configs/gpu/bundle.sh BUNDLE_DIR [PYTHON_VERSION]      (run where PyPI is reachable; default 3.12)
# Writes
#   BUNDLE_DIR/wheels/  binary wheels (manylinux x86_64, that CPython version) of the project's
#                       dependencies that a CUDA image with PyTorch, numpy, scipy, h5py, matplotlib,
#                       pyyaml, safetensors, tqdm and threadpoolctl lacks: ismrmrd, xsdata, gadgetron,
#                       multimethod, pyFFTW, piq (versions pinned below, those `make venv` installs);
#   BUNDLE_DIR/data/    the real cine series training reads (../shared/data or $CRUNET_DATA_DIR), copied,
#                       except those the repository ships identically in data/ (the held-out patient):
#                       their names go to data/from_repository.txt and offline.sh takes them from data/.
# Then, on the GPU machine, from the repository root: configs/gpu/offline.sh BUNDLE_DIR OUT_DIR
# (installs the wheels into a private folder, trains, ships and measures; see there).
set -euo pipefail
bundle="${1:?usage: configs/gpu/bundle.sh BUNDLE_DIR [PYTHON_VERSION]}"
pyver="${2:-3.12}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
[ -x "$py" ] || py=python3
# One pin per package; keep in step with setup.py (gadgetron's pin) and the Makefile (piq).
pins=(ismrmrd==1.15.0 xsdata==26.10 gadgetron==1.4.1 multimethod==2.1 pyFFTW==0.15.1 piq==0.8.0)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
mkdir -p "$bundle/wheels" "$bundle/data"
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  "${platforms[@]}" -d "$bundle/wheels" "${pins[@]}"
data="$("$py" -c 'import sys; sys.path.insert(0, sys.argv[1])
from recon.simulate.realdata import default_data_dir
d = default_data_dir()
print(d or "")' "$here")"
if [ -z "$data" ]; then
  echo "no folder of real cine series found (../shared/data or \$CRUNET_DATA_DIR): $bundle/data stays empty," \
       "and training there would fall back to the phantom" >&2
  exit 2
fi
: > "$bundle/data/from_repository.txt"
for f in "$data"/*.npz; do
  name="$(basename "$f")"
  if [ -f "$here/data/$name" ] && cmp -s "$f" "$here/data/$name"; then
    echo "$name" >> "$bundle/data/from_repository.txt"
  else
    cp "$f" "$bundle/data/"
  fi
done
echo "bundle: $bundle ($(ls "$bundle/wheels" | wc -l) wheels for CPython $pyver, $(ls "$bundle/data"/*.npz | wc -l) series" \
     "from $data and $(wc -l < "$bundle/data/from_repository.txt") from data/, $(du -sh "$bundle" | cut -f1))"
