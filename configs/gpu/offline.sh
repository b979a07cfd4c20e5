#!/usr/bin/env bash
# Train and measure the paper-size model on a GPU machine without network access, from a bundle.
#   configs/gpu/offline.sh BUNDLE_DIR OUT_DIR [all|train|bench] [TRAIN_MINUTES]
# BUNDLE_DIR comes from configs/gpu/bundle.sh (wheels for the machine's CPython, the real training
# series). Run from anywhere; the machine's python3 must hold a CUDA PyTorch (>= 2.1) with numpy,
# scipy, h5py, matplotlib, pyyaml, safetensors, tqdm and threadpoolctl, as CUDA images usually do.
# The bundle's wheels go into a private folder ($CRUNET_SITE, default /tmp/crunet-site) on
# PYTHONPATH, and the series are linked into one folder ($CRUNET_BUNDLE_DATA, default /tmp/crunet-data)
# that training reads: nothing is installed into the machine's Python and the checkout is used in place.
#   train: configs/gpu/train_10min.sh (default TRAIN_MINUTES 9) -> OUT_DIR/train/weights/crunet_ca_paper,
#          also packed as OUT_DIR/crunet_ca_paper.tar.gz (weights, config, manifest, card, curves);
#   bench: configs/gpu/bench.sh -> OUT_DIR/bench/bench_gpu.json;
#   all (default): both, train first.
set -euo pipefail
bundle="$(cd "${1:?usage: configs/gpu/offline.sh BUNDLE_DIR OUT_DIR [all|train|bench] [TRAIN_MINUTES]}" && pwd)"
out="${2:?usage: configs/gpu/offline.sh BUNDLE_DIR OUT_DIR [all|train|bench] [TRAIN_MINUTES]}"
what="${3:-all}"
minutes="${4:-9}"
case "$what" in all|train|bench) ;; *) echo "what must be all, train or bench, got '$what'" >&2; exit 2;; esac
here="$(cd "$(dirname "$0")/../.." && pwd)"
site="${CRUNET_SITE:-/tmp/crunet-site}"
export PYTHON="${PYTHON:-python3}"
ls "$bundle"/wheels/*.whl >/dev/null 2>&1 || { echo "$bundle/wheels holds no wheels (configs/gpu/bundle.sh)" >&2; exit 2; }
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$bundle"/wheels/*.whl
export PYTHONPATH="$site:$here${PYTHONPATH:+:$PYTHONPATH}"
# the series folder training reads: the bundle's series and the repository's (from_repository.txt), linked
data="${CRUNET_BUNDLE_DATA:-/tmp/crunet-data}"
mkdir -p "$data"
ln -sf "$bundle"/data/*.npz "$data"/
while read -r name; do
  [ -z "$name" ] || ln -sf "$here/data/$name" "$data/$name"
done < "$bundle/data/from_repository.txt"
export CRUNET_DATA_DIR="$data"
"$PYTHON" -c 'import torch, ismrmrd, crunet.cli; from recon.metrics.piq_haarpsi import load_piq_haarpsi; load_piq_haarpsi(); print("project importable, torch", torch.__version__)'
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if [ "$what" != bench ]; then
  "$here/configs/gpu/train_10min.sh" "$out/train" "$minutes"
  tar -czf "$out/crunet_ca_paper.tar.gz" -C "$out/train/weights" crunet_ca_paper
  echo "weights packed: $out/crunet_ca_paper.tar.gz"
fi
if [ "$what" != train ]; then
  "$here/configs/gpu/bench.sh" "$out/bench"
fi
