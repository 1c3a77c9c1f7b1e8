/**
 * SparseModel: the user API over the native runtime (docs/design.md §5). It validates every input in TypeScript
 * (plan via readPlan, token ids, lengths) before any native call, and serialises calls on its context (the addon
 * runs one evaluation per context at a time, on a worker thread, without blocking the event loop).
 */
import { UserError } from '../errors';
import type { Plan } from '../plan/plan_format';
import { textWindows, windowSequences } from '../data/dataset';
import type { Device } from './backend';
import type { EarlyRouting, NativeContext, NativeModel, RoutingOverride, RoutingStats } from './native';
import { loadNative } from './native';
import type { Sampler } from '../sampling';
import { nativeSampler, type SamplingOptions } from './sampling';
import { openPlan } from './open_plan';
import { expertCacheRates, type ExpertCacheOptions, type ExpertCacheStats } from './expert_cache';
import type { Residency } from './residency';

export type RuntimeMode = 'plan' | 'dense';

export interface LoadOptions {
  threads?: number; // default: all hardware threads
  device?: Device; // default 'auto': CUDA when a GPU is usable, else the CPU
  maxContext?: number; // KV cache positions; default config.max_position_embeddings
  expertCache?: ExpertCacheOptions; // keep only part of the routed experts in memory (src/runtime/expert_cache.ts)
  residency?: Residency; // how the weights are held in memory (src/runtime/residency.ts)
}

export interface ScoreOptions {
  context?: number; // window length (tokens per window); default maxContext
}

export interface ScoreResult {
  loss: number; // mean next-token cross-entropy, nats
  tokens: number; // predictions scored
  lossSum: number; // Σ over predictions, nats
  targets: Int32Array; // the predicted tokens, in order (for bytes-per-token)
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number; // default 64
  stopAtEos?: number; // stop when this id is produced (it is returned but not fed back)
  onToken?: (id: number) => void; // called as each token is produced
}

export class SparseModel {
  private modeValue: RuntimeMode = 'plan';
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    readonly plan: Plan,
    readonly dir: string,
    readonly maxContext: number,
    readonly threads: number,
    /** The device in use: 'cpu' or 'cuda (<card>)'. */
    readonly device: string,
    private readonly model: NativeModel,
    private readonly context: NativeContext,
  ) {}

  /** Reads and validates the plan folder, maps its weights and allocates a one-sequence KV cache. */
  static load(dir: string, options: LoadOptions = {}): SparseModel {
    const { loaded, model, context, maxContext, device } = openPlan(dir, { ...options, slots: 1 });
    return new SparseModel(loaded.plan, dir, maxContext, model.info().threads, device, model, context);
  }

  get vocabSize(): number {
    return this.plan.config.vocab_size;
  }

  get mode(): RuntimeMode {
    return this.modeValue;
  }

  /** 'plan': the plan's select ops; 'dense': every kept expert with its full probability (the baseline). */
  setMode(mode: RuntimeMode): void {
    if (mode !== 'plan' && mode !== 'dense') throw new UserError(`mode must be "plan" or "dense", got ${JSON.stringify(mode)}`);
    this.modeValue = mode;
  }

  private routing(): RoutingOverride | undefined {
    return this.modeValue === 'dense' ? { mode: 'dense' } : undefined;
  }

  /** Checks token ids and length before they reach native code. */
  private checkTokens(tokens: ArrayLike<number>, what: string, limit = this.maxContext): Int32Array {
    if (this.disposed) throw new UserError('the model was disposed');
    if (tokens.length === 0) throw new UserError(`${what}: no tokens`);
    if (tokens.length > limit) throw new UserError(`${what}: ${tokens.length} tokens exceed the context of ${limit}`);
    const V = this.vocabSize;
    const out = new Int32Array(tokens.length);
    for (let i = 0; i < tokens.length; i++) {
      const id = tokens[i];
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new UserError(`${what}: token id ${id} at index ${i} is outside the vocabulary 0..${V - 1}`);
      out[i] = id;
    }
    return out;
  }

  /** Runs fn after every earlier call on this model has settled (one evaluation at a time per context). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** One sequence from position 0: logits of the listed rows (default: every position), [rows, V]. */
  private async forward(ids: Int32Array, rows?: Int32Array): Promise<Float32Array> {
    const T = ids.length;
    this.context.clearSlot(0);
    const positions = new Int32Array(T).map((_, i) => i);
    const outputRows = rows ?? new Int32Array(T).map((_, i) => i);
    return this.context.evaluate(ids, new Int32Array(T), positions, outputRows, this.routing());
  }

  /** Logits of every position of one sequence (at most maxContext tokens): [T, V]. */
  logits(tokens: ArrayLike<number>): Promise<Float32Array> {
    const ids = this.checkTokens(tokens, 'logits');
    return this.serial(() => this.forward(ids));
  }

  /**
   * Mean next-token cross-entropy over non-overlapping windows of `context` tokens (SPEC §7, as `dsmoe eval` scores
   * a dense checkpoint): window i holds tokens [i·C, i·C + C) and predicts each of its tokens after the first from
   * the ones before it, so a window of n tokens gives n − 1 predictions (a shorter last window takes the rest). The
   * cut is src/data's textWindows, the one `--text` scoring uses.
   */
  score(tokens: ArrayLike<number>, options: ScoreOptions = {}): Promise<ScoreResult> {
    const context = options.context ?? this.maxContext;
    if (!Number.isInteger(context) || context < 2) throw new UserError(`context must be an integer ≥ 2, got ${options.context}`);
    if (context > this.maxContext) throw new UserError(`context ${context} exceeds the runtime's maxContext ${this.maxContext}`);
    if (tokens.length < 2) throw new UserError(`score: need at least 2 tokens, got ${tokens.length}`);
    const ids = this.checkTokens(tokens, 'score', Number.MAX_SAFE_INTEGER); // an id's index in the whole sequence
    return this.scoreSequences(windowSequences(textWindows(ids, context)));
  }

  /**
   * Mean next-token cross-entropy over sequences each forwarded whole from position 0 (at most maxContext tokens):
   * every token after a sequence's first is predicted from the ones before it. Targets come in order.
   */
  scoreSequences(sequences: readonly ArrayLike<number>[]): Promise<ScoreResult> {
    const checked = sequences.map((sequence, i) => this.checkTokens(sequence, `score window ${i}`));
    const short = checked.findIndex((ids) => ids.length < 2);
    if (short >= 0) throw new UserError(`score window ${short}: need at least 2 tokens, got ${checked[short].length}`);
    if (checked.length === 0) throw new UserError('score: no windows');
    const V = this.vocabSize;
    return this.serial(async () => {
      let lossSum = 0;
      const targets: number[] = [];
      for (const ids of checked) {
        const logits = await this.forward(ids); // [n, V]
        for (let t = 0; t + 1 < ids.length; t++) {
          lossSum += crossEntropy(logits.subarray(t * V, (t + 1) * V), ids[t + 1]);
          targets.push(ids[t + 1]);
        }
      }
      return { loss: lossSum / targets.length, tokens: targets.length, lossSum, targets: Int32Array.from(targets) };
    });
  }

  /**
   * Scores `count` windows of equal length T given as inputs/targets [count·T] (src/data TokenDataset's held-out
   * windows): mean cross-entropy of targets[i] given inputs up to i within each window.
   */
  scoreWindows(inputs: Int32Array, targets: Int32Array, count: number): Promise<ScoreResult> {
    if (!Number.isInteger(count) || count < 1 || inputs.length !== targets.length || inputs.length % count !== 0) {
      throw new UserError('scoreWindows: inputs and targets must be count equal windows');
    }
    const T = inputs.length / count;
    const ids = this.checkTokens(inputs, 'scoreWindows', Number.MAX_SAFE_INTEGER);
    const want = this.checkTokens(targets, 'scoreWindows targets', Number.MAX_SAFE_INTEGER);
    if (T > this.maxContext) throw new UserError(`scoreWindows: windows of ${T} tokens exceed the context of ${this.maxContext}`);
    const V = this.vocabSize;
    return this.serial(async () => {
      let lossSum = 0;
      for (let w = 0; w < count; w++) {
        const logits = await this.forward(ids.subarray(w * T, (w + 1) * T)); // [T, V]
        for (let t = 0; t < T; t++) lossSum += crossEntropy(logits.subarray(t * V, (t + 1) * V), want[w * T + t]);
      }
      return { loss: lossSum / (count * T), tokens: count * T, lossSum, targets: want };
    });
  }

  /** Samples up to maxNewTokens after the prompt, streaming each id to onToken; returns the new ids. */
  generate(promptIds: ArrayLike<number>, options: GenerateOptions = {}): Promise<number[]> {
    const maxNew = options.maxNewTokens ?? 64;
    if (!Number.isInteger(maxNew) || maxNew < 0) throw new UserError(`maxNewTokens must be a non-negative integer, got ${options.maxNewTokens}`);
    const prompt = this.checkTokens(promptIds, 'prompt');
    let sampler: Sampler;
    try {
      sampler = nativeSampler(loadNative().kernels, options);
    } catch (error) {
      throw new UserError((error as Error).message);
    }
    return this.serial(async () => {
      const out: number[] = [];
      if (maxNew === 0) return out;
      let logits = await this.forward(prompt, new Int32Array([prompt.length - 1])); // [1, V]
      for (let pos = prompt.length; ; pos++) {
        const id = sampler.sample(logits);
        out.push(id);
        options.onToken?.(id);
        if (out.length >= maxNew || id === options.stopAtEos || pos >= this.maxContext) break;
        logits = await this.context.evaluate(new Int32Array([id]), new Int32Array([0]), new Int32Array([pos]), new Int32Array([0]), this.routing());
      }
      return out;
    });
  }

  routingStats(): RoutingStats {
    return this.context.routingStats();
  }

  /** Expert cache counters (hit rate, prefetch recall/precision, bytes read, stall time); null without a cache. */
  expertCacheStats(): ExpertCacheStats | null {
    if (this.disposed) throw new UserError('the model was disposed');
    const raw = this.model.expertCacheStats();
    return raw ? expertCacheRates(raw) : null;
  }

  resetStats(): void {
    this.context.resetStats();
  }

  /**
   * The last evaluation's pre-gated routings (Megrez2 `pre_gate`), one per pre-gated layer: each computed one block
   * before its layer runs and then used by it as is, so its `experts` are exactly what an expert cache must have
   * loaded by then. Empty for plans without pre-gating.
   */
  earlyRouting(): EarlyRouting[] {
    return this.context.earlyRouting();
  }

  /** Frees the weights mapping and the KV cache once pending calls have settled. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.queue;
    this.model.dispose();
  }
}

/** −log softmax(row)[target], in nats, accumulated in float64. */
export function crossEntropy(row: Float32Array, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let z = 0;
  for (let i = 0; i < row.length; i++) z += Math.exp(row[i] - max);
  return Math.log(z) + max - row[target];
}
