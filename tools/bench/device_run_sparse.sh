#!/usr/bin/env bash
# One device call for the sparse-path kernels (top-k in shared memory, pipelined sparse decode):
# build, gpu tests with their full QTest output, the --op attention rows old vs new for 8 and 2
# KV heads, then end to end new vs old kernels side by side. Results into OUT_DIR.
# Usage on the GPU host, from the project root: tools/bench/device_run_sparse.sh OUT_DIR
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
step op_attn_8kv 60 build-gpu/app/resa-bench --op attention --contexts 32768,262144 --op-heads 32/8/128 \
  --repeats 100 --json "$out/op_attn_8kv.json"
step op_attn_2kv 60 build-gpu/app/resa-bench --op attention --contexts 262144 --op-heads 12/2/128 \
  --repeats 100 --json "$out/op_attn_2kv.json"
step e2e_8b 120 build-gpu/app/resa-bench --random-weights llama-3.1-8b --device cuda --contexts 262144 \
  --modes dense,sparse,resa --repeats 64 --prefill-tokens 0 --json "$out/e2e_8b.json"
RESA_SELECT_KERNEL=old RESA_SPARSE_KERNEL=old step e2e_8b_old 120 build-gpu/app/resa-bench \
  --random-weights llama-3.1-8b --device cuda --contexts 262144 --modes sparse,resa --repeats 64 \
  --prefill-tokens 0 --json "$out/e2e_8b_old.json"
step e2e_1p5b 120 build-gpu/app/resa-bench --random-weights r1-distill-qwen-1.5b --device cuda \
  --contexts 262144 --modes dense,sparse,resa --repeats 64 --prefill-tokens 0 --json "$out/e2e_1p5b.json"
RESA_SELECT_KERNEL=old RESA_SPARSE_KERNEL=old step e2e_1p5b_old 120 build-gpu/app/resa-bench \
  --random-weights r1-distill-qwen-1.5b --device cuda --contexts 262144 --modes sparse,resa \
  --repeats 64 --prefill-tokens 0 --json "$out/e2e_1p5b_old.json"
for f in op_attn_8kv op_attn_2kv e2e_8b e2e_8b_old e2e_1p5b e2e_1p5b_old; do
  echo "== $f"; grep -vE "^\s*$" "$out/$f.txt" | tail -16
done
