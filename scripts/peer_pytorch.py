#!/usr/bin/env python3
"""Peer timing for `dsmoe report`: one Mixture-of-Experts layer in PyTorch eager, run the way transformers runs
Qwen2-MoE (`Qwen2MoeSparseMoeBlock.forward`): softmax router over all experts, top-k without renormalisation
(norm_topk_prob = false), then a Python loop over the experts that received tokens, each gathering its tokens
(index_select), running its SwiGLU MLP (three nn.Linear without bias) and scattering the weighted result back
(index_add_). This is "what a user would run instead" on the same CPU and thread count.

Prints one JSON object on stdout:
  {"torch_version", "blas", "threads", "shape": {...}, "results": [{dtype, batch, k, min_ms, p50_ms, p95_ms,
   mean_ms, tokens_per_s, samples}]}
Only the standard library and torch are used.
"""
import argparse
import json
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, required=True, help="hidden_size d")
    p.add_argument("--experts", type=int, required=True, help="num_experts E")
    p.add_argument("--intermediate", type=int, required=True, help="moe_intermediate_size I")
    p.add_argument("--k", type=int, required=True, help="experts per token")
    p.add_argument("--batches", default="1,64", help="tokens per forward call, comma separated")
    p.add_argument("--dtypes", default="f32,bf16", help="f32 and/or bf16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20, help="timed calls per (dtype, batch)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def blas_library(torch):
    """Which BLAS the process actually mapped (Debian's torch links the libblas.so.3 alternative)."""
    a = torch.randn(64, 64)
    (a @ a).sum().item()
    try:
        with open("/proc/self/maps") as maps:
            text = maps.read().lower()
    except OSError:
        text = ""
    for name in ("mkl", "openblas", "blis", "atlas"):
        if name in text:
            return name
    if "libblas.so" in text:
        return "reference"
    config = torch.__config__.show()
    for part in config.replace(",", " ").split():
        if part.startswith("BLAS_INFO="):
            return part.split("=", 1)[1]
    return "unknown"


def percentile(samples, q):
    s = sorted(samples)
    rank = q / 100 * (len(s) - 1)
    lo, hi = int(rank // 1), int(-(-rank // 1))
    return s[lo] + (s[hi] - s[lo]) * (rank - lo)


def build_block(torch, d, E, I, k, dtype):
    nn = torch.nn
    F = torch.nn.functional

    class Expert(nn.Module):  # Qwen2MoeMLP
        def __init__(self):
            super().__init__()
            self.gate_proj = nn.Linear(d, I, bias=False)
            self.up_proj = nn.Linear(d, I, bias=False)
            self.down_proj = nn.Linear(I, d, bias=False)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class SparseMoeBlock(nn.Module):  # Qwen2MoeSparseMoeBlock without a shared expert
        def __init__(self):
            super().__init__()
            self.gate = nn.Linear(d, E, bias=False)
            self.experts = nn.ModuleList([Expert() for _ in range(E)])

        def forward(self, hidden_states):  # (T, d)
            router_logits = self.gate(hidden_states)  # (T, E)
            routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
            routing_weights, selected_experts = torch.topk(routing_weights, k, dim=-1)  # (T, k)
            routing_weights = routing_weights.to(hidden_states.dtype)
            final = torch.zeros_like(hidden_states)  # (T, d)
            expert_mask = F.one_hot(selected_experts, num_classes=E).permute(2, 1, 0)  # (E, k, T)
            expert_hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()
            for expert_idx in expert_hit:
                e = int(expert_idx)
                idx, top_x = torch.where(expert_mask[e])
                current = hidden_states.index_select(0, top_x)  # (n_e, d)
                out = self.experts[e](current) * routing_weights[top_x, idx, None]
                final.index_add_(0, top_x, out.to(hidden_states.dtype))
            return final

    block = SparseMoeBlock()
    for param in block.parameters():
        nn.init.normal_(param, std=0.02)
    return block.to(dtype).eval()


def main():
    args = parse_args()
    try:
        import torch
    except ImportError as error:
        print(json.dumps({"available": False, "reason": f"PyTorch not available ({error})"}))
        return 0
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    dtypes = {"f32": torch.float32, "bf16": torch.bfloat16}
    results = []
    with torch.inference_mode():
        for name in args.dtypes.split(","):
            block = build_block(torch, args.hidden, args.experts, args.intermediate, args.k, dtypes[name])
            for batch in [int(b) for b in args.batches.split(",")]:
                x = (torch.randn(batch, args.hidden) * 0.5).to(dtypes[name])  # (T, d)
                for _ in range(args.warmup):
                    block(x)
                samples = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    block(x)
                    samples.append((time.perf_counter() - t0) * 1000)
                mean_ms = statistics.fmean(samples)
                results.append({
                    "dtype": name, "batch": batch, "k": args.k,
                    "min_ms": min(samples), "p50_ms": percentile(samples, 50), "p95_ms": percentile(samples, 95), "mean_ms": mean_ms,
                    "tokens_per_s": batch / (mean_ms / 1000), "samples": len(samples),
                })
            del block
    print(json.dumps({
        "available": True,
        "torch_version": torch.__version__,
        "blas": blas_library(torch),
        "threads": torch.get_num_threads(),
        "shape": {"hidden": args.hidden, "experts": args.experts, "intermediate": args.intermediate, "k": args.k},
        "results": results,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
