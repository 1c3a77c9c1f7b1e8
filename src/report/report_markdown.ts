import type { ReportJson } from './report_json';
import type { ThroughputRow } from './throughput';
import { OPS } from '../runtime/op_times';
import { fixed, formatBytes, formatCount, markdownTable, percent } from './format';
import { denseIntermediateSize, expertPools, moeLayers, parameterCounts, preGated, withoutDefaults } from '../model/config';

/** The one-line summary the demo prints and report.md opens with. */
export function headline(report: ReportJson): string {
  const share = report.params.sparse.active_per_token / report.params.dense.active_per_token;
  const parts = [
    `${percent(share)} of parameters active per token (${formatCount(report.params.sparse.active_per_token)} of ${formatCount(report.params.dense.active_per_token)})`,
    `decode speedup ${fixed(report.measured_speedup)}× at batch ${report.speedup_batch} (ideal ${fixed(report.ideal_speedup)}×)`,
  ];
  if (report.quality) {
    const change = report.quality.sparse.perplexity / report.quality.dense.perplexity - 1;
    parts.push(
      `perplexity ${fixed(report.quality.dense.perplexity, 3)} → ${fixed(report.quality.sparse.perplexity, 3)} (${change >= 0 ? '+' : ''}${percent(change, 2)})`,
    );
  }
  return parts.join(', ');
}

/**
 * The per-op table: milliseconds per call of each op (the runtime's phase timer; decode includes sampling every
 * row), the rest of the call, and the page faults taken during the timed calls. Empty when nothing was timed.
 */
export function whereTheTimeGoes(report: Pick<ReportJson, 'throughput'>): string[] {
  const rows = report.throughput.filter((r) => r.ops_ms);
  if (!rows.length) return [];
  const ops = OPS.filter((op) => rows.some((r) => (r.ops_ms?.[op] ?? 0) > 0));
  const faults = (r: ThroughputRow) => (r.page_faults ? `${r.page_faults.minor} / ${r.page_faults.major}` : 'n/a');
  return [
    '## Where the time goes',
    '',
    markdownTable(
      ['mode', 'phase', 'batch', ...ops.map((op) => `${op} ms`), 'other ms', 'call ms', 'page faults minor / major'],
      rows.map((r) => {
        const timed = ops.reduce((sum, op) => sum + (op === 'sampling' ? 0 : r.ops_ms?.[op] ?? 0), 0);
        return [r.mode, r.phase, String(r.batch), ...ops.map((op) => fixed(r.ops_ms?.[op], 2)), fixed(r.mean_ms - timed, 2), fixed(r.mean_ms, 2), faults(r)];
      }),
    ),
    '',
    'Mean milliseconds per call of each phase of the forward pass, timed inside the runtime; sampling (every row of ' +
      'each decode step, temperature 0.8, top-p 0.95) runs after the call and is not part of its time. "other" is the ' +
      'call time the phases do not account for: buffers, the trip through the addon, thread wake-ups. Page faults ' +
      'are the process\'s during the timed calls, over all repeats: more than a few on a warm plan mean its mapping ' +
      'was reclaimed (see `--residency`).',
    '',
  ];
}

export function reportMarkdown(report: ReportJson): string {
  const m = report.machine;
  const out: string[] = [];
  const title = report.kind === 'random-init' ? `Speed report: ${report.sources.shape} (random init)` : 'Speedup report: dense vs sparse';
  out.push(`# ${title}`, '', `**${headline(report)}.**`, '');
  out.push(
    `Machine: ${m.cpu}, ${m.cores} logical CPUs (${m.simd}), ${report.settings.threads} runtime threads` +
      (report.settings.residency ? ` (weights: ${report.settings.residency})` : '') +
      ', ' +
      `${fixed(m.total_memory_gb, 1)} GiB RAM; measured in this run: memory bandwidth ${fixed(m.memory_bandwidth_gbs, 1)} GB/s ` +
      `(triad), FMA peak ${fixed(m.peak_gflops, 1)} GFLOP/s. Node ${m.node}, ${m.platform}. ${report.created}.`,
    '',
  );
  const c = report.model.config;
  out.push(
    `Model: d=${c.hidden_size}, ${c.num_hidden_layers} layer${c.num_hidden_layers === 1 ? '' : 's'}, ${c.num_attention_heads} heads (${c.num_key_value_heads} KV), ` +
      `${c.num_experts} experts × ${c.moe_intermediate_size}` +
      (c.shared_expert_intermediate_size ? ` + shared ${c.shared_expert_intermediate_size}` : '') +
      `, vocab ${c.vocab_size}; plan dtype ${report.model.dtype}` +
      (report.model.dtypes ? ` (experts ${report.model.dtypes.experts}, attention ${report.model.dtypes.attention})` : '') +
      `; strategy ${report.model.strategy.name}` +
      ` (experts per token by layer: ${report.model.experts_per_token.join(', ')}).` +
      (report.sources.dense ? ` Dense: \`${report.sources.dense}\`.` : '') +
      ` Sparse plan: \`${report.sources.sparse}\`.`,
    '',
  );
  if (report.model.layers_note) out.push(`> ${report.model.layers_note}`, '');
  if (report.budget) out.push(budgetLine(report.budget), '');

  if (report.quality) {
    out.push('## Quality (held-out tokens)', '');
    const q = report.quality;
    out.push(
      markdownTable(
        ['mode', 'loss (nats)', 'perplexity', 'bits/byte', 'experts/token/layer', 'tokens'],
        (['dense', 'sparse'] as const).map((mode) => [
          mode === 'dense' ? 'dense (plan, every expert)' : 'sparse (plan routing)',
          fixed(q[mode].loss, 4),
          fixed(q[mode].perplexity, 3),
          fixed(q[mode].bits_per_byte, 4),
          fixed(q[mode].mean_active_experts, 2),
          String(q[mode].tokens),
        ]),
      ),
      '',
      'Both rows are the same plan on the same runtime and tokens; "dense" overrides routing to run every kept expert ' +
        'with its full probability, which is the dense-trained model (exactly, for an f32 plan without pruning).',
      '',
    );
    const r = report.reference_check;
    if (r) {
      out.push(
        `Cross-check against the dense checkpoint itself (JS reference forward, f32, first ${r.windows} windows, ${r.tokens} tokens): ` +
          `reference loss ${fixed(r.reference_loss, 4)}, plan dense mode ${fixed(r.plan_dense_loss, 4)}, plan sparse ${fixed(r.plan_sparse_loss, 4)}.`,
        '',
      );
    }
  }

  out.push('## Cost per token', '');
  out.push(
    markdownTable(
      ['mode', 'stored params', 'active params / token', 'FLOPs / token', 'weight bytes / token'],
      (['dense', 'sparse'] as const).map((mode) => [
        mode,
        formatCount(report.params[mode].total),
        formatCount(report.params[mode].active_per_token),
        formatCount(report.cost[mode].flops_per_token),
        formatBytes(report.cost[mode].weight_bytes_per_token),
      ]),
    ),
    '',
    ...costSplitSection(report),
    ...megrezNotes(report),
    `Ideal speedup at batch 1 = dense weight bytes per token ÷ sparse = **${fixed(report.ideal_speedup)}×**; ` +
      `measured (decode, batch ${report.speedup_batch}, median of paired repeats) **${fixed(report.measured_speedup)}×**, ` +
      `${percent(report.speedup_efficiency)} of ideal.`,
    '',
  );

  out.push('## Throughput and latency', '');
  out.push(
    markdownTable(
      ['mode', 'phase', 'batch', 'tokens/s', 'p50 ms', 'p95 ms', 'calls timed'],
      report.throughput.map((r) => [r.mode, r.phase, String(r.batch), fixed(r.tokens_per_s, 1), fixed(r.p50_ms, 2), fixed(r.p95_ms, 2), String(r.samples)]),
    ),
    '',
    `Prefill: batch × ${report.settings.prompt_len} prompt tokens per call (latency = time to first token of the batch). ` +
      `Decode: one token per sequence per call, ${report.settings.decode_steps} steps after the prompt (latency = time per step). ` +
      `${report.settings.repeats} repeats after ${report.settings.warmup_rounds} warm-up round; dense and sparse alternate (ABBA) in one process.`,
    '',
    markdownTable(
      ['phase', ...report.settings.batches.map((b) => `batch ${b}`)],
      (['prefill', 'decode'] as const).map((phase) => [
        `${phase} speedup`,
        ...report.settings.batches.map((b) => `${fixed(report.speedups.find((s) => s.phase === phase && s.batch === b)?.speedup)}×`),
      ]),
    ),
    '',
  );

  out.push(...whereTheTimeGoes(report));

  out.push('## Against the machine', '');
  out.push(
    markdownTable(
      ['mode', 'decode batch', 'weight bytes / token', 'achieved GB/s', `of measured ${fixed(report.memory_bandwidth_gbs, 1)} GB/s`],
      report.bandwidth.map((b) => [b.mode, String(b.batch), formatBytes(b.weight_bytes_per_token), fixed(b.achieved_gbs, 2), percent(b.fraction_of_measured)]),
    ),
    '',
    markdownTable(
      ['mode', 'phase', 'batch', 'achieved GFLOP/s', `of measured peak ${fixed(report.peak_gflops, 1)}`],
      report.compute.map((c) => [c.mode, c.phase, String(c.batch), fixed(c.achieved_gflops, 2), percent(c.fraction_of_peak)]),
    ),
    '',
    'Weight FLOPs are 2 per multiply-add of every matrix (plan.cost) plus attention over the context; bytes are the ' +
      'weights a call reads, each expert once per call (distinct experts expected from the routing load).',
    '',
  );

  if (report.quality_cost.length) {
    out.push('## Quality–cost curve', '');
    out.push(
      markdownTable(
        ['routing', 'experts/token/layer', 'active params', 'of which attention', 'of which MLP', 'loss', 'perplexity'],
        report.quality_cost.map((p) => [
          p.sweep === 'topk' ? `top-${p.k}` : `threshold ε=${p.epsilon}`,
          fixed(p.mean_active_experts, 2),
          formatCount(p.active_params),
          p.active_attention_params === undefined ? '–' : formatCount(p.active_attention_params),
          p.active_mlp_params === undefined ? '–' : formatCount(p.active_mlp_params),
          fixed(p.loss, 4),
          fixed(p.perplexity, 3),
        ]),
      ),
      '',
      isMoa(report)
        ? "Each point routes the MLP experts as its row says; the attention experts run as the plan selects them (the sweep's routing override changes only the MLP's), so the attention column is the plan's throughout. The rest of the active parameters is the LM head and final norm."
        : 'Active parameters other than attention and MLP are the LM head and final norm.',
      '',
    );
  }

  out.push(...expertDtypeSection(report));

  out.push('## Peer: PyTorch eager (transformers-style Qwen2-MoE layer)', '');
  const peer = report.peer;
  if (!peer.available) {
    out.push(`${peer.reason}.`, '');
  } else {
    out.push(
      `torch ${peer.torch_version}, BLAS: ${peer.blas}, ${peer.threads} threads; one MoE layer d=${peer.shape.hidden}, ` +
        `${peer.shape.experts} experts × ${peer.shape.intermediate}, top-${peer.shape.k}.`,
      '',
      markdownTable(
        ['dtype', 'tokens', 'PyTorch best ms', 'PyTorch p50 / p95 ms', 'tokens/s (mean)'],
        peer.results.map((r) => [r.dtype, String(r.batch), fixed(r.min_ms, 2), `${fixed(r.p50_ms, 2)} / ${fixed(r.p95_ms, 2)}`, fixed(r.tokens_per_s, 1)]),
      ),
      '',
    );
    if (peer.comparison.length) {
      out.push(
        markdownTable(
          ['dtype', 'tokens', 'PyTorch best ms', 'dsmoe best ms', 'dsmoe speedup'],
          peer.comparison.map((c) => [c.dtype, String(c.batch), fixed(c.torch_ms, 2), fixed(c.ours_ms, 2), `${fixed(c.speedup)}×`]),
        ),
        '',
        `dsmoe layer time: ${peer.ours[0]?.method ?? ''}. Best call of two alternating rounds (PyTorch, dsmoe, PyTorch, dsmoe), ` +
          'since load from other processes can only slow a call.',
        '',
      );
    }
  }

  out.push(...llamaCppSection(report), '');

  if (report.figures.length) {
    out.push('## Figures', '');
    for (const figure of report.figures) out.push(`![${figure}](${figure})`, '');
  }
  if (report.notes.length) {
    out.push('## Notes', '');
    for (const note of report.notes) out.push(`- ${note}`);
    out.push('');
  }
  return out.join('\n');
}

/** The llama.cpp column: the same plan as GGUF in llama.cpp, beside dsmoe's own rows. */
export function llamaCppSection(report: ReportJson): string[] {
  const column = report.llama_cpp;
  const out = ['## Peer: llama.cpp (the same model, exported to GGUF)', ''];
  if (!column || !column.available) return [...out, `${column ? column.reason : 'not measured'}.`];
  const info = column.info;
  out.push(
    `node-llama-cpp ${column.node_llama_cpp}, llama.cpp ${info.llama_cpp_release.repo} ${info.llama_cpp_release.release} (${info.build_type} build, ` +
      `GPU ${info.gpu || 'off'}), ${column.threads} threads; ${info.system_info.trim()}`,
    '',
    `GGUF ${column.dtype} (${fixed(column.gguf_bytes / 2 ** 20, 1)} MiB), qwen2moe top-${column.top_k} of ${column.experts} experts ("dense": all ${column.experts}); ` +
      `prompt ${column.prompt_tokens} tokens per sequence, then ${column.decode_tokens} greedy decode steps; best of the repeats.`,
    '',
    markdownTable(
      ['mode', 'sequences', 'llama.cpp prefill tok/s', 'dsmoe prefill tok/s', 'llama.cpp decode tok/s', 'dsmoe decode tok/s', 'dsmoe ÷ llama.cpp (decode)'],
      column.rows.map((row) => {
        const pair = (phase: 'prefill' | 'decode') => column.comparison.find((c) => c.mode === row.mode && c.batch === row.sequences && c.phase === phase);
        const decode = pair('decode');
        return [
          row.mode,
          String(row.sequences),
          fixed(row.prompt_tokens_per_s, 1),
          pair('prefill') ? fixed(pair('prefill')!.dsmoe_tokens_per_s, 1) : '—',
          fixed(row.decode_tokens_per_s, 1),
          decode ? fixed(decode.dsmoe_tokens_per_s, 1) : '—',
          decode ? `${fixed(decode.ratio)}×` : '—',
        ];
      }),
    ),
    '',
  );
  const speedup = (engine: 'llama' | 'dsmoe', batch: number): number | null => {
    const get = (mode: 'dense' | 'sparse') => column.comparison.find((c) => c.mode === mode && c.batch === batch && c.phase === 'decode');
    const dense = get('dense');
    const sparse = get('sparse');
    if (!dense || !sparse) return null;
    return engine === 'llama' ? sparse.llama_cpp_tokens_per_s / dense.llama_cpp_tokens_per_s : sparse.dsmoe_tokens_per_s / dense.dsmoe_tokens_per_s;
  };
  const batches = [...new Set(column.rows.map((r) => r.sequences))];
  const lines = batches
    .map((b) => ({ b, ours: speedup('dsmoe', b), theirs: speedup('llama', b) }))
    .filter((x) => x.ours !== null && x.theirs !== null)
    .map((x) => `batch ${x.b}: dsmoe ${fixed(x.ours!)}×, llama.cpp ${fixed(x.theirs!)}×`);
  if (lines.length) out.push(`Decode speedup of sparse over dense, each engine against itself — ${lines.join('; ')}.`);
  return out;
}

/** What --budget chose, with the estimate and the time the report took. */
export function budgetLine(budget: NonNullable<ReportJson['budget']>): string {
  const chosen = (given: boolean) => (given ? 'given' : 'chosen');
  const layers = budget.layers ? `${budget.layers.chosen} of ${budget.layers.full} layers (${chosen(budget.layers.given)}), ` : '';
  const rate = (value: number | null, unit: string) => (value === null ? `– ${unit}` : `${fixed(value, 1)} ${unit}`);
  return (
    `Budget ${budget.minutes} min: ${layers}batches ${budget.batches.chosen.join(', ')} (${chosen(budget.batches.given)}), ` +
    `${budget.repeats.chosen} repeat${budget.repeats.chosen === 1 ? '' : 's'} (${chosen(budget.repeats.given)}); ` +
    `estimated ${fixed(budget.estimated_ms / 60_000, 1)} min, took ${fixed(budget.elapsed_ms / 60_000, 1)} min. ` +
    `Sized from ${budget.calibration.calls} batch-1 calibration calls (${rate(budget.calibration.effective_bandwidth_gbs, 'GB/s')} of weights, ` +
    `${rate(budget.calibration.effective_gflops, 'GFLOP/s')})` +
    (budget.fits ? '.' : '; even the least work was estimated to overrun the budget.')
  );
}

/**
 * Megrez2's architecture in the cost section: stored parameters with shared expert pools against the same model
 * with one set of experts per layer (active parameters and bytes per token do not change), and which layers are
 * routed one block early, and the dense first layers. Nothing for models without any of them.
 */
export function megrezNotes(report: Pick<ReportJson, 'model'>): string[] {
  const c = report.model.config;
  const f = c.experts_shared_frequency ?? 1;
  const notes: string[] = [];
  if (f > 1) {
    const pools = expertPools(c).length;
    const unshared = parameterCounts(withoutDefaults({ ...c, experts_shared_frequency: 1 })).total;
    const stored = parameterCounts(c).total;
    notes.push(
      `Expert pools (Megrez2's cross-layer sharing, experts_shared_frequency ${f}, first_k_dense_replace ${c.first_k_dense_replace ?? 0}): ` +
        `${pools} pool${pools === 1 ? '' : 's'} of routed experts for ${moeLayers(c).length} ${(c.first_k_dense_replace ?? 0) > 0 ? 'MoE ' : ''}layers, so the model stores ${formatCount(stored)} parameters ` +
        `where one set of experts per layer would store ${formatCount(unshared)} (${percent(stored / unshared - 1)}); ` +
        'each layer still runs its own experts per token, so active parameters and weight bytes per token are those of the unshared model.',
      '',
    );
  }
  const dense = c.first_k_dense_replace ?? 0;
  if (dense > 0) {
    notes.push(
      `Dense layers (first_k_dense_replace ${dense}): layer${dense === 1 ? '' : 's'} 0${dense > 1 ? `..${dense - 1}` : ''} run${dense === 1 ? 's' : ''} one SwiGLU MLP of width ${denseIntermediateSize(c)} ` +
        'instead of routed experts; the plan holds it as one always-selected expert behind a zero router, so its expert statistics are trivial.',
      '',
    );
  }
  const early = Array.from({ length: c.num_hidden_layers }, (_, l) => l).filter((l) => preGated(c, l));
  if (early.length) {
    notes.push(
      `Pre-gated routing (Megrez2's pre_gate): layer${early.length === 1 ? '' : 's'} ${early.join(', ')} route${early.length === 1 ? 's' : ''} on the previous layer's ` +
        "post-attention-norm output, so the runtime knows their experts one block early (`SparseModel.earlyRouting()`, the prefetch hook).",
      '',
    );
  }
  return notes;
}

function isMoa(report: Pick<ReportJson, 'model'>): boolean {
  return (report.model.config.attention_experts ?? 0) > 0;
}

/**
 * Active parameters and weight bytes per token split by attention and MLP (src/plan/cost.ts `costSplit`): in a MoA
 * plan (docs/design.md §12) the attention side holds the attention experts a token runs, so a plan that prunes or
 * selects attention experts shows it here. Nothing for reports written before the split.
 */
export function costSplitSection(report: Pick<ReportJson, 'model' | 'cost'>): string[] {
  const dense = report.cost.dense.split;
  const sparse = report.cost.sparse.split;
  if (!dense || !sparse) return [];
  const moa = isMoa(report);
  const row = (mode: string, split: NonNullable<typeof dense>) => [
    mode,
    formatCount(split.attention.params),
    formatCount(split.mlp.params),
    formatCount(split.other.params),
    formatBytes(split.attention.bytes),
    formatBytes(split.mlp.bytes),
    formatBytes(split.other.bytes),
  ];
  const A = report.model.config.attention_experts ?? 0;
  return [
    markdownTable(
      ['mode', 'attention params / token', 'MLP params / token', 'LM head + norm', 'attention bytes / token', 'MLP bytes / token', 'LM head, norm + embedding row'],
      [row('dense', dense), row('sparse', sparse)],
    ),
    '',
    moa
      ? `Attention holds the mixture of attention heads (${A} attention experts × ${report.model.config.heads_per_attention_expert} heads per layer): ` +
        "its q rows, q bias and W_o columns count once per attention expert a token runs, k/v and the attention router always. " +
        `Dense runs all ${A}; sparse runs the plan's attention experts (attention experts per token by layer: ${report.model.attention_experts_per_token?.join(', ') ?? '–'}).`
      : 'Attention is q/k/v/o, their biases and the attention norm; MLP the routed experts, the shared expert, the router and the MLP norm.',
    '',
  ];
}

/** The quality–cost rows per expert bit-width (expert_dtype_rows.ts); nothing when none were measured. */
function expertDtypeSection(report: ReportJson): string[] {
  const rows = report.expert_dtypes ?? [];
  if (!rows.length) return [];
  const scored = rows.some((r) => r.quality);
  const first = rows[0].expert_dtype;
  return [
    '## Quality–cost by expert bit-width',
    '',
    markdownTable(
      [
        'experts stored as',
        'bits / weight',
        'weight bytes / token',
        ...(scored ? ['loss', 'perplexity', `vs ${first}`] : []),
        'decode tokens/s (batch 1)',
        'GB/s of weights',
        `of measured ${fixed(report.memory_bandwidth_gbs, 1)} GB/s`,
      ],
      rows.map((r) => [
        `${r.expert_dtype}${r.source === 'plan' ? ' (the plan)' : ''}`,
        fixed(r.bits_per_weight, 2),
        formatBytes(r.weight_bytes_per_token),
        ...(scored ? [fixed(r.quality?.loss, 4), fixed(r.quality?.perplexity, 3), r.perplexity_change === null ? '–' : `${r.perplexity_change >= 0 ? '+' : ''}${percent(r.perplexity_change, 2)}`] : []),
        fixed(r.decode_tokens_per_s, 1),
        fixed(r.decode_gbs, 2),
        percent(r.fraction_of_bandwidth),
      ]),
    ),
    '',
    'Each row is the plan with its routed experts stored at that dtype (q8_0 / q4_0: GGUF blocks of 32 weights with an ' +
      "f16 scale) and everything else as the plan stores it, run with the plan's routing. Rows other than the plan's own " +
      "are re-encoded from the plan's stored values into a scratch copy. Weight bytes per token are the plan's cost " +
      `figures at that dtype; decode is timed at batch 1, ${report.settings.prompt_len}-token prompt, ${report.settings.decode_steps} steps, two timed runs after one warm-up (median call).`,
    '',
  ];
}
