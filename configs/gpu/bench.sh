#!/usr/bin/env bash
# Measure paper-size CRUNet-MR w/ CA on one CUDA GPU in under 10 minutes; writes OUT_DIR/bench_gpu.json.
#   configs/gpu/bench.sh OUT_DIR
# The network alone (64 channels, 5 cascades, 256 x 256, 12 and 25 frames, 10 coils; random weights,
# speed does not depend on them) in fp32, TF32, bf16 and compiled with CUDA graphs, per slice with
# peak memory; the whole chain with ESPIRiT maps; the methods side by side (zf, SENSE, L+S and the
# shipped CPU-size crunet_ca on the GPU). Needs the project installed (make venv); no data.
set -euo pipefail
out="${1:?usage: configs/gpu/bench.sh OUT_DIR}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
"$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: this script measures a GPU")'
mkdir -p "$out"
cd "$here"
for frames in 12 25; do
  timeout 240 "$py" -m crunet bench --what network --device cuda --sizes 256 --coils 10 --frames "$frames" \
    --repeats 5 --model-config configs/paper/crunet_ca.yaml --out "$out/bench_gpu_network_${frames}.json"
done
timeout 240 "$py" -m crunet bench --what methods --device cuda --sizes 128 256 --coils 10 --repeats 4 \
  --out "$out/bench_gpu_methods.json"
"$py" - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
merged = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("bench_gpu_*.json"))}
(out / "bench_gpu.json").write_text(json.dumps(merged, indent=2))
print(f"results: {out / 'bench_gpu.json'}")
PY
