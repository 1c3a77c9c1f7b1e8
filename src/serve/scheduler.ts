import type { BatchEvaluator, ServeModel } from './batch_evaluator';
import { ApiError } from './api_error';
import type { GenerationHandle, GenerationListener, GenerationParams } from './generation';
import { Sequence } from './sequence';

export interface SchedulerOptions {
  /** Sequences decoded together (each holds one slot of the context); at most the model's slots. */
  maxBatch: number;
  /** Requests waiting for a slot before new ones get 429. */
  maxQueue: number;
  /**
   * Prompt tokens one sequence feeds per step. Chunk boundaries depend only on the prompt, never on what else is
   * in the batch, so a request's logits (and its temperature-0 text) do not depend on its neighbours.
   */
  prefillChunk: number;
  /** Tokens per evaluate call (decode rows + prefill chunks); a chunk that does not fit waits a step. */
  maxBatchTokens: number;
}

/** What one scheduler step did, for metrics. */
export interface StepReport {
  decodeRows: number;
  prefillTokens: number;
  generatedTokens: number;
  seconds: number;
}

/**
 * Continuous batching. Up to `maxBatch` sequences are live, each in its own slot of one context. Every step is one
 * evaluate call holding one token per decoding sequence plus prompt chunks of newly admitted ones; between steps,
 * waiting requests take free slots and finished or cancelled ones give theirs back.
 */
export class Scheduler {
  private readonly evaluator: BatchEvaluator;
  private readonly waiting: Sequence[] = [];
  private active: Sequence[] = [];
  private readonly freeSlots: number[];
  private running = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  /** Decoding sequences in the last step (the "current decode batch size"). */
  lastDecodeBatch = 0;
  onStep: (report: StepReport) => void = () => {};

  constructor(
    private readonly model: ServeModel,
    private readonly options: SchedulerOptions,
  ) {
    if (options.maxBatch > model.slots) {
      throw new Error(`max batch ${options.maxBatch} exceeds the ${model.slots} slots of the model's context`);
    }
    this.evaluator = model.evaluator;
    this.freeSlots = Array.from({ length: options.maxBatch }, (_, i) => i);
  }

  /** Requests waiting for a slot (those that arrived during a step and have one free are about to be admitted). */
  get queueDepth(): number {
    return Math.max(0, this.waiting.length - this.freeSlots.length);
  }

  get activeSequences(): number {
    return this.active.length;
  }

  /** Queues a generation; throws ApiError 429 when the queue is full and 503 once draining. */
  submit(params: GenerationParams, listener: GenerationListener): GenerationHandle {
    return this.submitAll([{ params, listener }])[0];
  }

  /**
   * Queues several generations (the choices of one request) all or none: throws ApiError 429 when the queue cannot
   * take every one of them, 503 once draining.
   */
  submitAll(requests: { params: GenerationParams; listener: GenerationListener }[]): GenerationHandle[] {
    if (this.closed) throw new ApiError(503, 'the server is shutting down', 'service_unavailable_error');
    // Requests beyond the free slots wait; the queue limit counts those.
    const waitingAfter = Math.max(0, this.waiting.length + requests.length - this.freeSlots.length);
    if (requests.length && waitingAfter > this.options.maxQueue) {
      throw new ApiError(429, `the request queue is full (${this.options.maxQueue} waiting); retry later`, 'rate_limit_error', null, 'queue_full');
    }
    const handles = requests.map(({ params, listener }) => {
      const sequence = new Sequence(params, listener, this.model);
      this.waiting.push(sequence);
      return {
        cancel: () => {
          if (!sequence.live) return;
          sequence.cancelled = true;
          const queued = this.waiting.indexOf(sequence);
          if (queued >= 0) this.waiting.splice(queued, 1);
          // An active sequence keeps its slot until the evaluate call in flight returns; the loop frees it then.
        },
      };
    });
    this.kick();
    return handles;
  }

  /** Refuses new requests from now on; resolves when every accepted one has finished. */
  drain(): Promise<void> {
    this.closed = true;
    return this.idle();
  }

  idle(): Promise<void> {
    if (!this.running && !this.waiting.length && !this.active.length) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    // Let requests that arrive in the same tick join the first step.
    setImmediate(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        this.retire();
        this.admit();
        if (!this.active.length) break;
        await this.step();
      }
    } finally {
      this.running = false;
      this.lastDecodeBatch = 0;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  private admit(): void {
    while (this.waiting.length && this.freeSlots.length) {
      const sequence = this.waiting.shift() as Sequence;
      sequence.slot = this.freeSlots.shift() as number;
      this.active.push(sequence);
    }
  }

  private async step(): Promise<void> {
    const started = performance.now();
    const tokens: number[] = [];
    const slots: number[] = [];
    const positions: number[] = [];
    const outputRows: number[] = [];
    // Who each output row is for: the sequence's next token (position = its last), or a prompt position to score.
    const owners: { sequence: Sequence; position: number }[] = [];
    const feed = (sequence: Sequence, count: number) => {
      const last = sequence.tokens.length - 1;
      for (let i = 0; i < count; i++) {
        const position = sequence.fed + i;
        tokens.push(sequence.tokens[position]);
        slots.push(sequence.slot);
        positions.push(position);
        if (position === last || sequence.wantsPromptLogits) {
          outputRows.push(tokens.length - 1);
          owners.push({ sequence, position });
        }
      }
      sequence.fed += count;
    };
    let decodeRows = 0;
    for (const sequence of this.active) {
      if (!sequence.live || sequence.prefilling) continue;
      feed(sequence, 1);
      decodeRows++;
    }
    let prefillTokens = 0;
    for (const sequence of this.active) {
      if (!sequence.live || !sequence.prefilling) continue;
      const chunk = Math.min(this.options.prefillChunk, sequence.tokens.length - sequence.fed);
      if (tokens.length && tokens.length + chunk > this.options.maxBatchTokens) continue;
      feed(sequence, chunk);
      prefillTokens += chunk;
    }
    this.lastDecodeBatch = decodeRows;
    let logits: Float32Array;
    try {
      logits = await this.evaluator.evaluate(
        Int32Array.from(tokens),
        Int32Array.from(slots),
        Int32Array.from(positions),
        Int32Array.from(outputRows),
      );
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      for (const sequence of this.active) sequence.fail(new Error(`the runtime failed: ${failure.message}`));
      return;
    }
    const V = this.model.vocabSize;
    if (logits.length !== owners.length * V) {
      const failure = new Error(`the runtime returned ${logits.length} logits for ${owners.length} rows of ${V}`);
      for (const sequence of this.active) sequence.fail(failure);
      return;
    }
    let generatedTokens = 0;
    owners.forEach(({ sequence, position }, r) => {
      if (!sequence.live) return;
      const row = logits.subarray(r * V, (r + 1) * V); // [V]
      if (position < sequence.tokens.length - 1) {
        sequence.acceptPromptLogits(position, row);
        return;
      }
      sequence.acceptLogits(row);
      generatedTokens++;
    });
    this.onStep({ decodeRows, prefillTokens, generatedTokens, seconds: (performance.now() - started) / 1000 });
  }

  private retire(): void {
    const still: Sequence[] = [];
    for (const sequence of this.active) {
      if (sequence.live) {
        still.push(sequence);
        continue;
      }
      this.evaluator.clearSlot(sequence.slot);
      this.freeSlots.push(sequence.slot);
      this.freeSlots.sort((a, b) => a - b);
    }
    this.active = still;
  }
}
