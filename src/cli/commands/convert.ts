import * as path from 'path';
import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { heldOutSplit } from '../../data/held_out_split';
import { loadAnyTokenizer } from '../../interop/hf_tokenizer';
import { attentionDecisions, convertCheckpoint, DEFAULT_EPSILON, type AttentionConvertOptions } from '../../convert/convert_checkpoint';
import { convertChoosingPlan } from '../../convert/convert_choosing_plan';
import { DEFAULT_MAX_LOSS_INCREASE } from '../../convert/choose_plan';
import { DEFAULT_EPSILONS } from '../../runtime/quality_cost_sweep';
import { parseNumberList } from '../../report/parse_list';
import { readAnyDenseCheckpoint } from '../../interop/read_any_dense';
import { CLASS_DTYPE_FLAGS, classDtypeProblems, matrixDtypeOfFlag, PLAN_DTYPES, type ClassDtypeFlag } from '../../plan/dtype';
import type { AttentionStrategyName, PlanClassDtypes, PlanDtype, StrategyName } from '../../plan/plan_format';

interface ConvertArgs {
  dense: string;
  out: string;
  strategy?: StrategyName;
  k?: number;
  epsilon?: number;
  'max-loss-increase': number;
  'max-perplexity-increase'?: number;
  epsilons: string;
  dtype: PlanDtype;
  'expert-dtype'?: ClassDtypeFlag;
  'attn-dtype'?: ClassDtypeFlag;
  'calib-tokens': number;
  'calib-context'?: number;
  text?: string;
  recipe?: string;
  'prune-below'?: number;
  renormalize: boolean;
  threads?: number;
  quiet: boolean;
  'attention-strategy'?: AttentionStrategyName;
  'attention-k'?: number;
  'attention-epsilon'?: number;
}

/** `dsmoe convert <dense-dir> --out DIR`: a dense checkpoint → a sparse plan folder (docs/design.md §4). */
export const convertCommand: CommandModule<object, ConvertArgs> = {
  command: 'convert <dense>',
  describe: 'Convert a dense checkpoint into a sparse plan: calibrated routing, packed weights, cost figures',
  builder: (yargs) =>
    yargs
      .positional('dense', { type: 'string', demandOption: true, describe: 'dense checkpoint folder (config.json + model.safetensors)' })
      .option('out', { type: 'string', demandOption: true, describe: 'plan folder to write' })
      .option('strategy', {
        choices: ['topk', 'threshold', 'threshold-topk'] as const,
        describe:
          'force a routing (default: chosen, see --max-loss-increase). topk: fixed k; threshold: keep e iff E·p_e > ε (k varies per token); ' +
          'threshold-topk: k per layer = ceil(mean threshold count − 0.05) on calibration tokens, then fixed top-k',
      })
      .option('k', { type: 'number', describe: 'topk: experts per token (default num_experts_per_tok); threshold: the most experts per token; threshold-topk: the largest k allowed (default E). Alone: forces topk' })
      .option('epsilon', { type: 'number', describe: `threshold ε on E·p_e (default ${DEFAULT_EPSILON}, the paper's). Alone: forces threshold-topk` })
      .option('max-loss-increase', {
        type: 'number',
        default: DEFAULT_MAX_LOSS_INCREASE,
        describe: 'without --strategy/--k/--epsilon: pick the fewest experts per token whose calibration loss (nats) is within this share of dense (0.005 = 0.5%), from top-k for every k, threshold and threshold-topk at each of --epsilons',
      })
      .option('max-perplexity-increase', {
        type: 'number',
        describe: 'instead of --max-loss-increase: the bound as a share of the dense calibration perplexity (0.005 = 0.5%: loss ≤ dense + ln 1.005)',
      })
      .option('epsilons', { type: 'string', default: DEFAULT_EPSILONS.join(','), describe: 'ε values the plan choice scores' })
      .option('dtype', {
        choices: PLAN_DTYPES,
        default: 'f32' as const,
        describe: 'storage of every matrix (embedding, LM head, attention, experts, shared expert) unless --expert-dtype/--attn-dtype say otherwise: f32 reproduces the dense model exactly; bf16 halves the bytes each token reads (use it for speed). Norms, biases and routers stay f32',
      })
      .option('expert-dtype', {
        choices: CLASS_DTYPE_FLAGS,
        describe: 'storage of the routed experts (default: --dtype). q8 / q4: GGUF Q8_0 / Q4_0 blocks of 32 weights with an f16 scale (8.5 / 4.5 bits per weight), needing hidden and expert sizes that are multiples of 32; q3 / q2: affine Q3_A / Q2_A blocks of 64 weights with an f16 scale and offset (3.5 / 2.5 bits per weight), needing multiples of 64',
      })
      .option('attn-dtype', {
        choices: CLASS_DTYPE_FLAGS,
        describe: 'storage of the attention projections q/k/v/o (default: --dtype); q8 / q4 / q3 / q2 as for --expert-dtype. Embeddings, LM head and shared expert stay at --dtype; norms and routers f32',
      })
      .option('calib-tokens', { type: 'number', default: 4096, describe: 'held-out tokens for calibration (0: none; topk and threshold only). Calibration runs the plain TypeScript reference forward 2–3 times: about 20 s for the tiny recipe at 4096 tokens, several minutes for small (use 1024 there)' })
      .option('calib-context', { type: 'number', describe: 'tokens per calibration window (default: the trained seq_len)' })
      .option('text', {
        type: 'string',
        alias: 'calib-text',
        describe: 'calibrate on this UTF-8 text file instead of the validation split of the training recipe (--calib-text is the same flag)',
      })
      .option('recipe', {
        type: 'string',
        describe: 'the recipe the checkpoint was trained with, for its validation split (default: the one named in config.json, as recipes/<name>.yaml here or in the package; its hash must match)',
      })
      .option('prune-below', { type: 'number', describe: 'drop experts selected by fewer than this share of calibration tokens (e.g. 0.01); reports the loss after' })
      .option('renormalize', { type: 'boolean', default: false, describe: 'divide the selected probabilities by their sum (Mixtral-style); DS-MoE does not' })
      .option('attention-strategy', {
        choices: ['all', 'topk', 'threshold', 'threshold-topk'] as const,
        describe: 'models with attention experts (MoA): all (default) runs every attention expert, the paper\'s top-K mode; topk: --attention-k per token; threshold: keep a iff A·pa_a > --attention-epsilon, at most --attention-k',
      })
      .option('attention-k', { type: 'number', describe: 'attention experts per token (topk) or the most per token (threshold); default all A' })
      .option('attention-epsilon', { type: 'number', describe: `threshold ε on A·pa_a for attention experts (default ${DEFAULT_EPSILON})` })
      .option('threads', { type: 'number', describe: 'worker threads for calibration (default: the cores, at most 8)' })
      .option('quiet', { type: 'boolean', default: false, describe: 'print only the table' }),
  handler: async (args) => {
    const started = Date.now();
    const log = (line: string) => {
      if (!args.quiet) process.stderr.write(`convert: ${line}\n`);
    };
    const dense = readAnyDenseCheckpoint(args.dense);
    const attention: AttentionConvertOptions | undefined =
      args['attention-strategy'] !== undefined || args['attention-k'] !== undefined || args['attention-epsilon'] !== undefined
        ? { strategy: args['attention-strategy'] ?? (args['attention-epsilon'] !== undefined ? 'threshold' : 'topk'), k: args['attention-k'], epsilon: args['attention-epsilon'] }
        : undefined;
    attentionDecisions(dense.config, attention, args.dense); // before calibration text is looked for
    const c = dense.config;
    const dsmoe = (dense.hfConfig.dsmoe ?? {}) as Record<string, unknown>;
    const trainedContext = typeof dsmoe.seq_len === 'number' ? dsmoe.seq_len : Math.min(c.max_position_embeddings, 256);
    const context = args['calib-context'] ?? trainedContext;
    if (!Number.isInteger(context) || context < 2 || context > c.max_position_embeddings) {
      throw new UserError(`--calib-context must be an integer in 2..${c.max_position_embeddings} (max_position_embeddings), got ${context}`);
    }
    const calibTokens = args['calib-tokens'];
    if (!Number.isInteger(calibTokens) || calibTokens < 0) throw new UserError(`--calib-tokens must be a non-negative integer, got ${calibTokens}`);
    if (calibTokens > 0 && calibTokens < context) throw new UserError(`--calib-tokens ${calibTokens} is less than one window of ${context} tokens`);
    let calibWindows: number[][] = [];
    let calibSource = 'none';
    if (calibTokens > 0) {
      const tokenizer = loadAnyTokenizer(args.dense); // imported folders bring their own byte-level BPE
      if (tokenizer.vocabSize > c.vocab_size) {
        throw new UserError(`${path.join(args.dense, 'tokenizer.json')}: ${tokenizer.vocabSize} tokens, more than the model's vocab_size ${c.vocab_size}`);
      }
      const split = heldOutSplit(args.dense, { recipe: args.recipe, text: args.text, tokenizer });
      calibWindows = split.calibrationWindows(context, calibTokens);
      calibSource = split.source;
      log(`calibration text: ${calibSource}`);
    }
    const dtypes: PlanClassDtypes = {
      experts: args['expert-dtype'] ? matrixDtypeOfFlag(args['expert-dtype']) : args.dtype,
      attention: args['attn-dtype'] ? matrixDtypeOfFlag(args['attn-dtype']) : args.dtype,
    };
    const dtypeProblems = classDtypeProblems(c, dtypes);
    if (dtypeProblems.length) {
      const flag = args['expert-dtype'] && dtypeProblems[0].startsWith('experts') ? 'expert-dtype' : 'attn-dtype';
      throw new UserError(`--${flag} ${args[flag] ?? args.dtype}: ${dtypeProblems[0]} (${path.join(args.dense, 'config.json')})`);
    }
    const threads = args.threads;
    if (threads !== undefined && (!Number.isInteger(threads) || threads < 1)) throw new UserError(`--threads must be a positive integer, got ${threads}`);
    const common = {
      outDir: args.out,
      dtype: args.dtype,
      dtypes,
      calibWindows,
      calibSource,
      pruneBelow: args['prune-below'],
      renormalize: args.renormalize,
      threads,
      log,
      ...(attention ? { attention } : {}),
    };
    const forced = args.strategy !== undefined || args.k !== undefined || args.epsilon !== undefined;
    const result = forced
      ? await convertCheckpoint(dense, {
          ...common,
          // --k alone forces top-k; --epsilon alone (or with --k) the threshold-topk rule it sizes.
          strategy: args.strategy ?? (args.epsilon === undefined ? 'topk' : 'threshold-topk'),
          k: args.k,
          epsilon: args.epsilon ?? DEFAULT_EPSILON,
        })
      : await convertChoosingPlan(dense, {
          ...common,
          maxLossIncrease: args['max-loss-increase'],
          maxPerplexityIncrease: args['max-perplexity-increase'],
          epsilons: parseNumberList('--epsilons', args.epsilons),
        });
    process.stdout.write(result.table + '\n');
    log(`wrote ${args.out} (plan.json, weights.safetensors${result.calibration ? ', calibration.json' : ''}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  },
};
