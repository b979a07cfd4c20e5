#!/usr/bin/env bash
# Train the paper-size CRUNet-MR w/ CA on one CUDA GPU in under 10 minutes and write its weights.
#   configs/gpu/train_10min.sh OUT_DIR [MINUTES]   (OUT_DIR/run: the run folder; OUT_DIR/weights/crunet_ca_paper)
# MINUTES: the training's wall-time budget (default 9; shipping adds well under a minute).
# Needs the project installed (make venv; offline: configs/gpu/offline.sh) and the real series of
# ../shared/data or $CRUNET_DATA_DIR.
set -euo pipefail
out="${1:?usage: configs/gpu/train_10min.sh OUT_DIR [MINUTES]}"
minutes="${2:-9}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
"$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: this script trains on a GPU")'
mkdir -p "$out"
"$py" -m crunet train --config "$here/configs/gpu/crunet_ca.yaml" --out "$out/run" --no-progress --max-minutes "$minutes"
"$py" -m crunet ship "$out/run" crunet_ca_paper --dest "$out/weights"
echo "weights: $out/weights/crunet_ca_paper (bfloat16 above 16 MiB; CARD.md beside them)"
