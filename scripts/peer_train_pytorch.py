#!/usr/bin/env python3
"""PyTorch peer of dsmoe's tfjs trainer, for `src/bench/train_kernels.ts` (docs/training-kernels.md).

Trains the same model (docs/design.md §1: RMSNorm, RoPE rotate_half, GQA causal attention with q/k/v biases,
dense MoE over all experts with the mutual-information loss, tied embeddings) on the same batch shape with AdamW
and global-norm clipping, on a given number of CPU threads, and prints one JSON line:
  {"torch": version, "blas": ..., "dtype": ..., "threads": n, "seconds_per_step": s, "losses": [...]}
Usage: peer_train_pytorch.py '<json config>'   (fields: see `main`).
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w  # (N, d)


def rope_tables(seq_len, hd, theta):
    half = hd // 2
    inv_freq = theta ** (-torch.arange(0, half, dtype=torch.float64) * 2 / hd)  # (half,)
    angle = torch.arange(seq_len, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, half)
    cos = torch.cat([angle.cos(), angle.cos()], -1).float()  # (T, hd)
    sin = torch.cat([angle.sin(), angle.sin()], -1).float()  # (T, hd)
    return cos, sin


def apply_rope(x, cos, sin):  # x (B, heads, T, hd)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


class Layer(torch.nn.Module):
    def __init__(self, c, std, residual_std):
        super().__init__()
        d, H, KV, E, I = c["hidden"], c["heads"], c["kv_heads"], c["experts"], c["intermediate"]
        hd = d // H
        self.c = c
        self.attn_norm = torch.nn.Parameter(torch.ones(d))
        self.qkv = torch.nn.Parameter(torch.randn(d, (H + 2 * KV) * hd) * std)  # (d, (H+2KV)·hd)
        self.qkv_bias = torch.nn.Parameter(torch.zeros((H + 2 * KV) * hd))
        self.o = torch.nn.Parameter(torch.randn(H * hd, d) * residual_std)  # (H·hd, d)
        self.mlp_norm = torch.nn.Parameter(torch.ones(d))
        self.router = torch.nn.Parameter(torch.randn(d, E) * std)  # (d, E)
        self.gate = torch.nn.Parameter(torch.randn(d, E * I) * std)  # (d, E·I) experts side by side
        self.up = torch.nn.Parameter(torch.randn(d, E * I) * std)  # (d, E·I)
        self.down = torch.nn.Parameter(torch.randn(E * I, d) * residual_std)  # (E·I, d)

    def forward(self, h, B, T, cos, sin, mask):
        c = self.c
        d, H, KV, E, I, eps = c["hidden"], c["heads"], c["kv_heads"], c["experts"], c["intermediate"], c["eps"]
        hd = d // H
        a = rms_norm(h, self.attn_norm, eps)  # (N, d)
        qkv = a @ self.qkv + self.qkv_bias  # (N, (H+2KV)·hd)
        q = qkv[:, : H * hd].view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        k = qkv[:, H * hd : (H + KV) * hd].view(B, T, KV, hd).transpose(1, 2)  # (B, KV, T, hd)
        v = qkv[:, (H + KV) * hd :].view(B, T, KV, hd).transpose(1, 2)  # (B, KV, T, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = H // KV
        k = k.repeat_interleave(group, dim=1)  # (B, H, T, hd)  head h reads kv head h // group
        v = v.repeat_interleave(group, dim=1)  # (B, H, T, hd)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask  # (B, H, T, T)
        o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B * T, H * hd)  # (N, H·hd)
        h = h + o @ self.o  # (N, d)
        m = rms_norm(h, self.mlp_norm, eps)  # (N, d)
        p = (m @ self.router).softmax(-1)  # (N, E) over all experts
        hidden = F.silu(m @ self.gate) * (m @ self.up)  # (N, E·I)
        weighted = (hidden.view(-1, E, I) * p[:, :, None]).view(-1, E * I)  # (N, E·I)
        return h + weighted @ self.down, p


def mutual_information_loss(p):  # p (N, E)
    safe_log = lambda q: q.clamp_min(1e-20).log()
    marginal = p.mean(0)  # (E,)
    marginal_entropy = -(marginal * safe_log(marginal)).sum()
    token_entropy = -(p * safe_log(p)).sum(-1)  # (N,)
    return token_entropy.mean() - marginal_entropy


class Model(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        std = 0.02
        residual_std = std / math.sqrt(2 * c["layers"])
        self.c = c
        self.embed = torch.nn.Parameter(torch.randn(c["vocab"], c["hidden"]) * std)  # (V, d), tied LM head
        self.norm = torch.nn.Parameter(torch.ones(c["hidden"]))
        self.layers = torch.nn.ModuleList([Layer(c, std, residual_std) for _ in range(c["layers"])])

    def forward(self, tokens, B, T, cos, sin, mask):
        h = F.embedding(tokens, self.embed)  # (N, d)
        probs = []
        for layer in self.layers:
            h, p = layer(h, B, T, cos, sin, mask)
            probs.append(p)
        logits = rms_norm(h, self.norm, self.c["eps"]) @ self.embed.t()  # (N, V)
        return logits, probs


def loaded_blas():
    """The BLAS library this process actually mapped (Debian's torch calls the system libblas.so.3 for f32)."""
    with open("/proc/self/maps") as maps:
        names = {line.split()[-1].rsplit("/", 1)[-1] for line in maps if "blas" in line.lower() or "mkl" in line.lower()}
    if any("openblas" in n for n in names):
        return "OpenBLAS (" + ", ".join(sorted(n for n in names if "openblas" in n)) + ")"
    if any("mkl" in n for n in names):
        return "MKL"
    return "reference BLAS (" + ", ".join(sorted(names)) + ")" if names else "unknown BLAS"


def main():
    cfg = json.loads(sys.argv[1])
    # model: vocab hidden layers heads kv_heads experts intermediate eps theta; batch, seq_len, steps, threads,
    # lr, beta1, beta2, adam_eps, weight_decay, grad_clip, mi_alpha, dtype ('f32' | 'bf16'), seed
    torch.set_num_threads(int(cfg["threads"]))
    torch.manual_seed(int(cfg.get("seed", 1234)))
    c = cfg["model"]
    B, T, steps = int(cfg["batch"]), int(cfg["seq_len"]), int(cfg["steps"])
    use_bf16 = cfg.get("dtype", "f32") == "bf16"
    model = Model(c)
    decayed = [p for n, p in model.named_parameters() if p.dim() == 2]
    plain = [p for n, p in model.named_parameters() if p.dim() != 2]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": cfg["weight_decay"]}, {"params": plain, "weight_decay": 0.0}],
        lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["adam_eps"],
    )
    cos, sin = rope_tables(T, c["hidden"] // c["heads"], c["theta"])
    mask = torch.full((T, T), -1e9).triu(1)  # (T, T) additive causal mask
    generator = torch.Generator().manual_seed(0)

    def step():
        tokens = torch.randint(0, c["vocab"], (B, T + 1), generator=generator)
        inputs, targets = tokens[:, :-1].reshape(-1), tokens[:, 1:].reshape(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            logits, probs = model(inputs, B, T, cos, sin, mask)
            lm = F.cross_entropy(logits.float(), targets)
            mi = torch.stack([mutual_information_loss(p.float()) for p in probs]).mean()
            loss = lm + cfg["mi_alpha"] * mi
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        optimizer.step()
        return float(loss)

    losses = [step()]  # warm-up: allocator, thread pool
    start = time.perf_counter()
    for _ in range(steps):
        losses.append(step())
    seconds = (time.perf_counter() - start) / steps
    blas = loaded_blas()
    print(json.dumps({
        "torch": torch.__version__, "blas": blas, "dtype": "bf16" if use_bf16 else "f32",
        "threads": torch.get_num_threads(), "seconds_per_step": seconds, "losses": losses,
    }))


if __name__ == "__main__":
    main()
