#!/usr/bin/env bash
# One device call = one of these runs: build the GPU targets, run the gpu tests (full QTest
# output), then the benchmarks whose JSON goes to docs/benchmarks/. Each step is time-boxed so
# one slow step cannot eat the call; everything lands in OUT_DIR (tar it: a call returns at most
# 8 files).
# Usage on the GPU host, from the project root: tools/bench/device_run.sh RUN OUT_DIR
#   RUN: tc-prefill (h200-tc-prefill.json), final (h200-final.json), s10 (h200-s10.json), s11
#   (h200-s11.json), s11ab (that session's A/B calls), s12ab (the sorted-runs selection against
#   the others), s12 (h200-s12.json), s13ab (the step's fusions and PDL, on and off), s13
#   (h200-s13.json), s14 (h200-s14.json), s14ab, s14b, s14c and s14final (session 14's A/B
#   calls), tests (the gpu tests alone) or check (tests and a short timing after a refactor).
#   h200-sparse-ab.json came from tools/bench/device_run_sparse.sh of commit 7533ecd (an A/B of
#   kernels since removed).
set -uo pipefail
run="${1:?RUN}" out="${2:?OUT_DIR}"
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
  echo "== $name" >> "$out/summary.txt"
  grep -vE "^\s*$" "$out/$name.txt" | tail -24 >> "$out/summary.txt"
}
bench=build-gpu/app/resa-bench
# Session 14's end-to-end steps shared by its runs s14 and s14final: llama-3.1-8b with the folded
# rectification (the default) and the reference schedule; then the R1-1.5B shape the same way,
# and PyTorch.
s14_e2e_8b() {
  step e2e_8b 150 $bench --random-weights llama-3.1-8b --device cuda \
    --contexts 4096,32768,131072,262144 --modes dense,sparse,resa --repeats 128 \
    --prefill-tokens 32768 --json "$out/e2e_8b.json"
  step e2e_8b_ref 90 $bench --random-weights llama-3.1-8b --device cuda \
    --contexts 4096,32768,131072,262144 --modes resa --fold-rectification 0 --repeats 128 \
    --prefill-tokens 0 --json "$out/e2e_8b_ref.json"
}
s14_e2e_1p5b_torch() {
  step e2e_1p5b 60 $bench --random-weights r1-distill-qwen-1.5b --device cuda \
    --contexts 32768,262144 --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 \
    --json "$out/e2e_1p5b.json"
  step e2e_1p5b_ref 60 $bench --random-weights r1-distill-qwen-1.5b --device cuda \
    --contexts 32768,262144 --modes resa --fold-rectification 0 --repeats 128 \
    --prefill-tokens 0 --json "$out/e2e_1p5b_ref.json"
  step torch_baseline 150 python3 tools/bench/torch_baseline.py --contexts 4096,32768,262144 \
    --prefill-tokens 32768 --json "$out/torch_baseline.json"
}
step test_gpu_kernels 220 build-gpu/tests/test_gpu_kernels
step test_gpu_model 100 build-gpu/tests/test_gpu_model
# The model tests again with the fused selection at every context (the engine picks it only from
# about 11,000 blocks on, past the tests' contexts).
step test_gpu_model_fused_select 100 env RESA_FUSED_SELECT_MIN_BLOCKS=0 build-gpu/tests/test_gpu_model
# And without programmatic dependent launch (on by default; the GEMVs load weights before their
# wait), and with the decode step's fusions off (the separate RMSNorm, rope and kv_write launches).
step test_gpu_model_nopdl 100 env RESA_PDL=0 build-gpu/tests/test_gpu_model
step test_gpu_model_unfused 100 env RESA_STEP_FUSION=0 build-gpu/tests/test_gpu_model
grep -hE "^FAIL|^Totals" "$out/test_gpu_kernels.txt" "$out/test_gpu_model.txt" \
  "$out/test_gpu_model_fused_select.txt" "$out/test_gpu_model_nopdl.txt" \
  "$out/test_gpu_model_unfused.txt" | head -20
case "$run" in
  tc-prefill)
    step op_prefill_8b 60 $bench --op prefill --repeats 20 --json "$out/op_prefill_8b.json"
    step op_prefill_1p5b 60 $bench --op prefill --op-heads 12/2/128 --repeats 20 \
      --json "$out/op_prefill_1p5b.json"
    step r1_1p5b_256k 120 $bench --random-weights r1-distill-qwen-1.5b --device cuda \
      --contexts 262144 --modes dense,sparse,resa --repeats 64 --prefill-tokens 0 \
      --json "$out/r1_1p5b_256k.json"
    step llama8b 150 $bench --random-weights llama-3.1-8b --device cuda --contexts 4096,262144 \
      --modes dense,resa --repeats 64 --prefill-tokens 32768 --json "$out/llama8b.json"
    step torch_baseline 120 python3 tools/bench/torch_baseline.py --contexts 4096 \
      --prefill-tokens 32768 --json "$out/torch_baseline.json" ;;
  final)
    step ops 90 $bench --op all --contexts 32768,131072,262144 --repeats 100 --json "$out/ops.json"
    step ops_2kv 60 $bench --op attention --contexts 262144 --op-heads 12/2/128 --repeats 100 \
      --json "$out/ops_2kv.json"
    step e2e_8b 240 $bench --random-weights llama-3.1-8b --device cuda \
      --contexts 4096,32768,131072,262144 --modes dense,sparse,resa --repeats 256 \
      --prefill-tokens 4096,32768 --json "$out/e2e_8b.json"
    step e2e_8b_fold 90 $bench --random-weights llama-3.1-8b --device cuda --contexts 262144 \
      --modes resa --fold-rectification 1 --repeats 256 --prefill-tokens 0 --json "$out/e2e_8b_fold.json"
    step e2e_1p5b 120 $bench --random-weights r1-distill-qwen-1.5b --device cuda \
      --contexts 32768,262144 --modes dense,sparse,resa --repeats 256 --prefill-tokens 32768 \
      --json "$out/e2e_1p5b.json"
    step torch_baseline 180 python3 tools/bench/torch_baseline.py \
      --contexts 4096,32768,131072,262144 --prefill-tokens 4096,32768 \
      --json "$out/torch_baseline.json" ;;
  s10|s11)  # one call: kernels (every variant side by side), end to end, PyTorch (h200-s1x.json)
    # A kernel variant whose twin test failed is not used for the timings after it.
    if grep -qE "^FAIL.*attention_matches_cpu" "$out/test_gpu_kernels.txt"; then
      export RESA_DECODE_KERNEL=simt; echo "fast decode failed its test: simt used" | tee -a "$out/summary.txt"
    fi
    if grep -qE "^FAIL.*(topk|selection)_matches_cpu" "$out/test_gpu_kernels.txt"; then
      export RESA_TOPK_KERNEL=registers; echo "a top-k kernel failed its test: registers used" | tee -a "$out/summary.txt"
    fi
    step ops 120 $bench --op all --contexts 32768,131072,262144 --repeats 50 --json "$out/ops.json"
    step ops_2kv 40 $bench --op attention --contexts 32768,262144 --op-heads 12/2/128 --repeats 50 \
      --json "$out/ops_2kv.json"
    step e2e_8b 200 $bench --random-weights llama-3.1-8b --device cuda \
      --contexts 4096,32768,131072,262144 --modes dense,sparse,resa --repeats 128 \
      --prefill-tokens 32768 --json "$out/e2e_8b.json"
    step e2e_8b_pdl 60 env RESA_PDL=1 $bench --random-weights llama-3.1-8b --device cuda \
      --contexts 4096,262144 --modes dense,resa --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_8b_pdl.json"
    step torch_baseline 150 python3 tools/bench/torch_baseline.py \
      --contexts 4096,32768,131072,262144 --prefill-tokens 32768 --json "$out/torch_baseline.json"
    step e2e_1p5b 80 $bench --random-weights r1-distill-qwen-1.5b --device cuda \
      --contexts 32768,262144 --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_1p5b.json"
    if [ "$run" = s11 ]; then  # the selection kernels side by side, end to end
      step e2e_8b_regtopk 80 env RESA_TOPK_KERNEL=registers $bench --random-weights llama-3.1-8b \
        --device cuda --contexts 262144 --modes sparse,resa --repeats 128 --prefill-tokens 0 \
        --json "$out/e2e_8b_regtopk.json"
    fi ;;
  s11ab)  # session 11's A/B: every attention/selection variant, end to end with each kernel
    if grep -qE "^FAIL.*attention_matches_cpu" "$out/test_gpu_kernels.txt"; then
      export RESA_DECODE_KERNEL=simt; echo "fast decode failed its test: simt used" | tee -a "$out/summary.txt"
    fi
    if grep -qE "^FAIL.*(topk|selection)_matches_cpu" "$out/test_gpu_kernels.txt"; then
      export RESA_TOPK_KERNEL=loop; echo "a top-k kernel failed its test: loop used" | tee -a "$out/summary.txt"
    fi
    step ops 150 $bench --op attention --contexts 32768,131072,262144 --repeats 50 --json "$out/ops.json"
    step ops_2kv 60 $bench --op attention --contexts 32768,262144 --op-heads 12/2/128 --repeats 50 \
      --json "$out/ops_2kv.json"
    for keys in 128 512; do
      step ops_msk$keys 60 env RESA_DECODE_MIN_SPLIT_KEYS=$keys $bench --op attention \
        --contexts 32768,262144 --repeats 50 --json "$out/ops_msk$keys.json"
    done
    step e2e_8b 150 $bench --random-weights llama-3.1-8b --device cuda --contexts 4096,262144 \
      --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 --json "$out/e2e_8b.json"
    step e2e_8b_simt 120 env RESA_DECODE_KERNEL=simt $bench --random-weights llama-3.1-8b \
      --device cuda --contexts 4096,262144 --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_8b_simt.json"
    step e2e_8b_regtopk 80 env RESA_TOPK_KERNEL=registers $bench --random-weights llama-3.1-8b \
      --device cuda --contexts 262144 --modes sparse,resa --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_8b_regtopk.json"
    step e2e_1p5b 80 $bench --random-weights r1-distill-qwen-1.5b --device cuda \
      --contexts 32768,262144 --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_1p5b.json" ;;
  s12ab)  # session 12: the sorted-runs selection (kSorted, then the default) against kFused and
    # kRegisters, kernels and end to end
    if grep -qE "^FAIL.*(topk|selection)_matches_cpu" "$out/test_gpu_kernels.txt"; then
      export RESA_TOPK_KERNEL=registers; echo "a top-k kernel failed its test: registers used" | tee -a "$out/summary.txt"
    fi
    step ops 150 $bench --op attention --contexts 16384,32768,65536,131072,262144 --repeats 50 \
      --json "$out/ops.json"
    step ops_2kv 60 $bench --op attention --contexts 32768,262144 --op-heads 12/2/128 --repeats 50 \
      --json "$out/ops_2kv.json"
    for v in sorted fused registers; do
      case $v in sorted) e=();; fused) e=(RESA_TOPK_KERNEL=fused);; registers) e=(RESA_TOPK_KERNEL=registers);; esac
      step e2e_8b_$v 90 env "${e[@]}" RESA_FUSED_SELECT_MIN_BLOCKS=0 $bench --random-weights llama-3.1-8b \
        --device cuda --contexts 32768,262144 --modes sparse,resa --repeats 128 --prefill-tokens 0 \
        --json "$out/e2e_8b_$v.json"
    done
    step e2e_8b 120 $bench --random-weights llama-3.1-8b --device cuda --contexts 4096,262144 \
      --modes dense,resa --repeats 128 --prefill-tokens 0 --json "$out/e2e_8b.json"
    step e2e_1p5b 80 $bench --random-weights r1-distill-qwen-1.5b --device cuda \
      --contexts 32768,262144 --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_1p5b.json" ;;
  s12)  # session 12's check of its final tree: the kernels side by side (the fused selection's
    # barrier against the previous one, RESA_COOP_BARRIER=gen) and end to end (h200-s12.json)
    step ops 90 $bench --op attention --contexts 32768,131072,262144 --repeats 50 --json "$out/ops.json"
    step ops_gen 90 env RESA_COOP_BARRIER=gen $bench --op attention --contexts 32768,131072,262144 \
      --repeats 50 --json "$out/ops_gen.json"
    step ops_2kv 40 $bench --op attention --contexts 32768,262144 --op-heads 12/2/128 --repeats 50 \
      --json "$out/ops_2kv.json"
    step e2e_8b 120 $bench --random-weights llama-3.1-8b --device cuda --contexts 4096,262144 \
      --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 --json "$out/e2e_8b.json"
    step e2e_8b_gen 60 env RESA_COOP_BARRIER=gen $bench --random-weights llama-3.1-8b --device cuda \
      --contexts 262144 --modes sparse,resa --repeats 128 --prefill-tokens 0 --json "$out/e2e_8b_gen.json"
    step e2e_1p5b 60 $bench --random-weights r1-distill-qwen-1.5b --device cuda --contexts 262144 \
      --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 --json "$out/e2e_1p5b.json" ;;
  s13ab)  # session 13: the step's fusions (RMSNorm into the GEMV, rope into kv_write) and
    # programmatic dependent launch with weights loaded before the wait, each on and off
    for v in fused fused_pdl unfused unfused_pdl; do
      case $v in
        fused) e=(RESA_PDL=0);; fused_pdl) e=(RESA_PDL=1);;
        unfused) e=(RESA_STEP_FUSION=0 RESA_PDL=0);; unfused_pdl) e=(RESA_STEP_FUSION=0 RESA_PDL=1);;
      esac
      step gemv_$v 60 env "${e[@]}" $bench --op gemv --repeats 50 --json "$out/gemv_$v.json"
      step e2e_8b_$v 90 env "${e[@]}" $bench --random-weights llama-3.1-8b --device cuda \
        --contexts 4096,32768,262144 --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 \
        --json "$out/e2e_8b_$v.json"
    done
    for v in plain pdl; do
      case $v in plain) e=(RESA_PDL=0);; pdl) e=(RESA_PDL=1);; esac
      step ops_$v 90 env "${e[@]}" $bench --op attention --contexts 32768,131072,262144 \
        --repeats 50 --json "$out/ops_$v.json"
      step e2e_1p5b_$v 60 env "${e[@]}" $bench --random-weights r1-distill-qwen-1.5b --device cuda \
        --contexts 32768,262144 --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 \
        --json "$out/e2e_1p5b_$v.json"
    done ;;
  s13)  # session 13's final tree: every kernel, the whole step with and without its fusions, PDL
    # and the GEMVs' common carveout, the R1-1.5B shape and PyTorch, side by side (h200-s13.json)
    step ops 150 $bench --op all --contexts 4096,32768,131072,262144 --repeats 50 \
      --json "$out/ops.json"
    step gemv_nopdl 60 env RESA_PDL=0 $bench --op gemv --repeats 50 --json "$out/gemv_nopdl.json"
    step gemv_nocarve 60 env RESA_GEMV_CARVEOUT=0 $bench --op gemv --repeats 50 \
      --json "$out/gemv_nocarve.json"
    step gemv_unfused 60 env RESA_STEP_FUSION=0 $bench --op gemv --repeats 50 \
      --json "$out/gemv_unfused.json"
    step e2e_8b 150 $bench --random-weights llama-3.1-8b --device cuda \
      --contexts 4096,32768,131072,262144 --modes dense,sparse,resa --repeats 128 \
      --prefill-tokens 32768 --json "$out/e2e_8b.json"
    step e2e_8b_nopdl 100 env RESA_PDL=0 $bench --random-weights llama-3.1-8b --device cuda \
      --contexts 4096,32768,131072,262144 --modes dense,sparse,resa --repeats 128 \
      --prefill-tokens 0 --json "$out/e2e_8b_nopdl.json"
    for v in nocarve nocarve_nopdl unfused; do
      case $v in
        nocarve) e=(RESA_GEMV_CARVEOUT=0);; nocarve_nopdl) e=(RESA_GEMV_CARVEOUT=0 RESA_PDL=0);;
        unfused) e=(RESA_STEP_FUSION=0);;
      esac
      step e2e_8b_$v 60 env "${e[@]}" $bench --random-weights llama-3.1-8b --device cuda \
        --contexts 4096,262144 --modes dense,resa --repeats 128 --prefill-tokens 0 \
        --json "$out/e2e_8b_$v.json"
    done
    step e2e_1p5b 60 $bench --random-weights r1-distill-qwen-1.5b --device cuda \
      --contexts 32768,262144 --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_1p5b.json"
    step e2e_1p5b_nopdl 60 env RESA_PDL=0 $bench --random-weights r1-distill-qwen-1.5b \
      --device cuda --contexts 32768,262144 --modes dense,sparse,resa --repeats 128 \
      --prefill-tokens 0 --json "$out/e2e_1p5b_nopdl.json"
    step torch_baseline 150 python3 tools/bench/torch_baseline.py --contexts 4096,262144 \
      --prefill-tokens 32768 --json "$out/torch_baseline.json" ;;
  s14ab)  # session 14's first call (commit 12b2859): the sparse step's deep ring
    # (RESA_DECODE_RING), the one-pass combine, the rectification's 128-row CTAs
    # (RESA_PREFILL_ROWS) and the folded rectification (then a pass of f + 1 tokens)
    for v in deep shallow; do
      step test_attention_ring_$v 120 env RESA_DECODE_RING=$v build-gpu/tests/test_gpu_kernels \
        attention_matches_cpu
    done
    for v in default shallow deep; do
      case $v in default) e=();; *) e=(RESA_DECODE_RING=$v);; esac
      step ops_$v 90 env "${e[@]}" $bench --op attention --contexts 4096,32768,131072,262144 \
        --repeats 50 --json "$out/ops_$v.json"
    done
    for rows in 64 128; do
      step prefill_rows$rows 60 env RESA_PREFILL_ROWS=$rows $bench --op prefill --repeats 20 \
        --json "$out/prefill_rows$rows.json"
    done
    step e2e_8b 120 $bench --random-weights llama-3.1-8b --device cuda --contexts 4096,32768,262144 \
      --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 --json "$out/e2e_8b.json"
    step e2e_8b_fold 60 $bench --random-weights llama-3.1-8b --device cuda --contexts 262144 \
      --modes resa --fold-rectification 1 --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_8b_fold.json"
    step e2e_8b_shallow 60 env RESA_DECODE_RING=shallow $bench --random-weights llama-3.1-8b \
      --device cuda --contexts 262144 --modes sparse,resa --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_8b_shallow.json"
    step e2e_8b_rows128 60 env RESA_PREFILL_ROWS=128 $bench --random-weights llama-3.1-8b \
      --device cuda --contexts 262144 --modes resa --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_8b_rows128.json"
    step e2e_1p5b 60 $bench --random-weights r1-distill-qwen-1.5b --device cuda \
      --contexts 32768,262144 --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_1p5b.json" ;;
  s14b)  # session 14's second call (commit d839562): kernels on both rings, the step with and
    # without the o_proj prefetch into L2 (RESA_L2_PREFETCH, removed after it), the folded
    # rectification, the R1-1.5B shape and PyTorch
    step test_gpu_model_nol2 100 env RESA_L2_PREFETCH=0 RESA_FUSED_SELECT_MIN_BLOCKS=0 \
      build-gpu/tests/test_gpu_model
    step ops 120 $bench --op attention --contexts 4096,32768,131072,262144 --repeats 50 \
      --json "$out/ops.json"
    step prefill 60 $bench --op prefill --repeats 20 --json "$out/prefill.json"
    step e2e_8b 150 $bench --random-weights llama-3.1-8b --device cuda \
      --contexts 4096,32768,131072,262144 --modes dense,sparse,resa --repeats 128 \
      --prefill-tokens 32768 --json "$out/e2e_8b.json"
    step e2e_8b_fold 90 $bench --random-weights llama-3.1-8b --device cuda \
      --contexts 32768,131072,262144 --modes resa --fold-rectification 1 --repeats 128 \
      --prefill-tokens 0 --json "$out/e2e_8b_fold.json"
    step e2e_8b_nol2 90 env RESA_L2_PREFETCH=0 $bench --random-weights llama-3.1-8b --device cuda \
      --contexts 131072,262144 --modes sparse,resa --fold-rectification 1 --repeats 128 \
      --prefill-tokens 0 --json "$out/e2e_8b_nol2.json"
    step e2e_8b_l2 90 $bench --random-weights llama-3.1-8b --device cuda \
      --contexts 131072,262144 --modes sparse --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_8b_l2.json"
    step e2e_1p5b 60 $bench --random-weights r1-distill-qwen-1.5b --device cuda \
      --contexts 32768,262144 --modes dense,sparse,resa --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_1p5b.json"
    step e2e_1p5b_fold 60 $bench --random-weights r1-distill-qwen-1.5b --device cuda \
      --contexts 262144 --modes resa --fold-rectification 1 --repeats 128 --prefill-tokens 0 \
      --json "$out/e2e_1p5b_fold.json"
    step torch_baseline 150 python3 tools/bench/torch_baseline.py --contexts 4096,32768,262144 \
      --prefill-tokens 32768 --json "$out/torch_baseline.json" ;;
  s14c)  # session 14's third call (commit 1103537): the cluster top-k (RESA_TOPK_KERNEL=cluster,
    # RESA_TOPK_CLUSTER) and the K/V copies' L2 policy (RESA_KV_EVICT_FIRST), kernels and end to
    # end; the kernel and both switches were removed after it
    step test_gpu_model_cluster 100 env RESA_TOPK_KERNEL=cluster build-gpu/tests/test_gpu_model
    step ops 120 $bench --op attention --contexts 4096,32768,131072,262144 --repeats 50 \
      --json "$out/ops.json"
    step ops_c16 90 env RESA_TOPK_CLUSTER=16 $bench --op attention --contexts 32768,262144 \
      --repeats 50 --json "$out/ops_c16.json"
    step ops_c4 90 env RESA_TOPK_CLUSTER=4 $bench --op attention --contexts 32768,262144 \
      --repeats 50 --json "$out/ops_c4.json"
    for v in default cluster noevict; do
      case $v in
        default) e=();; cluster) e=(RESA_TOPK_KERNEL=cluster);; noevict) e=(RESA_KV_EVICT_FIRST=0);;
      esac
      step e2e_8b_$v 90 env "${e[@]}" $bench --random-weights llama-3.1-8b --device cuda \
        --contexts 4096,32768,131072,262144 --modes dense,sparse,resa --fold-rectification 1 \
        --repeats 128 --prefill-tokens 0 --json "$out/e2e_8b_$v.json"
    done
    step e2e_1p5b_cluster 60 env RESA_TOPK_KERNEL=cluster $bench --random-weights \
      r1-distill-qwen-1.5b --device cuda --contexts 32768,262144 --modes dense,sparse,resa \
      --fold-rectification 1 --repeats 128 --prefill-tokens 0 --json "$out/e2e_1p5b_cluster.json" ;;
  s14)  # session 14's final figures (h200-s14.json, commit 8f1decf): the kernels on both rings,
    # the step with the folded rectification (the default) and the reference schedule, the
    # prefill's 3-tile pipeline (RESA_PREFILL_STAGES=3, a switch removed after it) against 2, the
    # R1-1.5B shape, PyTorch
    step test_attention_stages3 120 env RESA_PREFILL_STAGES=3 build-gpu/tests/test_gpu_kernels \
      attention_matches_cpu
    step test_gpu_model_stages3 100 env RESA_PREFILL_STAGES=3 build-gpu/tests/test_gpu_model
    step ops 120 $bench --op attention --contexts 4096,32768,131072,262144 --repeats 50 \
      --json "$out/ops.json"
    step prefill 60 $bench --op prefill --repeats 20 --json "$out/prefill.json"
    step prefill_st3 60 env RESA_PREFILL_STAGES=3 $bench --op prefill --repeats 20 \
      --json "$out/prefill_st3.json"
    s14_e2e_8b
    step e2e_8b_st3 90 env RESA_PREFILL_STAGES=3 $bench --random-weights llama-3.1-8b \
      --device cuda --contexts 131072,262144 --modes resa --repeats 128 --prefill-tokens 32768 \
      --json "$out/e2e_8b_st3.json"
    s14_e2e_1p5b_torch ;;
  s14final)  # session 14's fifth call (commit fc2a7cc): as s14, with the sparse read's block ids
    # in shared memory against reads from global memory (RESA_DECODE_ID_CACHE=0; the same
    # times, so the cache and its switch were removed after it)
    step test_attention_noid 120 env RESA_DECODE_ID_CACHE=0 build-gpu/tests/test_gpu_kernels \
      attention_matches_cpu
    step ops 120 $bench --op attention --contexts 4096,32768,131072,262144 --repeats 50 \
      --json "$out/ops.json"
    step ops_noid 90 env RESA_DECODE_ID_CACHE=0 $bench --op attention --contexts 32768,262144 \
      --repeats 50 --json "$out/ops_noid.json"
    step prefill 60 $bench --op prefill --repeats 20 --json "$out/prefill.json"
    s14_e2e_8b
    step e2e_8b_noid 90 env RESA_DECODE_ID_CACHE=0 $bench --random-weights llama-3.1-8b \
      --device cuda --contexts 131072,262144 --modes sparse,resa --repeats 128 \
      --prefill-tokens 0 --json "$out/e2e_8b_noid.json"
    s14_e2e_1p5b_torch ;;
  tests) ;;  # the gpu tests above alone
  check)  # after a refactor: the gpu tests above, and a short timing to compare with s10
    step ops 60 $bench --op attention --contexts 262144 --repeats 50 --json "$out/ops.json"
    step e2e_8b 80 $bench --random-weights llama-3.1-8b --device cuda --contexts 4096,262144 \
      --modes dense,resa --repeats 128 --prefill-tokens 0 --json "$out/e2e_8b.json" ;;
  *) echo "device_run: unknown run '$run' (tc-prefill, final, s10, s11, s11ab, s12ab, s12, s13ab, s13, s14ab, s14b, s14c, s14, s14final, tests, check)" >&2; exit 2 ;;
esac
cat "$out/summary.txt"
