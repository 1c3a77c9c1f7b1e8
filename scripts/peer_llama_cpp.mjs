// llama.cpp, through node-llama-cpp (an optional peer, ESM only), run in a child process by
// src/report/peer_llama_cpp.ts. Reads one JSON request on stdin, writes one JSON answer on stdout:
//   { model, threads, contextSize, ops: [ { op: 'info' } | { op: 'tokenize', texts } |
//     { op: 'generate', prompts: number[][], maxTokens } | { op: 'score', windows: number[][] } |
//     { op: 'bench', promptTokens, decodeTokens, sequences, repeats } ] }
// node-llama-cpp is imported from $DSMOE_NODE_LLAMA_CPP (a folder holding node_modules/node-llama-cpp, or the
// package folder itself) when set, else resolved from the working directory like any dependency.
// `--probe`: answer { available } without reading stdin or loading a model.
import { createRequire } from 'module';
import * as fs from 'fs';
import * as path from 'path';
import { pathToFileURL } from 'url';

async function importNodeLlamaCpp() {
  const hint = process.env.DSMOE_NODE_LLAMA_CPP;
  const candidates = hint ? [path.join(hint, 'node_modules', 'node-llama-cpp'), hint] : [];
  let base = candidates.find((dir) => fs.existsSync(path.join(dir, 'package.json')) && readJson(path.join(dir, 'package.json')).name === 'node-llama-cpp');
  if (hint && !base) throw new Error(`DSMOE_NODE_LLAMA_CPP=${hint} holds no node-llama-cpp (neither node_modules/node-llama-cpp nor the package itself)`);
  if (!base) base = path.dirname(createRequire(path.join(process.cwd(), 'package.json')).resolve('node-llama-cpp/package.json'));
  const pkg = readJson(path.join(base, 'package.json'));
  const entry = pkg.exports?.['.']?.import ?? pkg.exports?.['.']?.default ?? pkg.main ?? 'dist/index.js';
  const lib = await import(pathToFileURL(path.join(base, typeof entry === 'string' ? entry : entry.default)).href);
  return { lib, version: pkg.version };
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

function readStdin() {
  return new Promise((resolve, reject) => {
    let text = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk) => (text += chunk));
    process.stdin.on('end', () => resolve(text));
    process.stdin.on('error', reject);
  });
}

async function main() {
  const probe = process.argv.includes('--probe'); // only: can node-llama-cpp be imported?
  const request = probe ? null : JSON.parse(await readStdin());
  let lib;
  let packageVersion;
  try {
    ({ lib, version: packageVersion } = await importNodeLlamaCpp());
  } catch (error) {
    process.stdout.write(JSON.stringify({ available: false, reason: `node-llama-cpp is not available: ${String(error.message ?? error).split('\n')[0]}` }));
    return;
  }
  if (probe) {
    process.stdout.write(JSON.stringify({ available: true, node_llama_cpp: packageVersion }));
    return;
  }
  const { getLlama, LlamaLogLevel } = lib;
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false });
  const model = await llama.loadModel({ modelPath: request.model, gpuLayers: 0 });
  const threads = request.threads ?? 1;
  const results = [];
  for (const op of request.ops) {
    if (op.op === 'info') {
      results.push({
        llama_cpp_release: llama.llamaCppRelease,
        build_type: llama.buildType,
        gpu: llama.gpu,
        cpu_math_cores: llama.cpuMathCores,
        system_info: llama.systemInfo,
      });
    } else if (op.op === 'tokenize') {
      results.push(op.texts.map((text) => Array.from(model.tokenize(text, false))));
    } else if (op.op === 'generate') {
      const context = await model.createContext({ contextSize: request.contextSize, threads, sequences: 1, batchSize: request.contextSize });
      const out = [];
      const sequence = context.getSequence();
      for (const prompt of op.prompts) {
        await sequence.clearHistory();
        const generated = [];
        const items = prompt.map((t, i) => (i === prompt.length - 1 ? [t, { generateNext: { token: true, options: { temperature: 0 } } }] : t));
        let answer = await sequence.controlledEvaluate(items);
        for (let step = 0; step < op.maxTokens; step++) {
          const next = answer[answer.length - 1]?.next?.token;
          if (next === undefined || next === null) break;
          generated.push(next);
          if (step + 1 < op.maxTokens) answer = await sequence.controlledEvaluate([[next, { generateNext: { token: true, options: { temperature: 0 } } }]]);
        }
        out.push(generated);
      }
      await context.dispose();
      results.push(out);
    } else if (op.op === 'score') {
      const context = await model.createContext({ contextSize: request.contextSize, threads, sequences: 1, batchSize: request.contextSize });
      const windows = [];
      const sequence = context.getSequence();
      for (const window of op.windows) {
        await sequence.clearHistory();
        const items = window.map((t, i) => (i + 1 < window.length ? [t, { generateNext: { probabilities: true } }] : t));
        const answer = await sequence.controlledEvaluate(items);
        let nll = 0;
        for (let i = 0; i + 1 < window.length; i++) {
          const p = answer[i]?.next?.probabilities?.get(window[i + 1]) ?? 0;
          nll -= Math.log(p);
        }
        windows.push({ nll, predictions: window.length - 1 });
      }
      await context.dispose();
      results.push(windows);
    } else if (op.op === 'bench') {
      results.push(await bench(model, request, op, threads));
    } else {
      throw new Error(`unknown op ${op.op}`);
    }
  }
  await model.dispose();
  await llama.dispose();
  process.stdout.write(JSON.stringify({ available: true, node_llama_cpp: packageVersion, results }));
}

/** Prompt processing and greedy decode at batch 1 and with `sequences` parallel sequences: tokens per second. */
async function bench(model, request, op, threads) {
  const rows = [];
  for (const sequences of op.sequences) {
    const context = await model.createContext({ contextSize: request.contextSize * sequences, threads, sequences, batchSize: Math.max(op.promptTokens, sequences) * sequences });
    const seqs = Array.from({ length: sequences }, () => context.getSequence());
    const prompt = Array.from({ length: op.promptTokens }, (_, i) => (i * 7919 + 13) % op.vocab);
    let bestPrompt = Infinity;
    let bestDecode = Infinity;
    for (let r = 0; r < op.repeats; r++) {
      for (const s of seqs) await s.clearHistory();
      let t0 = performance.now();
      await Promise.all(seqs.map((s) => s.controlledEvaluate(prompt.map((t, i) => (i === prompt.length - 1 ? [t, { generateNext: { token: true, options: { temperature: 0 } } }] : t)))));
      bestPrompt = Math.min(bestPrompt, (performance.now() - t0) / 1000);
      t0 = performance.now();
      await Promise.all(
        seqs.map(async (s) => {
          for (let i = 0; i < op.decodeTokens; i++) await s.controlledEvaluate([[(i * 31 + 1) % op.vocab, { generateNext: { token: true, options: { temperature: 0 } } }]]);
        }),
      );
      bestDecode = Math.min(bestDecode, (performance.now() - t0) / 1000);
    }
    rows.push({ sequences, prompt_tokens_per_s: (op.promptTokens * sequences) / bestPrompt, decode_tokens_per_s: (op.decodeTokens * sequences) / bestDecode });
    await context.dispose();
  }
  return rows;
}

main().catch((error) => {
  process.stderr.write(`peer_llama_cpp: ${error.stack ?? error}\n`);
  process.exit(1);
});
