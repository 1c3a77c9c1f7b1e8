/** Worker thread of CalibrationRunner: loads the dense checkpoint once, then runs shares of calibration passes. */
import { parentPort, workerData } from 'worker_threads';
import type { RoutingRule } from '../model/reference';
import { runWindows } from './calibration_pass';
import { readAnyDenseCheckpoint } from '../interop/read_any_dense';

const dense = readAnyDenseCheckpoint((workerData as { denseDir: string }).denseDir);

parentPort!.on('message', (job: { id: number; windows: number[][]; rules: RoutingRule[] }) => {
  try {
    const result = runWindows(dense, job.windows, job.rules);
    parentPort!.postMessage({ id: job.id, ...result }, result.probs.map((p) => p.buffer as ArrayBuffer));
  } catch (error) {
    parentPort!.postMessage({ id: job.id, error: (error as Error).message });
  }
});
