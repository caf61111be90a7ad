#!/usr/bin/env bash
# One device call: build the GPU targets, run the gpu-labelled tests, then the benchmarks whose
# JSON goes to docs/benchmarks/ (each step time-boxed so one slow step cannot eat the call).
# Usage on the GPU host, from the project root: tools/bench/device_run.sh OUT_DIR
set -uo pipefail
out="${1:?OUT_DIR}"
mkdir -p "$out"
source .device/env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.total --format=csv > "$out/gpu.txt"
git rev-parse HEAD > "$out/commit.txt" 2>/dev/null || true
git status --short > "$out/status.txt" 2>/dev/null || true
cmake -S . -B build-gpu -G Ninja $RESA_DEVICE_CMAKE_ARGS -DRESA_GUI=OFF -DCMAKE_BUILD_TYPE=Release \
  > "$out/cmake.txt" 2>&1
t0=$(date +%s)
cmake --build build-gpu -j16 --target test_gpu_kernels test_gpu_model resa-bench > "$out/build.txt" 2>&1 \
  || { tail -40 "$out/build.txt"; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
step() {  # step NAME SECONDS COMMAND...
  local name=$1 secs=$2; shift 2
  local s=$(date +%s)
  timeout "$secs" "$@" > "$out/$name.txt" 2>&1
  echo "$name rc=$? $(( $(date +%s) - s )) s"
}
step ctest_gpu 200 ctest --test-dir build-gpu -L gpu --output-on-failure
grep -E "FAIL!|Totals|tests passed|Failed" "$out/ctest_gpu.txt" | head -20
step op_prefill_8b 60 build-gpu/app/resa-bench --op prefill --repeats 20 --json "$out/op_prefill_8b.json"
step op_prefill_1p5b 60 build-gpu/app/resa-bench --op prefill --op-heads 12/2/128 --repeats 20 \
  --json "$out/op_prefill_1p5b.json"
step r1_1p5b_256k 120 build-gpu/app/resa-bench --random-weights r1-distill-qwen-1.5b --device cuda \
  --contexts 262144 --modes dense,sparse,resa --repeats 64 --prefill-tokens 0 --json "$out/r1_1p5b_256k.json"
step llama8b 150 build-gpu/app/resa-bench --random-weights llama-3.1-8b --device cuda \
  --contexts 4096,262144 --modes dense,resa --repeats 64 --prefill-tokens 32768 --json "$out/llama8b.json"
step torch_baseline 120 python3 tools/bench/torch_baseline.py --contexts 4096 --prefill-tokens 32768 \
  --json "$out/torch_baseline.json"
for f in op_prefill_8b op_prefill_1p5b r1_1p5b_256k llama8b torch_baseline; do
  echo "== $f"; grep -vE "^\s*$" "$out/$f.txt" | tail -14
done
