#!/usr/bin/env python3
"""PyTorch peer of dsmoe_cuda_bench's MoE layer: the same layer at 64 x 512 tokens on the same card.

Layer (docs/design.md §1): p = softmax(m · router^T) over 32 experts, top-k (13 = DS-MoE-1B's 41 %, and 32 = dense),
y = sum_e p_e · down_e(silu(gate_e(m)) * up_e(m)), weights bf16 [E, 2I, d] / [E, d, I] as the plan packs them.
Two implementations, the best one is the figure dsmoe is compared with:
  per_expert_loop   sort tokens by expert, one cuBLAS GEMM pair per expert, index_add combine (Mixtral/HF style)
  grouped_mm        torch._grouped_mm over the sorted rows (CUTLASS grouped GEMM), when this torch build has it
Timing: torch.cuda.Event around the whole layer (router included, as in dsmoe_cuda_bench), 3 warm-ups, 10 timed runs.
Prints one JSON line per figure naming the card.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

T, D, E, I = 64 * 512, 2048, 32, 256


def emit(**kv):
    print(json.dumps(kv), flush=True)


def time_it(fn, reps=10, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[0], times[len(times) // 2]


def main():
    if not torch.cuda.is_available():
        print("skipped: no GPU")
        return 0
    card = torch.cuda.get_device_name(0)
    dev = "cuda"
    torch.manual_seed(0)
    m = torch.randn(T, D, device=dev).to(torch.bfloat16)                                 # (T, d)
    router = torch.randn(E, D, device=dev) / math.sqrt(D)                                # (E, d) f32
    gate_up = (torch.randn(E, 2 * I, D, device=dev) / math.sqrt(D)).to(torch.bfloat16)  # (E, 2I, d)
    down = (torch.randn(E, D, I, device=dev) / math.sqrt(I)).to(torch.bfloat16)         # (E, d, I)
    emit(bench="torch_device", card=card, torch=torch.__version__, cuda=torch.version.cuda)

    def route(k):
        probs = torch.softmax(m.float() @ router.t(), dim=-1)  # (T, E)
        w, ids = probs.topk(k, dim=-1)                         # (T, k), descending
        flat = ids.flatten()                                   # (T k)
        order = torch.argsort(flat, stable=True)               # rows grouped by expert
        return flat, order, order // k, w.flatten()[order]

    def per_expert_loop(k):
        flat, order, tok, wt = route(k)
        counts = torch.bincount(flat, minlength=E).tolist()    # the loop needs the sizes on the host
        xs = m[tok]                                            # (N, d)
        out = torch.zeros(T, D, device=dev)
        start = 0
        for e in range(E):
            c = counts[e]
            if c == 0:
                continue
            gu = xs[start:start + c] @ gate_up[e].t()          # (c, 2I)
            h = F.silu(gu[:, :I]) * gu[:, I:]                  # (c, I)
            y = (h @ down[e].t()).float() * wt[start:start + c, None]
            out.index_add_(0, tok[start:start + c], y)
            start += c
        return out

    def grouped(k):
        flat, order, tok, wt = route(k)
        offs = torch.cumsum(torch.bincount(flat, minlength=E), 0).to(torch.int32)  # (E) row ends
        xs = m[tok]                                                                 # (N, d)
        gu = torch._grouped_mm(xs, gate_up.transpose(1, 2), offs=offs)             # (N, 2I)
        h = F.silu(gu[:, :I]) * gu[:, I:]
        y = torch._grouped_mm(h, down.transpose(1, 2), offs=offs)                  # (N, d)
        out = torch.zeros(T, D, device=dev)
        out.index_add_(0, tok, y.float() * wt[:, None])
        return out

    for k in (13, E):
        flops = 2.0 * T * k * 3 * I * D + 2.0 * T * E * D
        results = {}
        ref = None
        for name, fn in (("per_expert_loop", per_expert_loop), ("grouped_mm", grouped)):
            if name == "grouped_mm" and not hasattr(torch, "_grouped_mm"):
                emit(bench="moe_layer_torch", card=card, impl=name, k=k, error="torch._grouped_mm not in this build")
                continue
            try:
                with torch.no_grad():
                    out = fn(k)
                    torch.cuda.synchronize()
                    rel = None
                    if ref is None:
                        ref = out
                    else:
                        rel = float((out - ref).norm() / ref.norm())
                    best, med = time_it(lambda: fn(k))
            except Exception as exc:  # an unsupported arch or layout in this torch build: report, keep the others
                emit(bench="moe_layer_torch", card=card, impl=name, k=k, error=f"{type(exc).__name__}: {exc}"[:300])
                continue
            results[name] = best
            emit(bench="moe_layer_torch", card=card, impl=name, tokens=T, d=D, E=E, I=I, k=k, ms_best=round(best, 4),
                 ms_median=round(med, 4), tflops=round(flops / (best * 1e-3) / 1e12, 1), rel_diff_vs_loop=rel)
            del out
        if results:
            impl = min(results, key=results.get)
            emit(bench="moe_layer_torch_best", card=card, k=k, impl=impl, ms_best=round(results[impl], 4))
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
