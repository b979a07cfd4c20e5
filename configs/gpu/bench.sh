#!/usr/bin/env bash
# Measure paper-size CRUNet-MR w/ CA on one CUDA GPU in under 10 minutes (at most 9.5 with every
# step at its limit); writes OUT_DIR/bench_gpu.json.
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
# Each measurement has its own time limit and a failure or timeout is reported, not fatal: what
# finished is merged at the end. torch.compile goes last (its compile time for this unrolled
# model is the unknown: 146 s per input shape on the project's CPU).
step() {  # step SECONDS NAME ARGS...: one `crunet bench` into $out/bench_gpu_NAME.json
  local limit="$1" name="$2"; shift 2
  timeout "$limit" "$py" -m crunet bench --device cuda --out "$out/bench_gpu_${name}.json" "$@" \
    || echo "bench step $name: exit status $? (124: over its ${limit} s)" >&2
}
net=(--what network --sizes 256 --coils 10 --repeats 5 --model-config configs/paper/crunet_ca.yaml)
step 90 network_12 "${net[@]}" --frames 12 --variants fp32 tf32 bf16
step 120 network_25 "${net[@]}" --frames 25 --variants fp32 tf32 bf16
step 120 methods --what methods --sizes 128 256 --coils 10 --repeats 4
step 150 network_25_compile "${net[@]}" --frames 25 --variants compile
step 90 network_12_compile "${net[@]}" --frames 12 --variants compile
"$py" - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
merged = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("bench_gpu_*.json"))}
(out / "bench_gpu.json").write_text(json.dumps(merged, indent=2))
print(f"results: {out / 'bench_gpu.json'}")
PY
