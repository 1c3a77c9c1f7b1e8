"""Trains a recipe with PyTorch: `python -m dsmoe_torch.train --spec RUN.json`, one process per device, started by
torchrun (`dsmoe train <recipe> --engine torch` writes the spec and launches it; docs/training.md "Scaling out").

What it shares with the tfjs trainer (src/train/), so that the two give the same losses from the same weights:
the batches (the prepared batch order), the loss L = L_LM + α · mean over layers of L_MI with
L_MI = −H(mean_x p) + mean_x H(p) over each micro-batch, AdamW as torch.optim.AdamW with decay on matrices only,
linear warmup then cosine (learning_rate below is src/train/schedule.ts), global-norm clipping, and gradient
accumulation over grad_accum micro-batches. Data parallelism splits every micro-batch's windows evenly over the
ranks; the router's mean probability is summed over the ranks (an all-reduce with a gradient) so that the MI loss
is over the whole micro-batch, and a run on W processes equals the run on one.
"""
import argparse
import contextlib
import json
import math
import os
import secrets
import signal
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .data import PreparedData
from .model import DSMoEForCausalLM, entropy
from .safetensors_io import read_safetensors, write_file_atomic, write_json_atomic, write_safetensors

SPEC_FORMAT, SPEC_VERSION = "dsmoe-torch-run", 1
MOMENT_SUFFIX = {"exp_avg": ".exp_avg", "exp_avg_sq": ".exp_avg_sq"}  # as src/checkpoint/dense.ts


class EngineError(Exception):
    """Bad input: printed as one line, exit status 1."""


def learning_rate(step, lr, min_lr, warmup, max_steps):
    """src/train/schedule.ts: linear warmup from lr/warmup to lr, then cosine to min_lr at the last step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    decay_steps = max(1, max_steps - warmup - 1)
    progress = min(1.0, (step - warmup) / decay_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


# --- distributed setup ------------------------------------------------------------------------------------------


class Distributed:
    """Rank, world size and the collectives the loop needs; a plain single process when not started by torchrun."""

    def __init__(self, device_kind):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = "RANK" in os.environ and self.world >= 1 and dist.is_available()
        if device_kind == "cuda":
            if not torch.cuda.is_available():
                raise EngineError("--device cuda: torch.cuda.is_available() is false on this machine")
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        self.backend = "nccl" if device_kind == "cuda" else "gloo"
        self.mi_group = None
        if self.enabled:
            dist.init_process_group(backend=self.backend)
            # The MI all-reduce runs inside backward, while DDP reduces gradient buckets: a group of its own keeps the
            # two streams of collectives from interleaving differently on different ranks.
            self.mi_group = dist.new_group(backend=self.backend)

    def sum(self, tensor):
        """Sum over ranks, without gradient."""
        if self.enabled and self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_with_grad(self, tensor):
        """Sum over ranks whose backward sums the gradients over ranks too."""
        if self.enabled and self.world > 1:
            from torch.distributed.nn.functional import all_reduce

            return all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.mi_group)
        return tensor

    def any(self, flag):
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        if self.enabled and self.world > 1:
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def barrier(self):
        if self.enabled and self.world > 1:
            dist.barrier()

    def close(self):
        if self.enabled:
            dist.destroy_process_group()


def fsdp_status():
    """Whether torch.distributed.fsdp imports here (Debian's torch 1.13 on Python 3.11 fails inside dataclasses)."""
    try:
        import torch.distributed.fsdp  # noqa: F401
    except Exception as error:  # any import failure means no FSDP
        return False, f"{type(error).__name__}: {error}"
    return True, ""


# --- checkpoint folder (docs/design.md §2) ------------------------------------------------------------------------


def check_names(model, spec):
    """The model's parameters are exactly the spec's trained tensors (names from src/plan/tensor_table.ts)."""
    parameters = dict(model.named_parameters())
    trained = {t["name"]: t for t in spec["tensors"] if t["trained"]}
    missing = sorted(set(trained) - set(parameters))
    extra = sorted(set(parameters) - set(trained))
    if missing or extra:
        raise EngineError(f"internal: model parameters differ from the tensor table (missing {missing[:3]}, extra {extra[:3]})")
    for name, entry in trained.items():
        if list(parameters[name].shape) != entry["shape"]:
            raise EngineError(f"internal: {name} has shape {list(parameters[name].shape)}, the tensor table says {entry['shape']}")
    return parameters


def full_optimizer_state(optimizer, parameters, sharded):
    """name -> (exp_avg, exp_avg_sq) on the main rank (None elsewhere). A collective when the state is sharded
    (ZeRO-1): every rank must call it. Indices of an optimizer state dict count parameters through the groups in
    order, for torch.optim.AdamW and ZeroRedundancyOptimizer alike."""
    if sharded:
        optimizer.consolidate_state_dict(to=0)
        if dist.get_rank() != 0:
            return None
    full = optimizer.state_dict()
    name_of = {id(p): n for n, p in parameters.items()}
    ordered = [p for group in optimizer.param_groups for p in group["params"]]
    moments = {}
    for index, parameter in enumerate(ordered):
        entry = full["state"].get(index)
        if entry:
            moments[name_of[id(parameter)]] = (entry["exp_avg"], entry["exp_avg_sq"])
    return moments


def save_checkpoint(out, spec, parameters, moments, state):
    checkpoint_id = secrets.token_hex(8)
    os.makedirs(out, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(spec["prepared"], name), "rb") as handle:
            write_file_atomic(os.path.join(out, name), [handle.read()])
    write_json_atomic(os.path.join(out, "generation_config.json"), spec["generation_config"])
    config = json.loads(json.dumps(spec["hf_config"]))
    config["dsmoe"]["steps"] = state["step"]
    write_json_atomic(os.path.join(out, "config.json"), config)

    def value(entry, pick):
        if not entry["trained"]:
            return torch.zeros(entry["shape"])  # the zero shared-expert gate of a model without a shared expert
        return pick(entry["name"])

    def moment(which):
        return lambda name: moments[name][which] if name in moments else torch.zeros_like(parameters[name])

    metadata = {"format": "pt", "checkpoint_id": checkpoint_id}
    write_safetensors(os.path.join(out, "model.safetensors"), [(t["name"], value(t, parameters.get)) for t in spec["tensors"]], metadata)
    tensors = [(t["name"] + suffix, value(t, moment(which))) for which, suffix in enumerate(MOMENT_SUFFIX.values()) for t in spec["tensors"]]
    write_safetensors(os.path.join(out, "optimizer.safetensors"), tensors, metadata)
    write_json_atomic(os.path.join(out, "trainer_state.json"), {**state, "checkpoint_id": checkpoint_id})  # last


def load_checkpoint(out, spec, parameters, optimizer):
    """Weights, AdamW moments and the trainer state of OUT; refuses another recipe or a save cut off half-way."""
    state_file = os.path.join(out, "trainer_state.json")
    if not os.path.exists(state_file):
        raise EngineError(f"{out}: no checkpoint to resume (trainer_state.json is missing)")
    with open(state_file, encoding="utf-8") as handle:
        state = json.load(handle)
    if state.get("recipe_hash") != spec["recipe"]["hash"]:
        raise EngineError(f"{out}: checkpoint was trained with a different recipe (hash {str(state.get('recipe_hash'))[:12]}…); resume with the original recipe or train into a new --out")
    with open(os.path.join(out, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    for key, expected in spec["model"].items():
        if config.get(key) != expected:
            raise EngineError(f"{out}/config.json: {key} is {json.dumps(config.get(key))}, the recipe says {json.dumps(expected)}")
    try:
        weights, weights_meta = read_safetensors(os.path.join(out, "model.safetensors"))
        moments, moments_meta = read_safetensors(os.path.join(out, "optimizer.safetensors"))
    except (OSError, ValueError) as error:
        raise EngineError(str(error).splitlines()[0]) from None
    for meta, name in ((weights_meta, "model.safetensors"), (moments_meta, "optimizer.safetensors")):
        if meta.get("checkpoint_id") != state.get("checkpoint_id"):
            raise EngineError(f"{out}/{name}: from another save than trainer_state.json (checkpoint_id differs); the last save was cut off")
    step = int(state["step"])
    name_of = {id(p): n for n, p in parameters.items()}
    ordered = [p for group in optimizer.param_groups for p in group["params"]]
    with torch.no_grad():
        for name, parameter in parameters.items():
            for source, key, file in ((weights, name, "model.safetensors"), (moments, name + ".exp_avg", "optimizer.safetensors"), (moments, name + ".exp_avg_sq", "optimizer.safetensors")):
                if key not in source or list(source[key].shape) != list(parameter.shape):
                    raise EngineError(f"{out}/{file}: tensor {key} is missing or has the wrong shape")
                if not torch.isfinite(source[key]).all():
                    raise EngineError(f"{out}/{file}: tensor {key} holds NaN or infinity")
            parameter.copy_(weights[name])
    groups, first = [], 0
    for group in optimizer.param_groups:  # the groups' settings, parameters by index as state_dict numbers them
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": list(range(first, first + len(group["params"])))})
        first += len(group["params"])
    states = {
        index: {
            "step": torch.tensor(float(step)),
            "exp_avg": moments[name_of[id(p)] + ".exp_avg"],
            "exp_avg_sq": moments[name_of[id(p)] + ".exp_avg_sq"],
        }
        for index, p in enumerate(ordered)
    }
    optimizer.load_state_dict({"state": states, "param_groups": groups})  # ZeRO-1 keeps only this rank's shard
    return state


def truncate_log(path, step):
    """Keeps log lines up to `step` (a resumed run rewrites what came after its checkpoint)."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
            except (ValueError, KeyError, TypeError):
                pass
    write_file_atomic(path, ["".join(kept).encode("utf-8")])


# --- loss and evaluation ----------------------------------------------------------------------------------------


def micro_batch_loss(module, inputs, targets, tokens_global, alpha, world):
    """This rank's share of one micro-batch's loss, scaled so that DDP's average over ranks of its gradients is the
    gradient of L = L_LM + α · mean_l L_MI over the whole micro-batch (all ranks' windows). Returns the loss to
    backpropagate, the summed cross-entropy and per-layer token-entropy sums (for logging, to be summed over ranks)
    and the per-layer marginal entropies (already global)."""
    logits, probs = module(inputs)  # (b, T, V), L × (b·T, E)
    lm_sum = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
    terms, token_sums, marginal_entropies = [], [], []
    for p in probs:
        token_sum = entropy(p).sum()  # Σ_x H(p(·|x)) over this rank's tokens
        marginal = dist_sum_with_grad(p.sum(0)) / tokens_global  # (E,) mean_x p over the whole micro-batch
        marginal_entropy = entropy(marginal)
        terms.append(world * token_sum / tokens_global - marginal_entropy)
        token_sums.append(token_sum.detach())
        marginal_entropies.append(marginal_entropy.detach())
    aux = torch.stack(terms).mean()
    loss = world * lm_sum / tokens_global + alpha * aux
    return loss, lm_sum.detach(), torch.stack(token_sums), torch.stack(marginal_entropies)


dist_sum_with_grad = None  # set in main to the run's Distributed.sum_with_grad


@torch.no_grad()
def evaluate(model, data, batch_size, device, autocast):
    """Held-out loss, perplexity, bits per byte and per-layer routing statistics (src/train/evaluate.ts and
    routing_stats.ts) on the prepared held-out windows, with every expert (as trained)."""
    model.eval()
    c = model.config
    L, E = c["num_hidden_layers"], c["num_experts"]
    starts = data.meta["validation"]["starts"]
    loss_sum, tokens = 0.0, 0
    prob_sum = torch.zeros(L, E, dtype=torch.float64)
    entropy_sum = torch.zeros(L, dtype=torch.float64)
    top_mass = torch.zeros(L, 3, dtype=torch.float64)
    top1_count = torch.zeros(L, E, dtype=torch.float64)
    for first in range(0, len(starts), batch_size):
        inputs, targets = data.windows(starts[first : first + batch_size])
        with autocast():
            logits, probs = model(inputs.to(device))
        loss_sum += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.to(device).reshape(-1), reduction="sum").item()
        tokens += targets.numel()
        for l, p in enumerate(probs):
            p = p.double().cpu()  # (n, E)
            prob_sum[l] += p.sum(0)
            entropy_sum[l] += -(torch.where(p > 0, p * p.clamp(min=1e-300).log(), torch.zeros_like(p))).sum()
            ranked = p.sort(dim=1, descending=True).values.cumsum(1)  # (n, E)
            for j, k in enumerate((1, 2, 4)):
                top_mass[l, j] += ranked[:, min(k, E) - 1].sum()
            top1_count[l] += torch.bincount(p.argmax(1), minlength=E).double()
    model.train()
    n = max(1, tokens)
    loss = loss_sum / n
    layers = []
    for l in range(L):
        marginal = prob_sum[l] / n
        layers.append(
            {
                "layer": l,
                "marginal_entropy": float(-(marginal[marginal > 0] * marginal[marginal > 0].log()).sum()),
                "token_entropy": float(entropy_sum[l] / n),
                "max_entropy": math.log(E),
                "top1_mass": float(top_mass[l, 0] / n),
                "top2_mass": float(top_mass[l, 1] / n),
                "top4_mass": float(top_mass[l, 2] / n),
                "expert_load": [float(v) for v in top1_count[l] / n],
            }
        )
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_byte": loss / math.log(2) / data.meta["validation"]["bytes_per_token"], "tokens": tokens, "layers": layers}


def format_duration(seconds):
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = round(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


# --- the run ----------------------------------------------------------------------------------------------------


def read_spec(path):
    try:
        with open(path, encoding="utf-8") as handle:
            spec = json.load(handle)
    except (OSError, ValueError) as error:
        raise EngineError(f"{path}: cannot read the run spec ({error})") from None
    if spec.get("format") != SPEC_FORMAT or spec.get("version") != SPEC_VERSION:
        raise EngineError(f"{path}: expected format {SPEC_FORMAT} version {SPEC_VERSION}")
    if spec["routing"]["mode"] != "dense":
        raise EngineError(f"routing.mode {spec['routing']['mode']}: the torch engine trains dense DS-MoE routing only")
    return spec


def run(spec):
    global dist_sum_with_grad
    ctx = Distributed(spec["device"])
    dist_sum_with_grad = ctx.sum_with_grad
    main_rank = ctx.rank == 0

    def info(line):
        if main_rank:
            print(line, file=sys.stderr, flush=True)

    stop = {"requested": False}

    def on_signal(signum, _frame):
        # Ctrl-C reaches every process of the terminal's group and torchrun then sends its own SIGINT/SIGTERM to the
        # workers: a repeated signal is the same request. torchrun kills workers that take over 30 s to stop.
        if not stop["requested"]:
            info(f"{signal.Signals(signum).name}: saving a checkpoint after this step")
        stop["requested"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    t = spec["train"]
    out = spec["out"]
    batch_size, accum = t["batch_size"], t["grad_accum"]
    if batch_size % ctx.world != 0:
        raise EngineError(f"train.batch_size {batch_size} must be a multiple of the number of processes ({ctx.world}): every micro-batch is split evenly over them")
    rows = slice(ctx.rank * batch_size // ctx.world, (ctx.rank + 1) * batch_size // ctx.world)
    data = PreparedData(spec["prepared"])
    if data.meta["recipe"]["hash"] != spec["recipe"]["hash"]:
        raise EngineError(f"{spec['prepared']}: prepared from another recipe; run dsmoe prepare again")
    max_steps = spec["max_steps"]
    seq_len = data.seq_len
    tokens_per_step = batch_size * accum * seq_len
    tokens_per_micro = batch_size * seq_len  # the MI loss's batch: one whole micro-batch

    if spec.get("parallel") == "fsdp":
        available, reason = fsdp_status()
        info(f"FSDP: {'imports, but this engine shards with DDP only (full model and AdamW state on every device)' if available else f'does not import on torch {torch.__version__} ({reason})'}; training with DDP")

    model = DSMoEForCausalLM(spec["model"])
    model.activation_checkpointing = bool(spec.get("activation_checkpointing"))
    parameters = check_names(model, spec)
    decayed = {t_["name"] for t_ in spec["tensors"] if t_["trained"] and t_["decay"]}
    model.to(ctx.device)
    groups = [
        {"params": [p for n, p in parameters.items() if n in decayed], "weight_decay": t["weight_decay"]},
        {"params": [p for n, p in parameters.items() if n not in decayed], "weight_decay": 0.0},
    ]
    adamw = {"lr": t["lr"], "betas": (t["beta1"], t["beta2"]), "eps": t["adam_eps"]}
    sharded = bool(spec.get("shard_optimizer")) and ctx.enabled and ctx.world > 1
    if sharded:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        # ZeRO-1: each rank keeps and updates the AdamW moments of its share of the parameters, then broadcasts them.
        optimizer = ZeroRedundancyOptimizer(groups, optimizer_class=torch.optim.AdamW, **adamw)
    else:
        optimizer = torch.optim.AdamW(groups, **adamw)
    train_log, eval_log = os.path.join(out, "train_log.jsonl"), os.path.join(out, "eval_log.jsonl")
    start_step, elapsed_before, tokens_seen = 0, 0.0, 0
    if spec["resume"]:
        state = load_checkpoint(out, spec, parameters, optimizer)
        start_step, elapsed_before, tokens_seen = int(state["step"]), float(state["elapsed_s"]), int(state["tokens_seen"])
        if main_rank:
            truncate_log(train_log, start_step)
            truncate_log(eval_log, start_step)
        info(f"resuming {out} at step {start_step}/{max_steps}")
    else:
        model.initialize(spec["recipe"]["seed"])
        if main_rank:
            os.makedirs(out, exist_ok=True)
            for path in (train_log, eval_log):
                write_file_atomic(path, [b""])
    ctx.barrier()

    module = model
    if ctx.enabled and ctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # gradient_as_bucket_view: the gradients live in DDP's buckets instead of a second copy (4 B per parameter).
        module = DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None, gradient_as_bucket_view=True)
    use_bf16 = spec.get("precision") == "bf16"
    if use_bf16 and ctx.device.type != "cuda":
        raise EngineError("--precision bf16 needs --device cuda (f32 on CPU)")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    total = sum(p.numel() for p in parameters.values())
    backend = f"torch {torch.__version__} {ctx.device.type} {'ddp/' + ctx.backend + ' ×' + str(ctx.world) if ctx.world > 1 else 'single process'}{' zero-1' if sharded else ''}{' bf16' if use_bf16 else ''}"
    info(f"{spec['recipe']['name']}: {total / 1e6:.2f} M parameters, {spec['model']['num_experts']} experts × {spec['model']['num_hidden_layers']} layers, routing dense, {tokens_per_step} tokens/step, {max_steps} steps, {backend}")

    segment_start = time.perf_counter()
    step = start_step
    last_lr = learning_rate(max(0, step - 1), t["lr"], t["min_lr"], t["warmup_steps"], max_steps)

    def state_now():
        return {
            "step": step,
            "max_steps": max_steps,
            "recipe_hash": spec["recipe"]["hash"],
            "recipe_name": spec["recipe"]["name"],
            "seed": spec["recipe"]["seed"],
            "tokens_seen": tokens_seen,
            "elapsed_s": elapsed_before + time.perf_counter() - segment_start,
            "lr": last_lr,
            "rng_state": {"seed": spec["recipe"]["seed"], "batch_index": step * accum},
            "backend": backend,
        }

    def checkpoint():
        moments = full_optimizer_state(optimizer, parameters, sharded)  # every rank: a collective when sharded
        if main_rank:
            save_checkpoint(out, spec, parameters, moments, state_now())
        ctx.barrier()

    interval = {"loss": 0.0, "lm": 0.0, "aux": 0.0, "steps": 0, "start": time.perf_counter()}
    final_eval, interrupted = None, False
    alpha = spec["routing"]["mi_alpha"]
    L = spec["model"]["num_hidden_layers"]
    stop_at = min(max_steps, start_step + spec["stop_after_steps"]) if spec.get("stop_after_steps") is not None else max_steps
    while step < stop_at:
        lr = learning_rate(step, t["lr"], t["min_lr"], t["warmup_steps"], max_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=False)  # in place: DDP's gradients are views of its buckets
        sums = torch.zeros(1 + L, dtype=torch.float64)  # Σ cross-entropy, Σ_l token entropy (this rank, all micro-batches)
        marginal_total = torch.zeros(L, dtype=torch.float64)  # Σ over micro-batches of H(mean p), per layer
        for micro in range(accum):
            inputs, targets = data.train_batch(step * accum + micro, rows)
            sync = micro == accum - 1 or module is model
            with (contextlib.nullcontext() if sync else module.no_sync()), autocast():
                loss, lm_sum, token_sums, marginal_entropies = micro_batch_loss(
                    module, inputs.to(ctx.device), targets.to(ctx.device), tokens_per_micro, alpha, ctx.world
                )
            (loss / accum).backward()
            sums[0] += lm_sum.double().cpu()
            sums[1:] += token_sums.double().cpu()
            marginal_total += marginal_entropies.double().cpu()
        sums = ctx.sum(sums.to(ctx.device)).cpu()
        lm = float(sums[0]) / (tokens_per_micro * accum)
        aux = float((sums[1:] / (tokens_per_micro * accum) - marginal_total / accum).mean())
        step_loss = lm + alpha * aux
        if not math.isfinite(step_loss):
            raise EngineError(f"loss became {step_loss} at step {step + 1}; lower the learning rate")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"] if t["grad_clip"] > 0 else float("inf")))
        optimizer.step()
        step += 1
        last_lr = lr
        tokens_seen += tokens_per_step
        interval["loss"] += step_loss
        interval["lm"] += lm
        interval["aux"] += aux
        interval["steps"] += 1

        segment_seconds = time.perf_counter() - segment_start
        if main_rank and (step % t["log_every"] == 0 or step == start_step + 1 or step == max_steps):
            seconds = time.perf_counter() - interval["start"]
            n = interval["steps"]
            record = {
                "step": step,
                "loss": interval["loss"] / n,
                "lm_loss": interval["lm"] / n,
                "mi_loss": interval["aux"] / n,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens_per_s": n * tokens_per_step / seconds,
                "elapsed_s": elapsed_before + segment_seconds,
            }
            with open(train_log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            eta = (max_steps - step) * segment_seconds / (step - start_step)
            info(f"step {step}/{max_steps}  loss {record['loss']:.4f}  {round(record['tokens_per_s'])} tok/s  ETA {format_duration(eta)}")
            interval = {"loss": 0.0, "lm": 0.0, "aux": 0.0, "steps": 0, "start": time.perf_counter()}
        if step % t["eval_every"] == 0 or step == max_steps:
            if main_rank:
                result = evaluate(model, data, batch_size, ctx.device, autocast)
                with open(eval_log, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"step": step, **result}) + "\n")
                info(f"eval @ {step}: loss {result['loss']:.4f}, perplexity {result['perplexity']:.2f}, {result['bits_per_byte']:.3f} bits/byte")
                if step == max_steps:
                    final_eval = result
            ctx.barrier()
        saved = step % t["checkpoint_every"] == 0 or step == max_steps or step == stop_at
        if saved:
            checkpoint()
        if ctx.any(stop["requested"]):
            if not saved:
                checkpoint()
            interrupted = True
            break
    if step == start_step and step >= max_steps:
        info(f"{out}: already trained for {max_steps} steps; nothing to do")
    wall = time.perf_counter() - segment_start
    if interrupted:
        info(f"interrupted: checkpoint saved at step {step} in {out}; continue with --resume")
    else:
        info(f"trained to step {step}/{max_steps} in {format_duration(wall)}; checkpoint in {out}")
    if main_rank:
        summary = (
            f"held-out loss {final_eval['loss']:.4f}, {final_eval['bits_per_byte']:.3f} bits/byte"
            if final_eval
            else f"stopped at step {step}/{max_steps}"
        )
        print(f"{out}: {summary}", flush=True)
    ctx.close()
    return 0  # an interrupted run saved its checkpoint: a success for torchrun (dsmoe exits 130 itself)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dsmoe_torch.train", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="run spec written by dsmoe train --engine torch")
    args = parser.parse_args(argv)
    try:
        return run(read_spec(args.spec))
    except EngineError as error:
        print(f"dsmoe train (torch, rank {os.environ.get('RANK', '0')}): {error}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("interrupted without saving", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
