/**
 * A calibration pass: the reference forward over every calibration window under given routing rules, collecting
 * router probabilities and the next-token loss. Windows are independent, so a pass is split across worker threads
 * (one model copy each) when the compiled worker is available; under ts-node/jest it runs in this thread.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { nextTokenLoss, referenceForward, type ReferenceWeights, type RoutingRule } from '../model/reference';

export interface PassResult {
  probs: Float32Array[]; // [L] of [N, E], N = all calibration tokens in window order
  loss: number; // mean next-token cross-entropy over the windows' predictions, nats
}

interface PartialPass {
  probs: Float32Array[]; // [L] of [n, E] for this share of the windows
  lossSum: number;
  lossCount: number;
}

/** The pass over some windows, in this thread. */
export function runWindows(weights: ReferenceWeights, windows: number[][], rules: RoutingRule[]): PartialPass {
  const L = weights.config.num_hidden_layers;
  const E = weights.config.num_experts;
  const total = windows.reduce((n, w) => n + w.length, 0);
  const probs = Array.from({ length: L }, () => new Float32Array(total * E)); // [L][n, E]
  let offset = 0;
  let lossSum = 0;
  let lossCount = 0;
  for (const window of windows) {
    const result = referenceForward(weights, window, { routing: rules, collectRouterProbs: true });
    for (let l = 0; l < L; l++) probs[l].set(result.routerProbs![l], offset * E);
    const { sum, count } = nextTokenLoss(result.logits, window, weights.config.vocab_size);
    lossSum += sum;
    lossCount += count;
    offset += window.length;
  }
  return { probs, lossSum, lossCount };
}

const WORKER_FILE = path.join(__dirname, 'calibrationWorker.js');

/** Runs passes on a pool of worker threads that each load the dense checkpoint once. */
export class CalibrationRunner {
  private nextJob = 0;

  private constructor(
    private readonly weights: ReferenceWeights,
    private readonly workers: Worker[],
  ) {}

  /** `threads` workers (default: the machine's parallelism, at most 8), or none when only one would run. */
  static create(weights: ReferenceWeights, denseDir: string, threads?: number): CalibrationRunner {
    const count = Math.max(1, Math.min(threads ?? Math.min(os.availableParallelism(), 8), 64));
    if (count === 1 || !fs.existsSync(WORKER_FILE)) return new CalibrationRunner(weights, []);
    const workers = Array.from({ length: count }, () => new Worker(WORKER_FILE, { workerData: { denseDir } }));
    return new CalibrationRunner(weights, workers);
  }

  get threads(): number {
    return Math.max(1, this.workers.length);
  }

  async run(windows: number[][], rules: RoutingRule[]): Promise<PassResult> {
    const shares = this.workers.length
      ? this.workers.map((_, i) => windows.filter((__, j) => j % this.workers.length === i)) // round-robin: even work
      : [windows];
    const parts = this.workers.length
      ? await Promise.all(this.workers.map((worker, i) => this.runOn(worker, shares[i], rules)))
      : [runWindows(this.weights, windows, rules)];
    // Reassemble in window order: window j is the (j / workers)-th window of share j % workers.
    const L = this.weights.config.num_hidden_layers;
    const E = this.weights.config.num_experts;
    const total = windows.reduce((n, w) => n + w.length, 0);
    const probs = Array.from({ length: L }, () => new Float32Array(total * E)); // [L][N, E]
    const readOffsets = parts.map(() => 0);
    let writeOffset = 0;
    windows.forEach((window, j) => {
      const share = parts.length === 1 ? 0 : j % parts.length;
      const size = window.length * E;
      for (let l = 0; l < L; l++) probs[l].set(parts[share].probs[l].subarray(readOffsets[share], readOffsets[share] + size), writeOffset);
      readOffsets[share] += size;
      writeOffset += size;
    });
    const lossSum = parts.reduce((s, p) => s + p.lossSum, 0);
    const lossCount = parts.reduce((s, p) => s + p.lossCount, 0);
    return { probs, loss: lossCount ? lossSum / lossCount : NaN };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  private runOn(worker: Worker, windows: number[][], rules: RoutingRule[]): Promise<PartialPass> {
    const id = this.nextJob++;
    return new Promise((resolve, reject) => {
      const onMessage = (message: { id: number; error?: string } & PartialPass) => {
        if (message.id !== id) return;
        worker.off('message', onMessage);
        worker.off('error', onError);
        if (message.error) reject(new Error(`calibration worker: ${message.error}`));
        else resolve(message);
      };
      const onError = (error: Error) => {
        worker.off('message', onMessage);
        reject(error);
      };
      worker.on('message', onMessage);
      worker.once('error', onError);
      worker.postMessage({ id, windows, rules });
    });
  }
}
