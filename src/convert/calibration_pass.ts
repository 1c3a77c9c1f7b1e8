/**
 * A calibration pass: the reference forward over every calibration window under given routing rules, collecting
 * router probabilities and the next-token loss. Windows are independent, so a pass is split across worker threads
 * (one model copy each) when the compiled worker is available; under ts-node/jest it runs in this thread.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { checkMemory, denseCheckpointMemory } from '../model/memory_estimate';
import { nextTokenLoss, referenceForward, type ReferenceWeights, type RoutingRule } from '../model/reference';
import { attentionExperts } from '../model/config';

export interface PassResult {
  probs: Float32Array[]; // [L] of [N, E], N = all calibration tokens in window order
  /** MoA models: the attention routers' probabilities, [L] of [N, A]; empty for plain attention. */
  attentionProbs: Float32Array[];
  loss: number; // mean next-token cross-entropy over the windows' predictions, nats
}

/** Routing rules of a pass: the MLP experts' and (MoA, docs/design.md §12) the attention experts'; [] = dense. */
export interface PassRules {
  mlp: RoutingRule[];
  attention: RoutingRule[];
}

interface PartialPass {
  probs: Float32Array[]; // [L] of [n, E] for this share of the windows
  attentionProbs: Float32Array[]; // [L] of [n, A], MoA only
  lossSums: number[]; // per window: Σ next-token cross-entropy (summed in window order later, so results do
  lossCounts: number[]; // not depend on the thread count)
}

/** The pass over some windows, in this thread. */
export function runWindows(weights: ReferenceWeights, windows: number[][], rules: PassRules): PartialPass {
  const L = weights.config.num_hidden_layers;
  const E = weights.config.num_experts;
  const A = attentionExperts(weights.config);
  const total = windows.reduce((n, w) => n + w.length, 0);
  const probs = Array.from({ length: L }, () => new Float32Array(total * E)); // [L][n, E]
  const attentionProbs = A > 0 ? Array.from({ length: L }, () => new Float32Array(total * A)) : []; // [L][n, A]
  let offset = 0;
  const lossSums: number[] = [];
  const lossCounts: number[] = [];
  for (const window of windows) {
    const result = referenceForward(weights, window, {
      routing: rules.mlp,
      ...(rules.attention.length ? { attentionRouting: rules.attention } : {}),
      collectRouterProbs: true,
    });
    for (let l = 0; l < L; l++) probs[l].set(result.routerProbs![l], offset * E);
    for (let l = 0; l < attentionProbs.length; l++) attentionProbs[l].set(result.attentionRouterProbs![l], offset * A);
    const { sum, count } = nextTokenLoss(result.logits, window, weights.config.vocab_size);
    lossSums.push(sum);
    lossCounts.push(count);
    offset += window.length;
  }
  return { probs, attentionProbs, lossSums, lossCounts };
}

/** Per-layer rows [n, width] of the shares, back in window order (window j is share j % shares' next window). */
function reassemble(windows: number[][], parts: PartialPass[], of: (part: PartialPass) => Float32Array[], L: number, width: number): Float32Array[] {
  const total = windows.reduce((n, w) => n + w.length, 0);
  const out = Array.from({ length: L }, () => new Float32Array(total * width)); // [L][N, width]
  const readOffsets = parts.map(() => 0);
  let writeOffset = 0;
  windows.forEach((window, j) => {
    const share = parts.length === 1 ? 0 : j % parts.length;
    const size = window.length * width;
    for (let l = 0; l < L; l++) out[l].set(of(parts[share])[l].subarray(readOffsets[share], readOffsets[share] + size), writeOffset);
    readOffsets[share] += size;
    writeOffset += size;
  });
  return out;
}

const WORKER_FILE = path.join(__dirname, 'calibration_worker.js');

/** Runs passes on a pool of worker threads that each load the dense checkpoint once. */
export class CalibrationRunner {
  private nextJob = 0;
  private readonly failures = new Map<Worker, Error>();

  private constructor(
    private readonly weights: ReferenceWeights,
    private readonly workers: Worker[],
  ) {}

  /** `threads` workers (default: the machine's parallelism, at most 8), or none when only one would run. */
  static create(weights: ReferenceWeights, denseDir: string, threads?: number): CalibrationRunner {
    const count = Math.max(1, Math.min(threads ?? Math.min(os.availableParallelism(), 8), 64));
    if (count === 1 || !fs.existsSync(WORKER_FILE)) return new CalibrationRunner(weights, []);
    checkMemory(`calibration on ${count} worker threads (each reads ${denseDir}; --threads 1 uses none)`, denseCheckpointMemory(weights.config, count));
    const workers = Array.from({ length: count }, () => new Worker(WORKER_FILE, { workerData: { denseDir } }));
    const runner = new CalibrationRunner(weights, workers);
    // A worker that fails between passes must not crash the process: remember why, and fail its next job.
    workers.forEach((worker) => {
      worker.on('error', (error) => runner.failures.set(worker, error));
      worker.on('exit', (code) => runner.failures.set(worker, runner.failures.get(worker) ?? new Error(`calibration worker exited (code ${code})`)));
    });
    return runner;
  }

  get threads(): number {
    return Math.max(1, this.workers.length);
  }

  async run(windows: number[][], rules: PassRules): Promise<PassResult> {
    const shares = this.workers.length
      ? this.workers.map((_, i) => windows.filter((__, j) => j % this.workers.length === i)) // round-robin: even work
      : [windows];
    const parts = this.workers.length
      ? await Promise.all(this.workers.map((worker, i) => this.runOn(worker, shares[i], rules)))
      : [runWindows(this.weights, windows, rules)];
    // Reassemble in window order: window j is the (j / workers)-th window of share j % workers.
    const L = this.weights.config.num_hidden_layers;
    const probs = reassemble(windows, parts, (part) => part.probs, L, this.weights.config.num_experts);
    const A = attentionExperts(this.weights.config);
    const attentionProbs = A > 0 ? reassemble(windows, parts, (part) => part.attentionProbs, L, A) : [];
    let lossSum = 0;
    let lossCount = 0;
    const windowIndex = parts.map(() => 0);
    windows.forEach((_, j) => {
      const share = parts.length === 1 ? 0 : j % parts.length;
      lossSum += parts[share].lossSums[windowIndex[share]];
      lossCount += parts[share].lossCounts[windowIndex[share]];
      windowIndex[share]++;
    });
    return { probs, attentionProbs, loss: lossCount ? lossSum / lossCount : NaN };
  }

  async close(): Promise<void> {
    for (const worker of this.workers) worker.removeAllListeners('exit');
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  private runOn(worker: Worker, windows: number[][], rules: PassRules): Promise<PartialPass> {
    const id = this.nextJob++;
    return new Promise((resolve, reject) => {
      const failed = this.failures.get(worker);
      if (failed) return reject(failed);
      const done = () => {
        worker.off('message', onMessage);
        worker.off('error', onFailure);
        worker.off('exit', onExit);
      };
      const onMessage = (message: { id: number; error?: string } & PartialPass) => {
        if (message.id !== id) return;
        done();
        if (message.error) reject(new Error(`calibration worker: ${message.error}`));
        else resolve(message);
      };
      const onFailure = (error: Error) => {
        done();
        reject(error);
      };
      const onExit = (code: number) => onFailure(new Error(`calibration worker exited (code ${code})`));
      worker.on('message', onMessage);
      worker.on('error', onFailure);
      worker.on('exit', onExit);
      worker.postMessage({ id, windows, rules });
    });
  }
}
