#!/usr/bin/env python3
"""PyTorch baseline for resa-bench, on the same GPU in the same run (issue 7, item 6).

gpt-fast-style batch-1 decode of a Llama-shaped model with random bf16 weights: a static KV
cache, fused q/k/v and gate/up matrices, scaled_dot_product_attention restricted to the flash
backend, and each decode step captured in a CUDA graph and replayed. Also times the attention
alone (the same shapes as `resa-bench --op attention`), torch.topk over the block scores, and
prefill (one causal flash pass per chunk).

Usage:
  python3 tools/bench/torch_baseline.py --preset llama-3.1-8b --contexts 4096,32768 \
      --prefill-tokens 4096 --json out.json
Figures are medians of CUDA-event timings after warm-up.
"""
import argparse
import json
import math
import subprocess
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

PRESETS = {  # vocab, hidden, inter, layers, heads, kv_heads, rope theta
    "llama-3.1-8b": (128256, 4096, 14336, 32, 32, 8, 500000.0),
    "mistral-7b": (32000, 4096, 14336, 32, 32, 8, 1e6),
    "tinyllama-1.1b": (32000, 2048, 5632, 22, 32, 4, 10000.0),
}


def timed(fn, warmup=5, repeats=50):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return {"median_ms": times[len(times) // 2], "p10_ms": times[len(times) // 10],
            "p90_ms": times[min(len(times) - 1, len(times) * 9 // 10)]}


def graphed(fn):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g.replay


def copy_bandwidth():
    n = 1 << 29
    a = torch.empty(n, dtype=torch.uint8, device="cuda").fill_(1)
    b = torch.empty_like(a)
    t = timed(lambda: b.copy_(a), repeats=20)
    return 2 * n / (t["median_ms"] * 1e6)


def rope_tables(max_pos, head_dim, theta):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device="cuda", dtype=torch.float32) / head_dim))
    ang = torch.outer(torch.arange(max_pos, device="cuda", dtype=torch.float32), inv)
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin):  # x [B, H, T, D], cos/sin [T, D/2]
    h = x.shape[-1] // 2
    a, b = x[..., :h].float(), x[..., h:].float()
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1).to(x.dtype)


class Model:
    def __init__(self, preset, cap):
        V, H, I, L, NH, KV, theta = PRESETS[preset]
        self.V, self.H, self.I, self.L, self.NH, self.KV = V, H, I, L, NH, KV
        self.D = H // NH
        g = torch.Generator(device="cuda").manual_seed(0)
        r = lambda *s: (torch.randn(*s, device="cuda", dtype=torch.bfloat16, generator=g) * 0.02)
        self.embed = r(V, H)
        self.head = r(V, H)
        self.layers = [dict(wqkv=r((NH + 2 * KV) * self.D, H), wo=r(H, NH * self.D),
                            w13=r(2 * I, H), w2=r(H, I),
                            n1=torch.ones(H, device="cuda", dtype=torch.bfloat16),
                            n2=torch.ones(H, device="cuda", dtype=torch.bfloat16)) for _ in range(L)]
        self.norm = torch.ones(H, device="cuda", dtype=torch.bfloat16)
        self.k = [torch.randn(1, KV, cap, self.D, device="cuda", dtype=torch.bfloat16) for _ in range(L)]
        self.v = [torch.randn(1, KV, cap, self.D, device="cuda", dtype=torch.bfloat16) for _ in range(L)]
        self.cos, self.sin = rope_tables(cap + 1, self.D, theta)

    def weight_bytes(self):
        n = self.embed.numel() * 0 + self.head.numel()
        for l in self.layers:
            n += l["wqkv"].numel() + l["wo"].numel() + l["w13"].numel() + l["w2"].numel()
        return 2 * n

    def forward(self, tokens, pos, ctx):
        """tokens [T] at positions pos..pos+T-1; attention over the cache [0, ctx)."""
        T = tokens.shape[0]
        x = self.embed[tokens]
        cos, sin = self.cos[pos:pos + T], self.sin[pos:pos + T]
        for i, l in enumerate(self.layers):
            h = F.rms_norm(x, (self.H,), l["n1"], 1e-5)
            qkv = h @ l["wqkv"].t()
            q, k, v = qkv.split([self.NH * self.D, self.KV * self.D, self.KV * self.D], dim=-1)
            q = apply_rope(q.view(T, self.NH, self.D).transpose(0, 1)[None], cos, sin)
            k = apply_rope(k.view(T, self.KV, self.D).transpose(0, 1)[None], cos, sin)
            v = v.view(T, self.KV, self.D).transpose(0, 1)[None]
            self.k[i][:, :, pos:pos + T] = k
            self.v[i][:, :, pos:pos + T] = v
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                o = F.scaled_dot_product_attention(q, self.k[i][:, :, :ctx], self.v[i][:, :, :ctx],
                                                   is_causal=T > 1, enable_gqa=True)
            x = x + o[0].transpose(0, 1).reshape(T, -1) @ l["wo"].t()
            h = F.rms_norm(x, (self.H,), l["n2"], 1e-5)
            g, u = (h @ l["w13"].t()).chunk(2, dim=-1)
            x = x + (F.silu(g) * u) @ l["w2"].t()
        return F.rms_norm(x[-1:], (self.H,), self.norm, 1e-5) @ self.head.t()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="llama-3.1-8b")
    ap.add_argument("--contexts", default="4096,32768")
    ap.add_argument("--prefill-tokens", default="4096")
    ap.add_argument("--op-only", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    ctxs = [int(c) for c in a.contexts.split(",") if c]
    out = {"meta": {"command": " ".join(sys.argv), "device": torch.cuda.get_device_name(),
                    "torch": torch.__version__, "copy_gb_per_s": copy_bandwidth()}}
    try:
        out["meta"]["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                               text=True).stdout.strip()
    except OSError:
        pass
    copy = out["meta"]["copy_gb_per_s"]
    print(f"torch {torch.__version__} on {out['meta']['device']}, copy {copy:.0f} GB/s")

    # Attention alone (32 query heads, 8 KV heads, d 128) and topk over 16-token block scores.
    ops = []
    for ctx in ctxs:
        q = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(1, 8, ctx, 128, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)

        def att():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        t = timed(graphed(att), repeats=100)
        by = 2 * 8 * ctx * 128 * 2
        ops.append({"op": "sdpa_flash_decode", "context": ctx, "us_median": 1e3 * t["median_ms"],
                    "gb_per_s": by / (t["median_ms"] * 1e6)})
        nb = (ctx + 15) // 16
        s = torch.randn(8, nb, device="cuda")
        kk = max(16, math.ceil(nb * 0.1))
        t2 = timed(graphed(lambda: torch.topk(s, kk, dim=-1)), repeats=100)
        ops.append({"op": "torch_topk", "context": ctx, "us_median": 1e3 * t2["median_ms"], "k": kk})
        print(f"ctx {ctx}: sdpa flash decode {1e3 * t['median_ms']:.1f} us "
              f"({by / (t['median_ms'] * 1e6):.0f} GB/s), topk {1e3 * t2['median_ms']:.1f} us")
        del q, k, v
    out["ops"] = ops

    if not a.op_only:
        rows = []
        prefill = []
        for n in [int(x) for x in a.prefill_tokens.split(",") if x and x != "0"]:
            m = Model(a.preset, n + 1)
            toks = torch.randint(3, m.V, (n,), device="cuda")
            with torch.no_grad():
                t = timed(lambda: m.forward(toks, 0, n), warmup=1, repeats=3)
            prefill.append({"tokens": n, "ms": t["median_ms"], "tokens_per_s": n / (t["median_ms"] / 1e3)})
            print(f"prefill {n}: {t['median_ms']:.1f} ms, {n / (t['median_ms'] / 1e3):.0f} tok/s")
            del m
            torch.cuda.empty_cache()
        for ctx in ctxs:
            m = Model(a.preset, ctx + 1)
            tok = torch.randint(3, m.V, (1,), device="cuda")
            with torch.no_grad():
                step = graphed(lambda: m.forward(tok, ctx, ctx + 1))
                t = timed(step, warmup=5, repeats=64)
            kv_bytes = m.L * 2 * m.KV * (ctx + 1) * m.D * 2
            by = m.weight_bytes() + kv_bytes
            rows.append({"context": ctx, "mode": "dense", "step_ms_median": t["median_ms"],
                         "step_ms_p10": t["p10_ms"], "step_ms_p90": t["p90_ms"],
                         "decode_tokens_per_s": 1e3 / t["median_ms"], "bytes_per_step": by,
                         "achieved_gb_per_s": by / (t["median_ms"] * 1e6),
                         "fraction_of_copy_bandwidth": by / (t["median_ms"] * 1e6) / copy})
            print(f"decode ctx {ctx}: {t['median_ms']:.3f} ms/step, {1e3 / t['median_ms']:.1f} tok/s, "
                  f"{by / (t['median_ms'] * 1e6):.0f} GB/s")
            del m, step
            torch.cuda.empty_cache()
        out["prefill"] = prefill
        out["decode"] = rows
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
