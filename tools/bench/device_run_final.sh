#!/usr/bin/env bash
# The figures of README.md and docs/benchmarks/NOTES.md in one device call: build, the gpu tests
# with their full QTest output, per-kernel timings, end to end for llama-3.1-8b and
# r1-distill-qwen-1.5b shapes (random bf16 weights), and the PyTorch baseline, side by side.
# Usage on the GPU host, from the project root: tools/bench/device_run_final.sh OUT_DIR
set -uo pipefail
out="${1:?OUT_DIR}"
mkdir -p "$out"
source .device/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt"
git rev-parse HEAD > "$out/commit.txt" 2>/dev/null || true
git status --short > "$out/status.txt" 2>/dev/null || true
cmake -S . -B build-gpu -G Ninja $RESA_DEVICE_CMAKE_ARGS -DRESA_GUI=OFF -DCMAKE_BUILD_TYPE=Release \
  > "$out/cmake.txt" 2>&1
cmake --build build-gpu -j16 --target test_gpu_kernels test_gpu_model resa-bench > "$out/build.txt" 2>&1 \
  || { tail -40 "$out/build.txt"; exit 1; }
step() {  # step NAME SECONDS COMMAND...
  local name=$1 secs=$2; shift 2
  local s=$(date +%s)
  timeout "$secs" "$@" > "$out/$name.txt" 2>&1
  echo "$name rc=$? $(( $(date +%s) - s )) s"
}
step test_gpu_kernels 150 build-gpu/tests/test_gpu_kernels
step test_gpu_model 100 build-gpu/tests/test_gpu_model
grep -hE "^FAIL|^Totals" "$out/test_gpu_kernels.txt" "$out/test_gpu_model.txt" | head -20
step ops 90 build-gpu/app/resa-bench --op all --contexts 32768,131072,262144 --repeats 100 \
  --json "$out/ops.json"
step ops_2kv 60 build-gpu/app/resa-bench --op attention --contexts 262144 --op-heads 12/2/128 \
  --repeats 100 --json "$out/ops_2kv.json"
step e2e_8b 240 build-gpu/app/resa-bench --random-weights llama-3.1-8b --device cuda \
  --contexts 4096,32768,131072,262144 --modes dense,sparse,resa --repeats 256 \
  --prefill-tokens 4096,32768 --json "$out/e2e_8b.json"
step e2e_8b_fold 90 build-gpu/app/resa-bench --random-weights llama-3.1-8b --device cuda \
  --contexts 262144 --modes resa --fold-rectification --repeats 256 --prefill-tokens 0 \
  --json "$out/e2e_8b_fold.json"
step e2e_1p5b 120 build-gpu/app/resa-bench --random-weights r1-distill-qwen-1.5b --device cuda \
  --contexts 32768,262144 --modes dense,sparse,resa --repeats 256 --prefill-tokens 32768 \
  --json "$out/e2e_1p5b.json"
step torch_baseline 180 python3 tools/bench/torch_baseline.py --contexts 4096,32768,131072,262144 \
  --prefill-tokens 4096,32768 --json "$out/torch_baseline.json"
for f in ops ops_2kv e2e_8b e2e_8b_fold e2e_1p5b torch_baseline; do
  echo "== $f"; grep -vE "^\s*$" "$out/$f.txt" | tail -24
done
