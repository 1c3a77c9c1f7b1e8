/**
 * The device seam (src/runtime/backend.ts): which device `--device auto|cpu|cuda` picks and what it says when it
 * cannot, against scripted addons; then the real addon: what cpuInfo reports about CUDA, `auto` on a machine
 * without a GPU equal to `cpu`, and — only where a GPU is visible — the CUDA model against the CPU runtime on the
 * same plans (loss relative difference < 1e-3, logits, routing, greedy decode). Needs the addon.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { selectBackend } from '../../src/runtime/backend';
import { loadNative, type NativeAddon } from '../../src/runtime/native';
import { SparseModel } from '../../src/runtime/model';
import { writeRandomPlan, type RandomPlanOptions } from '../../src/plan/random_plan';
import type { ModelConfig } from '../../src/model/config';
import { UserError } from '../../src/errors';

function scriptedAddon(info: { cuda: boolean; cudaBuilt: boolean; cudaDevice?: string }): { addon: NativeAddon; specs: object[] } {
  const specs: object[] = [];
  const addon = {
    cpuInfo: () => ({ simd: 'avx2', detected: 'avx2', threads: 2, cudaDevices: info.cuda ? 1 : 0, ...info }),
    NativeModel: function (spec: object) {
      specs.push(spec);
    },
  } as unknown as NativeAddon;
  return { addon, specs };
}

describe('selectBackend', () => {
  test('cpu is the CPU whatever the machine has', () => {
    const { addon, specs } = scriptedAddon({ cuda: true, cudaBuilt: true, cudaDevice: 'NVIDIA H200' });
    const backend = selectBackend('cpu', addon);
    expect(backend).toMatchObject({ name: 'cpu', describe: 'cpu' });
    backend.createModel({ threads: 1 } as never);
    expect(specs).toEqual([{ threads: 1, device: 'cpu' }]); // the device reaches the addon's spec
  });

  test('auto prefers a usable GPU and names it, else falls back to the CPU', () => {
    const gpu = scriptedAddon({ cuda: true, cudaBuilt: true, cudaDevice: 'NVIDIA H200' });
    const onGpu = selectBackend('auto', gpu.addon);
    expect(onGpu).toMatchObject({ name: 'cuda', describe: 'cuda (NVIDIA H200)' });
    onGpu.createModel({} as never);
    expect(gpu.specs).toEqual([{ device: 'cuda' }]);
    expect(selectBackend('auto', scriptedAddon({ cuda: false, cudaBuilt: true }).addon)).toMatchObject({ name: 'cpu' });
    expect(selectBackend('auto', scriptedAddon({ cuda: false, cudaBuilt: false }).addon)).toMatchObject({ name: 'cpu' });
    expect(selectBackend(undefined, scriptedAddon({ cuda: false, cudaBuilt: false }).addon)).toMatchObject({ name: 'cpu' });
  });

  test('cuda without a usable GPU is a one-line UserError naming the flag and the reason', () => {
    const noDevice = () => selectBackend('cuda', scriptedAddon({ cuda: false, cudaBuilt: true }).addon);
    expect(noDevice).toThrow(UserError);
    expect(noDevice).toThrow(/^--device cuda: no CUDA device is visible \(no NVIDIA driver, no GPU, or too old a driver\); use --device cpu or auto$/);
    const noBuild = () => selectBackend('cuda', scriptedAddon({ cuda: false, cudaBuilt: false }).addon);
    expect(noBuild).toThrow(/^--device cuda: this build of the runtime has no CUDA part \(nvcc was not on PATH/);
    expect(selectBackend('cuda', scriptedAddon({ cuda: true, cudaBuilt: true }).addon)).toMatchObject({ name: 'cuda', describe: 'cuda (GPU 0)' });
  });

  test('an unknown device is refused', () => {
    expect(() => selectBackend('gpu' as never, scriptedAddon({ cuda: true, cudaBuilt: true }).addon)).toThrow(
      /^--device must be one of auto, cpu, cuda, got "gpu"$/,
    );
  });
});

// A shape inside the CUDA kernels' limits (d % 32, I % 32, head dim 32, ≤ 8 query heads per kv head), with a shared
// expert and an untied lm_head so every upload and every kernel of the layer runs.
const config: ModelConfig = {
  vocab_size: 300,
  hidden_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_experts: 8,
  moe_intermediate_size: 64,
  shared_expert_intermediate_size: 32,
  num_experts_per_tok: 2,
  max_position_embeddings: 96,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-backend-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function plan(name: string, options: RandomPlanOptions): string {
  const dir = path.join(root, name);
  writeRandomPlan(dir, config, options);
  return dir;
}

function tokens(n: number, seed = 1): number[] {
  let s = seed;
  return Array.from({ length: n }, () => (s = (s * 1103515245 + 12345) % 2147483648) % config.vocab_size);
}

/** max |a − b| / max |b| (random-init logits are small: compare against their scale). */
function relError(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) return Infinity;
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

describe('the real addon', () => {
  const info = loadNative().cpuInfo();

  test('cpuInfo says whether CUDA is linked and how many devices it sees', () => {
    expect(typeof info.cudaBuilt).toBe('boolean');
    expect(Number.isInteger(info.cudaDevices)).toBe(true);
    expect(info.cuda).toBe(info.cudaDevices > 0);
    if (info.cuda) expect(info.cudaBuilt).toBe(true);
    console.log(`addon: CUDA ${info.cudaBuilt ? 'linked' : 'not linked'}, ${info.cudaDevices} device(s)${info.cudaDevice ? ` (${info.cudaDevice})` : ''}`);
  });

  test('auto runs on the CPU when no GPU is usable, with results identical to cpu', async () => {
    if (info.cuda) return; // on a GPU machine auto means CUDA: compared with the CPU below
    const dir = plan('auto-vs-cpu', { dtype: 'bf16', seed: 5, k: 2 });
    const cpu = SparseModel.load(dir, { device: 'cpu', threads: 1 });
    const auto = SparseModel.load(dir, { device: 'auto', threads: 1 });
    try {
      expect(cpu.device).toBe('cpu');
      expect(auto.device).toBe('cpu');
      const ids = tokens(40);
      expect(await auto.logits(ids)).toEqual(await cpu.logits(ids));
      expect(await auto.generate(ids.slice(0, 8), { maxNewTokens: 6, temperature: 0.9, seed: 3 })).toEqual(
        await cpu.generate(ids.slice(0, 8), { maxNewTokens: 6, temperature: 0.9, seed: 3 }),
      );
    } finally {
      await cpu.dispose();
      await auto.dispose();
    }
  });

  test('cuda without a GPU fails before any weights are mapped, with the flag named', () => {
    if (info.cuda) return;
    const dir = plan('no-gpu', { dtype: 'bf16', seed: 5, k: 2 });
    expect(() => SparseModel.load(dir, { device: 'cuda' })).toThrow(/^--device cuda: /);
  });
});

// The CUDA model against the CPU runtime (the oracle; the CPU runtime itself is tested against the plain-TypeScript
// reference forward in test/runtime/model.test.ts). Runs only where a GPU is visible: scripts/gpu-check.sh.
const gpu = loadNative().cpuInfo().cuda;
if (!gpu) console.log('skipped: the CUDA model against the CPU runtime (no CUDA device visible; scripts/gpu-check.sh runs it)');
(gpu ? describe : describe.skip)('CUDA model against the CPU runtime', () => {
  const cases: [string, RandomPlanOptions][] = [
    ['f32 top-2', { dtype: 'f32', seed: 7, k: 2 }],
    ['bf16 top-2', { dtype: 'bf16', seed: 7, k: 2 }],
    ['bf16 threshold', { dtype: 'bf16', seed: 8, k: 2, strategy: 'threshold' }],
  ];
  test.each(cases)('%s: loss within 1e-3, logits, routing and greedy decode agree', async (name, options) => {
    const dir = plan(name.replace(/ /g, '-'), options);
    const cpu = SparseModel.load(dir, { device: 'cpu' });
    const cuda = SparseModel.load(dir, { device: 'cuda' });
    try {
      expect(cuda.device).toMatch(/^cuda \(/);
      const ids = tokens(90, 3);
      for (const mode of ['plan', 'dense'] as const) {
        cpu.setMode(mode);
        cuda.setMode(mode);
        cpu.resetStats();
        cuda.resetStats();
        // prefill-sized windows (the grouped-GEMM paths) and short ones (the mat-vec paths)
        for (const context of [90, 6]) {
          const want = await cpu.score(ids, { context });
          const got = await cuda.score(ids, { context });
          const rel = Math.abs(got.loss - want.loss) / want.loss;
          console.log(`cuda vs cpu, ${name}, ${mode}, windows of ${context}: loss ${got.loss.toFixed(6)} vs ${want.loss.toFixed(6)}, relative ${rel.toExponential(2)}`);
          expect(rel).toBeLessThan(1e-3);
        }
        const logitsRel = relError(await cuda.logits(ids.slice(0, 40)), await cpu.logits(ids.slice(0, 40)));
        console.log(`cuda vs cpu, ${name}, ${mode}: logits max relative difference ${logitsRel.toExponential(2)}`);
        expect(logitsRel).toBeLessThan(2e-2);
        const a = cpu.routingStats();
        const b = cuda.routingStats();
        expect(b.tokens).toBe(a.tokens);
        expect(Math.abs(b.activeExperts - a.activeExperts)).toBeLessThan(0.02 * a.activeExperts); // near ties may differ
      }
      // Greedy decode on the device (one token per step: the decode kernels): each chosen token is the CPU's
      // arg-max of the same prefix, or within a near tie of it.
      cpu.setMode('plan');
      cuda.setMode('plan');
      const prompt = ids.slice(0, 12);
      const generated = await cuda.generate(prompt, { maxNewTokens: 10, temperature: 0 });
      expect(generated).toHaveLength(10);
      const all = [...prompt, ...generated];
      const logits = await cpu.logits(all);
      const V = config.vocab_size;
      for (let i = 0; i < generated.length; i++) {
        const row = logits.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
        let best = -Infinity;
        for (const x of row) best = Math.max(best, x);
        expect(best - row[generated[i]]).toBeLessThan(1e-3 * Math.max(1, Math.abs(best)));
      }
    } finally {
      await cpu.dispose();
      await cuda.dispose();
    }
  });

  test('a plan outside the kernels\' limits is refused with its numbers, not run', () => {
    const dir = path.join(root, 'odd-shape');
    writeRandomPlan(dir, { ...config, hidden_size: 40, moe_intermediate_size: 13, shared_expert_intermediate_size: 0 }, { dtype: 'bf16', seed: 1, k: 2 });
    expect(() => SparseModel.load(dir, { device: 'cuda' })).toThrow(/the CUDA runtime cannot serve this plan: hidden size 40 is not a multiple of 32/);
  });
});
