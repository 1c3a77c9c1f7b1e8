/** Worker thread of CalibrationRunner: loads the dense checkpoint once, then runs shares of calibration passes. */
import { parentPort, workerData } from 'worker_threads';
import { runWindows, type PassRules } from './calibration_pass';
import { readAnyDenseCheckpoint } from '../interop/read_any_dense';

const dense = readAnyDenseCheckpoint((workerData as { denseDir: string }).denseDir);

parentPort!.on('message', (job: { id: number; windows: number[][]; rules: PassRules }) => {
  try {
    const result = runWindows(dense, job.windows, job.rules);
    parentPort!.postMessage({ id: job.id, ...result }, [...result.probs, ...result.attentionProbs].map((p) => p.buffer as ArrayBuffer));
  } catch (error) {
    parentPort!.postMessage({ id: job.id, error: (error as Error).message });
  }
});
