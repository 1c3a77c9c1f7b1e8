/**
 * Weights residency (src/runtime/residency.ts, native/src/model/mapped_file.h): every mode gives the same logits as
 * the default, bit for bit; a bad value is a one-line error naming the flag, in TypeScript and in the addon; with
 * the expert cache only mmap is allowed; an mlock refused by RLIMIT_MEMLOCK leaves a working model and a warning
 * (checked in a child process whose memlock limit is 64 KiB and, under root, without CAP_IPC_LOCK).
 * Needs the addon (npm run build:native).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeRandomPlan } from '../../src/plan/random_plan';
import type { ModelConfig } from '../../src/model/config';
import { UserError } from '../../src/errors';
import { ADDON_PATH, loadNative, type NativeModel } from '../../src/runtime/native';
import { nativeSpec } from '../../src/runtime/spec';
import { openPlan } from '../../src/runtime/open_plan';
import * as backend from '../../src/runtime/backend';
import { DEFAULT_RESIDENCY, defaultResidency, LARGE_PLAN_RESIDENCY, parseResidency, RESIDENCIES, type Residency } from '../../src/runtime/residency';
import { residencyFromArgs } from '../../src/cli/residency_option';

const config: ModelConfig = {
  vocab_size: 20000, // ~5 MB of bf16 embeddings: `read` copies it in 2 MiB slices on several threads, the last one partial
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_experts: 6,
  moe_intermediate_size: 32,
  shared_expert_intermediate_size: 0,
  num_experts_per_tok: 2,
  max_position_embeddings: 32,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-residency-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const dir = path.join(root, 'plan');
const loaded = writeRandomPlan(dir, config, { dtype: 'bf16', seed: 5, k: 2 });
if (fs.statSync(loaded.weightsPath).size <= 4 << 20) throw new Error('the residency test plan must span more than two 2 MiB slices');
const prompt = Int32Array.from([1, 42, 7, 299, 150, 3]);

/** Logits of a prefill (every row) and two decode steps, dense routing on the second. */
async function logitsOf(model: NativeModel): Promise<Float32Array[]> {
  const ctx = model.newContext(1, 16);
  const T = prompt.length;
  const out = [await ctx.evaluate(prompt, new Int32Array(T), Int32Array.from({ length: T }, (_, i) => i), Int32Array.from({ length: T }, (_, i) => i))];
  out.push(await ctx.evaluate(Int32Array.from([9]), new Int32Array(1), Int32Array.from([T]), Int32Array.from([0])));
  out.push(await ctx.evaluate(Int32Array.from([11]), new Int32Array(1), Int32Array.from([T + 1]), Int32Array.from([0]), { mode: 'dense' }));
  return out;
}

describe('weights residency', () => {
  test('every mode gives the default mode\'s logits bit for bit, and says which mode it runs', async () => {
    const addon = loadNative();
    const base = new addon.NativeModel(nativeSpec(loaded, 2));
    const want = await logitsOf(base);
    expect(base.info().residency).toBe('mmap');
    base.dispose();
    for (const residency of RESIDENCIES) {
      const model = new addon.NativeModel({ ...nativeSpec(loaded, 2), residency });
      try {
        expect(model.info().residency).toBe(residency);
        const got = await logitsOf(model);
        // bit for bit; the first differing logit (-1: none), as jest's element-wise toEqual is slow on 120k values
        for (let i = 0; i < want.length; i++) {
          expect(got[i].length).toBe(want[i].length);
          expect(got[i].findIndex((value, j) => !Object.is(value, want[i][j]))).toBe(-1);
        }
      } finally {
        model.dispose();
      }
    }
  });

  test('a bad value is a one-line error naming the flag, before native code; the addon re-checks', () => {
    for (const bad of ['mlock ', 'MMAP', 'no-mmap', '', 3, undefined]) {
      expect(() => parseResidency(bad)).toThrow(UserError);
    }
    expect(() => residencyFromArgs({ residency: 'lock' })).toThrow('--residency must be one of mmap, populate, mlock, read, got "lock"');
    expect(residencyFromArgs({})).toBeUndefined();
    expect(defaultResidency('cpu', false)).toBe(DEFAULT_RESIDENCY);
    // a private copy only while the plan takes at most half the available memory; beyond, the shared page cache
    expect(defaultResidency('cpu', false, 4e9, 8e9)).toBe('read');
    expect(defaultResidency('cpu', false, 4e9 + 1, 8e9)).toBe(LARGE_PLAN_RESIDENCY);
    expect(LARGE_PLAN_RESIDENCY).toBe('populate');
    expect(defaultResidency('cpu', true)).toBe('mmap');
    expect(defaultResidency('cuda', false)).toBe('mmap');
    expect(() => openPlan(dir, { slots: 1, residency: 'swap' as Residency })).toThrow(/^--residency must be one of .*got "swap"$/);
    const addon = loadNative();
    expect(() => new addon.NativeModel({ ...nativeSpec(loaded, 2), residency: 'swap' as Residency })).toThrow(
      'spec.residency must be mmap, populate, mlock or read, got swap',
    );
  });

  test('with the expert cache only mmap is allowed (the cache exists to keep experts out of memory)', () => {
    expect(() => openPlan(dir, { slots: 1, device: 'cpu', residency: 'read', expertCache: { size: '50%' } })).toThrow(
      /--residency read holds every expert in memory/,
    );
  });

  test('openPlan passes the runtime\'s residency warning to onWarning and keeps the model', async () => {
    const addon = loadNative();
    const spy = jest.spyOn(backend, 'selectBackend').mockReturnValue({
      name: 'cpu',
      describe: 'cpu',
      createModel: (spec) => {
        const model = new addon.NativeModel(spec);
        return {
          newContext: (slots, maxContext) => model.newContext(slots, maxContext),
          info: () => ({ ...model.info(), residencyWarning: 'cannot lock (scripted)' }),
          expertCacheStats: () => model.expertCacheStats(),
          opTimes: () => model.opTimes(),
          dispose: () => model.dispose(),
        };
      },
    });
    const warnings: string[] = [];
    try {
      const opened = openPlan(dir, { slots: 1, residency: 'mlock', onWarning: (m) => warnings.push(m) });
      expect(warnings).toEqual(['cannot lock (scripted)']);
      const logits = await opened.context.evaluate(prompt, new Int32Array(prompt.length), Int32Array.from(prompt, (_, i) => i), Int32Array.from([0]));
      expect(logits.length).toBe(config.vocab_size);
      opened.model.dispose();
    } finally {
      spy.mockRestore();
    }
  });

  test('an mlock refused by RLIMIT_MEMLOCK falls back to the populated mapping with a warning', async () => {
    const addon = loadNative();
    const reference = new addon.NativeModel(nativeSpec(loaded, 2));
    const want = await logitsOf(reference);
    reference.dispose();
    const specFile = path.join(root, 'spec.json');
    fs.writeFileSync(specFile, JSON.stringify({ ...nativeSpec(loaded, 2), residency: 'mlock' }));
    const child = `
      const addon = require(${JSON.stringify(ADDON_PATH)});
      const spec = JSON.parse(require('fs').readFileSync(${JSON.stringify(specFile)}, 'utf8'));
      const model = new addon.NativeModel(spec);
      const ctx = model.newContext(1, 16);
      const prompt = Int32Array.from(${JSON.stringify(Array.from(prompt))});
      const T = prompt.length;
      ctx.evaluate(prompt, new Int32Array(T), Int32Array.from({ length: T }, (_, i) => i), Int32Array.from({ length: T }, (_, i) => i))
        .then((logits) => process.stdout.write(JSON.stringify({ info: model.info(), first: Array.from(logits.subarray(0, 300)) })));
    `;
    // 64 KiB may be locked; root keeps CAP_IPC_LOCK (which ignores the limit) unless setpriv drops it.
    const asRoot = process.getuid?.() === 0;
    const argv = ['--memlock=65536:65536', ...(asRoot ? ['setpriv', '--bounding-set=-ipc_lock', '--inh-caps=-ipc_lock'] : []), process.execPath, '-e', child];
    const run = spawnSync('prlimit', argv, { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const result = JSON.parse(run.stdout) as { info: { residency: string; residencyWarning: string }; first: number[] };
    expect(result.info.residency).toBe('mlock');
    expect(result.info.residencyWarning).toMatch(/^cannot lock the \d+ MiB of .*weights\.safetensors in memory \(.*; RLIMIT_MEMLOCK is 64 KiB: raise it with `ulimit -l`\); the weights stay mapped and populated, but may be reclaimed$/);
    expect(result.first).toEqual(Array.from(want[0].subarray(0, 300)));
  });
});
