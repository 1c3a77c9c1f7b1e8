#!/usr/bin/env python3
"""Fixtures made by transformers itself for dsmoe's import and export tests (issue 8, docs/interop.md).

Needs transformers 5.x and PyTorch; no internet (every config is built here, nothing is downloaded).

    python scripts/make_hf_fixtures.py                  # writes test/fixtures/hf/<name>/ for every architecture,
                                                        # then checks dsmoe's exports in test/fixtures/hf/dsmoe_export*/
    python scripts/make_hf_fixtures.py --out DIR        # the same, every file written under DIR instead (the GPU
                                                        # run's $OUT; copy DIR/* to test/fixtures/hf/ and commit)

Per architecture fixture (qwen2_moe, qwen2_moe_sharded_bf16, olmoe, mixtral): a tiny random model saved with
save_pretrained (safetensors), our byte-level tokenizer, and reference.json holding the logits transformers computes
(float32, eager attention) for a fixed token sequence, plus the tensor names transformers wrote (so the tests see
whether this transformers version saves per-expert or fused experts) and the mean next-token loss over them.

Round trip: test/fixtures/hf/dsmoe_export/ (exported top-2) and dsmoe_export_dense/ (exported with k = E, the
dense model) are written by `dsmoe export` (committed; test/interop/transformers_parity.test.ts rewrites them with
DSMOE_WRITE_HF_FIXTURES=1, together with dsmoe.json: dsmoe's own logits and loss on the fixed tokens). This script
loads each with AutoModelForCausalLM / AutoTokenizer and writes transformers.json: missing / unexpected / mismatched
keys, the class loaded, the token ids of a fixed text, the logits and the loss; it compares them with dsmoe.json
at once (relative difference < 1e-3 for both) and exits 1 when they differ. The TypeScript tests compare all of it
again with dsmoe's own.
"""
import argparse
import json
import math
import os
import shutil
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "hf")
EXPORTS = ["dsmoe_export", "dsmoe_export_dense"]  # exported top-2 and exported dense (k = E)
PARITY = 1e-3  # relative difference allowed between transformers and dsmoe, logits (max-abs scale) and loss
TOKENS = [3, 250, 17, 99, 42, 7, 256, 128, 64, 5, 200, 31]
TEXT = "In the beginning God created the heaven and the earth.<|endoftext|>"
MIN_MARGIN = 1e-3  # smallest allowed gap between the k-th and (k+1)-th router probability (no near-ties)


def bytes_to_unicode():
    """GPT-2's byte ↔ printable character table (the same as src/data/byte_level.ts)."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 256
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(extra)
            extra += 1
    return table


def write_byte_tokenizer(folder, max_length):
    """dsmoe's byte tokenizer (ids 0..255 are bytes, 256 is <|endoftext|>), written as dsmoe writes it."""
    table = bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    vocab["<|endoftext|>"] = 256
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": 256, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": dict(byte_level, trim_offsets=False),
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []},
    }
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "bos_token": None,
                   "unk_token": None, "pad_token": None, "model_max_length": max_length,
                   "clean_up_tokenization_spaces": False}, f)


def rope(theta):
    """transformers 5 spells RoPE as rope_parameters; rope_theta is written too for transformers 4."""
    return {"rope_parameters": {"rope_type": "default", "rope_theta": theta}, "rope_theta": theta}


COMMON = dict(vocab_size=260, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              num_experts_per_tok=2, max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False,
              hidden_act="silu", attn_implementation="eager")


def build(arch):
    if arch == "qwen2_moe":
        config = transformers.Qwen2MoeConfig(**COMMON, num_experts=4, moe_intermediate_size=12,
                                             shared_expert_intermediate_size=10, intermediate_size=32,
                                             norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[],
                                             use_sliding_window=False, qkv_bias=True, **rope(10000.0))
        return transformers.Qwen2MoeForCausalLM(config)
    if arch == "olmoe":
        config = transformers.OlmoeConfig(**COMMON, num_experts=4, intermediate_size=12, norm_topk_prob=False,
                                          clip_qkv=None, attention_bias=False, **rope(10000.0))
        return transformers.OlmoeForCausalLM(config)
    if arch == "mixtral":
        config = transformers.MixtralConfig(**COMMON, num_local_experts=4, intermediate_size=12, sliding_window=None,
                                            **rope(1e6))
        return transformers.MixtralForCausalLM(config)
    raise ValueError(arch)


def randomize(model, seed):
    """Every parameter random (biases, q/k norms and the shared-expert gate included), so that each one matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.4 * noise)


def router_margin(model, k):
    """Smallest gap p_(k) − p_(k+1) over every layer and token: a near-tie could flip top-k between implementations."""
    inputs, margins = [], []
    hooks = []
    for layer in model.model.layers:
        block = getattr(layer, "block_sparse_moe", None) or layer.mlp
        hooks.append(block.gate.register_forward_hook(lambda module, args, out: inputs.append((module, args[0]))))
    with torch.no_grad():
        model(torch.tensor([TOKENS]))
    for h in hooks:
        h.remove()
    for module, x in inputs:
        probs = torch.softmax(x.reshape(-1, x.shape[-1]).double() @ module.weight.double().T, dim=-1)
        top = probs.sort(dim=-1, descending=True).values
        margins.append(float((top[:, k - 1] - top[:, k]).min()))
    return min(margins)


def logits_of(model):
    with torch.no_grad():
        return model(torch.tensor([TOKENS])).logits[0].double().tolist()


def next_token_loss(logits, tokens):
    """Mean cross-entropy of tokens[t + 1] given logits row t, in nats (what `dsmoe eval` reports), float64."""
    rows = torch.tensor(logits, dtype=torch.float64)[:-1]
    return float(torch.nn.functional.cross_entropy(rows, torch.tensor(tokens[1:])))


def relative_difference(a, b):
    """max |a - b| / max |b| over every element (as test/helpers/hf_fixtures.ts relativeDifference)."""
    a = torch.tensor(a, dtype=torch.float64)
    b = torch.tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max())


def make_fixture(root, name, arch, sharded=False, bf16=False):
    folder = os.path.join(root, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for seed in range(100):
        torch.manual_seed(seed)
        model = build(arch).eval()
        randomize(model, seed)
        if bf16:
            model = model.to(torch.bfloat16).to(torch.float32)  # the logits are those of the bf16-rounded weights
        if router_margin(model, model.config.num_experts_per_tok) > MIN_MARGIN:
            break
    else:
        sys.exit(f"{name}: no seed without a router near-tie")
    to_save = model.to(torch.bfloat16) if bf16 else model
    to_save.save_pretrained(folder, max_shard_size="8KB" if sharded else "50GB")
    model = model.to(torch.float32)
    write_byte_tokenizer(folder, model.config.max_position_embeddings)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    names = sorted(_saved_names(folder))
    reference = {
        "architecture": arch,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "seed": seed,
        "saved_dtype": "bfloat16" if bf16 else "float32",
        "tokens": TOKENS,
        "num_experts_per_tok": model.config.num_experts_per_tok,
        "router_margin": router_margin(model, model.config.num_experts_per_tok),
        "saved_tensor_names": names,
        "text": TEXT,
        "text_ids": tokenizer(TEXT)["input_ids"],
        "logits": logits_of(model),
    }
    reference["loss"] = next_token_loss(reference["logits"], TOKENS)
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(reference, f)
    print(f"{name}: seed {seed}, {len(names)} tensors, files {sorted(os.listdir(folder))}")


def _saved_names(folder):
    from safetensors import safe_open
    names = []
    for file in os.listdir(folder):
        if file.endswith(".safetensors"):
            with safe_open(os.path.join(folder, file), "pt") as f:
                names.extend(f.keys())
    return names


def check_export(folder, out_folder):
    """Loads dsmoe's export with transformers, records what the TypeScript round-trip test compares in
    out_folder/transformers.json, and returns the problems found against dsmoe.json (empty when it matches)."""
    model, info = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager",
                                                       output_loading_info=True)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    empty = {n for n, p in model.named_parameters() if p.numel() == 0}
    result = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "class": type(model).__name__,
        "missing_keys": sorted(info["missing_keys"]),
        "missing_nonempty_keys": sorted(set(info["missing_keys"]) - empty),
        "unexpected_keys": sorted(info["unexpected_keys"]),
        "mismatched_keys": [list(map(str, m)) for m in info.get("mismatched_keys", [])],
        "tokens": TOKENS,
        "text": TEXT,
        "text_ids": tokenizer(TEXT)["input_ids"],
        "router_margin": router_margin(model, model.config.num_experts_per_tok),
        "logits": logits_of(model),
    }
    result["loss"] = next_token_loss(result["logits"], TOKENS)
    os.makedirs(out_folder, exist_ok=True)
    with open(os.path.join(out_folder, "transformers.json"), "w") as f:
        json.dump(result, f)
    name = os.path.basename(folder)
    print(f"{name}: {result['class']}, missing {result['missing_keys']}, unexpected {result['unexpected_keys']}")
    problems = []
    if result["missing_nonempty_keys"] or result["unexpected_keys"] or result["mismatched_keys"]:
        problems.append(f"{name}: weights not loaded as saved (missing {result['missing_nonempty_keys']}, "
                        f"unexpected {result['unexpected_keys']}, mismatched {result['mismatched_keys']})")
    ours_file = os.path.join(folder, "dsmoe.json")
    if not os.path.exists(ours_file):
        return problems + [f"{ours_file}: missing (DSMOE_WRITE_HF_FIXTURES=1 npx jest test/interop/transformers_parity.test.ts)"]
    with open(ours_file) as f:
        ours = json.load(f)
    if ours["tokens"] != TOKENS:
        return problems + [f"{ours_file}: written for other tokens"]
    logits_rel = relative_difference(result["logits"], ours["logits"])
    loss_rel = abs(result["loss"] - ours["loss"]) / abs(ours["loss"])
    print(f"{name}: transformers vs dsmoe: loss {result['loss']:.6f} vs {ours['loss']:.6f} (relative {loss_rel:.2e}), "
          f"logits relative {logits_rel:.2e} (target < {PARITY})")
    if not (logits_rel < PARITY and loss_rel < PARITY):
        problems.append(f"{name}: transformers and dsmoe differ (logits {logits_rel:.2e}, loss {loss_rel:.2e})")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["fixtures", "export"], help="do one half only")
    parser.add_argument("--out", default=ROOT, help="where the fixtures and transformers.json go (default test/fixtures/hf)")
    args = parser.parse_args()
    if not transformers.__version__.startswith("5."):
        print(f"warning: transformers {transformers.__version__}; the fixtures are meant to come from 5.x", file=sys.stderr)
    torch.use_deterministic_algorithms(True)
    if args.only != "export":
        make_fixture(args.out, "qwen2_moe", "qwen2_moe")
        make_fixture(args.out, "qwen2_moe_sharded_bf16", "qwen2_moe", sharded=True, bf16=True)
        make_fixture(args.out, "olmoe", "olmoe")
        make_fixture(args.out, "mixtral", "mixtral")
    if args.only != "fixtures":
        problems = []
        for name in EXPORTS:
            export = os.path.join(ROOT, name)
            if not os.path.exists(os.path.join(export, "config.json")):
                problems.append(f"{export}: missing; write it with DSMOE_WRITE_HF_FIXTURES=1 npx jest "
                                "test/interop/transformers_parity.test.ts")
                continue
            problems += check_export(export, os.path.join(args.out, name))
        if problems:
            sys.exit("make_hf_fixtures: " + "; ".join(problems))


if __name__ == "__main__":
    main()
