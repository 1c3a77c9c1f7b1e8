import type { ExpertCacheStats } from '../runtime/expert_cache';
import type { StepReport } from './scheduler';

/** Seconds over which the tokens-per-second gauge averages. */
const RATE_WINDOW_S = 10;
/** Upper bounds (seconds) of the completion latency histogram's buckets. */
const LATENCY_BUCKETS_S = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Counters behind `GET /metrics`, written in Prometheus' text exposition format (version 0.0.4). */
export class ServeMetrics {
  private readonly requestsByStatus = new Map<number, number>();
  private promptTokens = 0;
  private generatedTokens = 0;
  private steps = 0;
  private stepSeconds = 0;
  /** (time in ms, tokens generated) per step inside the rate window. */
  private recent: [number, number][] = [];
  private readonly latencyBuckets = new Array<number>(LATENCY_BUCKETS_S.length).fill(0); // cumulative counts
  private latencyCount = 0;
  private latencySum = 0;

  countRequest(status: number): void {
    this.requestsByStatus.set(status, (this.requestsByStatus.get(status) ?? 0) + 1);
  }

  /** A completed completion request, from acceptance to its last byte. */
  countLatency(seconds: number): void {
    this.latencyCount++;
    this.latencySum += seconds;
    LATENCY_BUCKETS_S.forEach((bound, i) => {
      if (seconds <= bound) this.latencyBuckets[i]++;
    });
  }

  countPrompt(tokens: number): void {
    this.promptTokens += tokens;
  }

  countStep(report: StepReport): void {
    this.steps++;
    this.stepSeconds += report.seconds;
    this.generatedTokens += report.generatedTokens;
    const now = Date.now();
    this.recent.push([now, report.generatedTokens]);
    this.trim(now);
  }

  tokensPerSecond(): number {
    const now = Date.now();
    this.trim(now);
    return this.recent.reduce((sum, [, n]) => sum + n, 0) / RATE_WINDOW_S;
  }

  render(live: { queueDepth: number; decodeBatch: number; activeSequences: number; maxBatch: number; expertCache?: ExpertCacheStats | null }): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
    };
    const statuses = [...this.requestsByStatus.entries()].sort(([a], [b]) => a - b);
    metric('dsmoe_requests_total', 'counter', 'HTTP requests answered, by status code.',
      statuses.map(([status, n]) => [`{status="${status}"}`, n]));
    metric('dsmoe_prompt_tokens_total', 'counter', 'Prompt tokens of accepted completion requests.', [['', this.promptTokens]]);
    metric('dsmoe_generated_tokens_total', 'counter', 'Tokens sampled by the scheduler.', [['', this.generatedTokens]]);
    metric('dsmoe_generated_tokens_per_second', 'gauge', `Tokens sampled per second over the last ${RATE_WINDOW_S} s.`,
      [['', this.tokensPerSecond()]]);
    metric('dsmoe_completion_duration_seconds', 'histogram', 'Completion requests from acceptance (body parsed) to their last byte.', [
      ...LATENCY_BUCKETS_S.map((bound, i): [string, number] => [`_bucket{le="${bound}"}`, this.latencyBuckets[i]]),
      ['_bucket{le="+Inf"}', this.latencyCount],
      ['_sum', this.latencySum],
      ['_count', this.latencyCount],
    ]);
    metric('dsmoe_queue_depth', 'gauge', 'Requests waiting for a slot.', [['', live.queueDepth]]);
    metric('dsmoe_decode_batch_size', 'gauge', 'Sequences decoded in the latest scheduler step.', [['', live.decodeBatch]]);
    metric('dsmoe_active_sequences', 'gauge', 'Sequences holding a slot (prefilling or decoding).', [['', live.activeSequences]]);
    metric('dsmoe_max_batch', 'gauge', 'Slots available to the scheduler.', [['', live.maxBatch]]);
    metric('dsmoe_scheduler_steps_total', 'counter', 'Evaluate calls made by the scheduler.', [['', this.steps]]);
    metric('dsmoe_scheduler_step_seconds_total', 'counter', 'Time spent in scheduler steps.', [['', this.stepSeconds]]);
    const cache = live.expertCache;
    if (cache) {
      metric('dsmoe_expert_cache_slots', 'gauge', 'Routed experts per layer held in memory (--expert-cache).', [['', cache.slots]]);
      metric('dsmoe_expert_cache_hits_total', 'counter', 'Selected experts found in the cache (or already being prefetched).', [['', cache.hits]]);
      metric('dsmoe_expert_cache_misses_total', 'counter', 'Selected experts read from the plan file on demand.', [['', cache.misses]]);
      metric('dsmoe_expert_cache_hit_ratio', 'gauge', 'hits / (hits + misses) since the server started.', [['', cache.hitRate ?? 0]]);
      metric('dsmoe_expert_cache_read_bytes_total', 'counter', 'Expert bytes read from the plan file (demand and prefetch).', [['', cache.bytesRead]]);
      metric('dsmoe_expert_cache_stall_seconds_total', 'counter', 'Time the forward pass waited for expert reads.', [['', cache.stallSeconds]]);
      metric('dsmoe_expert_prefetches_total', 'counter', 'Expert reads queued by speculative prefetch.', [['', cache.prefetches]]);
      metric('dsmoe_expert_prefetch_recall', 'gauge', 'Selected experts that had been predicted, over selected experts on predicted layers.', [['', cache.prefetchRecall ?? 0]]);
      metric('dsmoe_expert_prefetch_precision', 'gauge', 'Predicted experts that were selected, over predicted experts.', [['', cache.prefetchPrecision ?? 0]]);
    }
    return lines.join('\n') + '\n';
  }

  private trim(now: number): void {
    const cutoff = now - RATE_WINDOW_S * 1000;
    let drop = 0;
    while (drop < this.recent.length && this.recent[drop][0] < cutoff) drop++;
    if (drop) this.recent = this.recent.slice(drop);
  }
}
