import { loadNative, type KernelWeights, type NativeAddon } from '../runtime/native';
import { openPlan } from '../runtime/open_plan';
import type { ExpertCacheOptions } from '../runtime/expert_cache';
import type { Device } from '../runtime/backend';
import type { Residency } from '../runtime/residency';
import { f32ToBf16 } from '../checkpoint/safetensors';
import type { OpenedPlan, ReportRuntime } from './report_runtime';
import type { OurLayerTiming, PeerShape } from './peer_pytorch';
import { mean, percentile } from './statistics';

/**
 * The report's runtime over the native addon. The report needs several sequences at once (batch b = b slots), so
 * it opens the plan at the NativeModel / NativeContext level (docs/design.md §5) rather than through SparseModel,
 * whose context holds one sequence.
 */
export function nativeReportRuntime(
  threads?: number,
  options: { bandwidthBytesPerArray?: number; expertCache?: ExpertCacheOptions; device?: Device; residency?: Residency } = {},
): ReportRuntime {
  const addon = loadNative();
  const useThreads = threads && threads > 0 ? threads : addon.cpuInfo().threads;
  const cache = options.expertCache; // every plan the report runs reads its experts through the cache
  const residency = options.residency; // how every plan the report opens holds its weights
  const runtimeDevice = options.device ?? 'cpu'; // the report compares with the CPU's measured limits
  return {
    probe: {
      cpuInfo: () => addon.cpuInfo(),
      // The addon's default arrays (256 MiB each) are far beyond any cache; tests may pass smaller ones.
      memoryBandwidthGBs: (bytes?: number) => addon.memoryBandwidthGBs(bytes ?? options.bandwidthBytesPerArray, useThreads),
      peakGflops: () => addon.peakGflops(useThreads),
    },
    async openPlan(dir, options): Promise<OpenedPlan> {
      const { model, context, device } = openPlan(dir, {
        threads: options.threads ?? useThreads,
        device: runtimeDevice,
        slots: options.slots,
        maxContext: options.maxContext,
        expertCache: cache,
        residency,
        profileOps: true, // a few clock reads per layer against milliseconds per call: the report always says where time goes
      });
      process.stderr.write(`device: ${device}\n`);
      return {
        context,
        threads: model.info().threads,
        residency: model.info().residency,
        dispose: () => model.dispose(),
        probe: {
          read: () => model.opTimes(),
          sample: (row, counter) => addon.kernels.sample(row, 0.8, 0.95, 1, counter), // temperature 0.8, top-p 0.95
        },
      };
    },
    timeMoeLayer: (shape, options) => timeMoeLayer(addon, shape, { ...options, threads: options.threads ?? useThreads }),
  };
}

function normal(n: number, std: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let state = seed >>> 0 || 1;
  const uniform = () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return (state + 0.5) / 4294967296;
  };
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

/**
 * Our time for one MoE layer, isolated the same way the PyTorch peer times its block: router matmul, softmax,
 * top-k, token→expert grouping and the grouped expert FFN with the weighted combine, called kernel by kernel from
 * TypeScript (kernels.* of the addon; each call copies its small activations across the boundary, which the
 * in-model path does not, so this is if anything a slight overestimate of our layer time).
 */
export async function timeMoeLayer(
  addon: NativeAddon,
  shape: PeerShape,
  options: { dtypes: ('f32' | 'bf16')[]; batches: number[]; threads: number; repeats: number },
): Promise<OurLayerTiming[]> {
  const timings: OurLayerTiming[] = [];
  for (const dtype of options.dtypes) timings.push(...timeMoeLayerAt(addon, shape, dtype, options));
  return timings;
}

function timeMoeLayerAt(
  addon: NativeAddon,
  shape: PeerShape,
  dtype: 'f32' | 'bf16',
  options: { batches: number[]; threads: number; repeats: number },
): OurLayerTiming[] {
  const { hidden: d, experts: E, intermediate: I, k } = shape;
  const narrow = (x: Float32Array): KernelWeights => (dtype === 'f32' ? x : f32ToBf16(x));
  const router = normal(E * d, 0.02, 1); // [E, d] F32
  const gateUp = narrow(normal(E * 2 * I * d, 0.02, 2)); // [E, 2I, d]
  const down = narrow(normal(E * d * I, 0.02, 3)); // [E, d, I]
  const slotOfExpert = Int32Array.from({ length: E }, (_, e) => e);
  const kernels = addon.kernels;
  const opts = { threads: options.threads };
  const layer = (x: Float32Array, T: number): Float32Array => {
    const logits = kernels.linear(x, T, d, router, 'f32', E, opts); // [T, E]
    const p = kernels.softmax(logits, T, E); // [T, E]
    const sel = kernels.select(p, T, E, { mode: 'topk', k }); // ids/weights [T, E], count [T]
    const g = kernels.groupByExpert(sel.ids, sel.weights, sel.count, T, E, E);
    return kernels.moeFfn(x, T, d, I, gateUp, down, dtype, E, slotOfExpert, g.offsets, g.rows, g.rowWeight, opts); // [T, d]
  };
  const timings: OurLayerTiming[] = [];
  for (const T of options.batches) {
    const x = normal(T * d, 0.5, 7 + T); // [T, d]
    for (let i = 0; i < 3; i++) layer(x, T);
    const samples: number[] = [];
    for (let r = 0; r < options.repeats; r++) {
      const start = process.hrtime.bigint();
      layer(x, T);
      samples.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    timings.push({
      dtype,
      batch: T,
      mean_ms: mean(samples),
      min_ms: Math.min(...samples),
      p50_ms: percentile(samples, 50),
      method: 'one MoE layer (router, softmax, top-k, grouping, grouped expert FFN with combine) timed kernel by kernel through the addon, same shape, threads and random N(0, 0.02) weights as the PyTorch block',
    });
  }
  return timings;
}
