"""The DS-MoE decoder of docs/design.md §1 in PyTorch, with Qwen2-MoE module names so that `state_dict()` keys are
the dense checkpoint's tensor names (the run spec lists them from src/plan/tensor_table.ts and the checkpoint
writer checks the two agree). Dense training: the router's softmax covers every expert and every expert runs
(Qwen2-MoE with num_experts_per_tok = num_experts and norm_topk_prob = false)."""
import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))  # (d,)
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


def rope_tables(seq_len, head_dim, theta, device):
    """cos and sin (T, hd): angles in float64 like src/model/rope.ts, the half-table repeated twice."""
    half = head_dim // 2
    inv_freq = theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / head_dim)  # (half,)
    angles = torch.arange(seq_len, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, half)
    angles = torch.cat([angles, angles], dim=-1)  # (T, hd)
    return angles.cos().float().to(device), angles.sin().float().to(device)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.heads, self.kv_heads = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        self.head_dim = d // self.heads
        self.q_proj = nn.Linear(d, self.heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.heads * self.head_dim, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        hd, group = self.head_dim, self.heads // self.kv_heads
        q = self.q_proj(x).view(B, T, self.heads, hd).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(x).view(B, T, self.kv_heads, hd).transpose(1, 2)  # (B, KV, T, hd)
        v = self.v_proj(x).view(B, T, self.kv_heads, hd).transpose(1, 2)  # (B, KV, T, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(group, dim=1)  # (B, H, T, hd): query head h reads kv head h // group
        v = v.repeat_interleave(group, dim=1)  # (B, H, T, hd)
        if hasattr(F, "scaled_dot_product_attention"):  # torch >= 2.0: fused (flash) kernels on GPU
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hd)
        else:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (B, H, T, T)
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            weights = scores.masked_fill(causal, float("-inf")).softmax(-1)
            out = weights @ v  # (B, H, T, hd)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.heads * hd))  # (B, T, d)


class Expert(nn.Module):
    """down(silu(gate(x)) ⊙ up(x))"""

    def __init__(self, d, width):
        super().__init__()
        self.gate_proj = nn.Linear(d, width, bias=False)
        self.up_proj = nn.Linear(d, width, bias=False)
        self.down_proj = nn.Linear(width, d, bias=False)

    def forward(self, x, scale=None):
        hidden = F.silu(self.gate_proj(x)) * self.up_proj(x)  # (N, width)
        return self.down_proj(hidden if scale is None else hidden * scale)


class DenseMoE(nn.Module):
    """y = Σ_e p_e · expert_e(x) over ALL experts, p = softmax(router(x)) not renormalised; plus the shared expert
    scaled by sigmoid(x · w_sg) when the model has one. Returns y and p (N, E) in float32 for the MI loss."""

    def __init__(self, c):
        super().__init__()
        d, E = c["hidden_size"], c["num_experts"]
        self.gate = nn.Linear(d, E, bias=False)
        self.experts = nn.ModuleList(Expert(d, c["moe_intermediate_size"]) for _ in range(E))
        shared = c["shared_expert_intermediate_size"]
        self.shared_expert = Expert(d, shared) if shared > 0 else None
        self.shared_expert_gate = nn.Linear(d, 1, bias=False) if shared > 0 else None

    def forward(self, x):
        B, T, d = x.shape
        flat = x.reshape(B * T, d)  # (N, d)
        probs = self.gate(flat).float().softmax(-1)  # (N, E)
        weights = probs.to(flat.dtype)
        y = None
        for e, expert in enumerate(self.experts):
            # p_e scales the expert's hidden units before down_proj (= p_e · expert(x), by linearity), as the tfjs
            # model does: backward then keeps (N, I) per expert rather than the (N, d) expert output.
            term = expert(flat, weights[:, e : e + 1])  # (N, d)
            y = term if y is None else y + term
        if self.shared_expert is not None:
            y = y + torch.sigmoid(self.shared_expert_gate(flat)) * self.shared_expert(flat)
        return y.view(B, T, d), probs


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = DenseMoE(c)

    def forward(self, h, cos, sin):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        y, probs = self.mlp(self.post_attention_layernorm(h))
        return h + y, probs


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class DSMoEForCausalLM(nn.Module):
    """Forward: tokens (B, T) -> logits (B, T, V) and the router probabilities of every layer, each (B·T, E)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = Decoder(config)
        self.lm_head = None if config["tie_word_embeddings"] else nn.Linear(config["hidden_size"], config["vocab_size"], bias=False)
        self._rope = {}
        self.activation_checkpointing = False

    def initialize(self, seed):
        """normal(0, 0.02) matrices, output projections (o_proj, down_proj) scaled by 1/sqrt(2L), norms 1, biases 0:
        the distribution of src/model/params.ts (not its random numbers; start from a tfjs step-0 checkpoint for those)."""
        generator = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * self.config["num_hidden_layers"])
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if name.endswith("bias"):
                    parameter.zero_()
                elif parameter.dim() == 1:
                    parameter.fill_(1.0)
                else:
                    std = residual_std if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)

    def forward(self, tokens):
        B, T = tokens.shape
        key = (T, tokens.device)
        if key not in self._rope:
            c = self.config
            self._rope[key] = rope_tables(T, c["hidden_size"] // c["num_attention_heads"], c["rope_theta"], tokens.device)
        cos, sin = self._rope[key]
        h = self.model.embed_tokens(tokens)  # (B, T, d)
        all_probs = []
        for layer in self.model.layers:
            if self.activation_checkpointing and self.training:
                h, probs = torch.utils.checkpoint.checkpoint(layer, h, cos, sin, use_reentrant=False)
            else:
                h, probs = layer(h, cos, sin)
            all_probs.append(probs)
        h = self.model.norm(h)
        head = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight  # (V, d)
        return F.linear(h, head), all_probs


def safe_log(p):
    """log(max(p, 1e-20)), as src/model/routing_losses.ts: 0·log 0 = 0 without NaN gradients."""
    return torch.clamp(p, min=1e-20).log()


def entropy(p):
    return -(p * safe_log(p)).sum(-1)
