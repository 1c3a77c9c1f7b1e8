import { spawnSync } from 'child_process';
import * as path from 'path';
import type { Recipe } from '../recipe';

/** The PyTorch peer's measurement, or why it was skipped. */
export interface PeerResult {
  skipped?: string;
  torchVersion?: string;
  blas?: string;
  dtype?: 'f32' | 'bf16';
  secondsPerStep: number;
  losses?: number[];
}

const SCRIPT = path.resolve(__dirname, '..', '..', 'scripts', 'peer_train_pytorch.py');

/**
 * The first Python that imports torch: $DSMOE_PYTHON, then `python3` on PATH, then the system's /usr/bin/python3
 * (Debian's python3-torch installs there, which a pyenv `python3` shim does not see).
 */
export function findTorchPython(): string | null {
  const candidates = [process.env.DSMOE_PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c);
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 });
    if (probe.status === 0) return python;
  }
  return null;
}

/**
 * Trains the recipe's model shape and batch in PyTorch (`scripts/peer_train_pytorch.py`) on `threads` threads and
 * returns seconds per optimizer step; skipped cleanly (with the reason) when no Python with torch is found.
 */
export function runPytorchPeer(recipe: Recipe, options: { steps: number; threads: number; dtype?: 'f32' | 'bf16' }): PeerResult {
  const python = findTorchPython();
  if (!python) return { skipped: 'no python3 with torch (apt-get install python3-torch libopenblas0-pthread)', secondsPerStep: NaN };
  const m = recipe.model;
  const t = recipe.train;
  const config = {
    model: {
      vocab: m.vocab_size,
      hidden: m.hidden_size,
      layers: m.num_hidden_layers,
      heads: m.num_attention_heads,
      kv_heads: m.num_key_value_heads,
      experts: m.num_experts,
      intermediate: m.moe_intermediate_size,
      eps: m.rms_norm_eps,
      theta: m.rope_theta,
    },
    batch: t.batch_size,
    seq_len: recipe.data.seq_len,
    steps: options.steps,
    threads: options.threads,
    lr: t.lr,
    beta1: t.beta1,
    beta2: t.beta2,
    adam_eps: t.adam_eps,
    weight_decay: t.weight_decay,
    grad_clip: t.grad_clip,
    mi_alpha: recipe.routing.mi_alpha,
    dtype: options.dtype ?? 'f32',
    seed: recipe.seed,
  };
  if (m.shared_expert_intermediate_size > 0 || !m.tie_word_embeddings || recipe.routing.mode !== 'dense') {
    return { skipped: 'the peer models dense routing, tied embeddings and no shared expert only', secondsPerStep: NaN };
  }
  const run = spawnSync(python, [SCRIPT, JSON.stringify(config)], {
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: String(options.threads), OPENBLAS_NUM_THREADS: String(options.threads) },
    maxBuffer: 16 << 20,
  });
  if (run.status !== 0) return { skipped: `peer failed: ${(run.stderr || run.error?.message || '').trim().split('\n').pop()}`, secondsPerStep: NaN };
  const out = JSON.parse(run.stdout.trim().split('\n').pop() as string) as {
    torch: string;
    blas: string;
    dtype: 'f32' | 'bf16';
    seconds_per_step: number;
    losses: number[];
  };
  return { torchVersion: out.torch, blas: out.blas, dtype: out.dtype, secondsPerStep: out.seconds_per_step, losses: out.losses };
}
