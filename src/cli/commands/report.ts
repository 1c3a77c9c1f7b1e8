import type { Argv, CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { nativeReportRuntime } from '../../report/native_report_runtime';
import { reportFromFolders } from '../../report/report_from_folders';
import { DEFAULT_BATCHES, DEFAULT_REPEATS, reportFromShape } from '../../report/report_from_shape';
import { DEFAULT_EPSILONS } from '../../runtime/quality_cost_sweep';
import { parseIntegerList, parseNumberList } from '../../report/parse_list';
import { headline } from '../../report/report_markdown';
import type { PlanDtype } from '../../plan/plan_format';
import { expertCacheFromArgs, withExpertCacheFlags, type ExpertCacheArgs } from '../expert_cache_flags';
import { deviceOption, type Device } from '../device_option';
import { parseExpertDtypes } from '../../report/expert_dtype_rows';
import { CLASS_DTYPE_FLAGS } from '../../plan/dtype';
import { residencyFromArgs, residencyOption } from '../residency_option';

interface ReportArgs extends ExpertCacheArgs {
  dense?: string;
  sparse?: string;
  out: string;
  batch?: string;
  threads?: number;
  repeats?: number;
  budget: number;
  'prompt-len'?: number;
  'decode-steps'?: number;
  'eval-tokens': number;
  recipe?: string;
  text?: string;
  epsilons: string;
  sweep: boolean;
  'reference-windows': number;
  shape?: string;
  'random-init': boolean;
  layers?: number;
  dtype: string;
  k?: number;
  seed: number;
  'plan-dir'?: string;
  peer: boolean;
  'peer-repeats': number;
  'llama-cpp': boolean;
  'llama-cpp-repeats': number;
  json: boolean;
  device: Device;
  'expert-dtypes'?: string;
  residency?: string;
}

/** `dsmoe report`: dense vs sparse on the same tokens and machine (SPEC §5, §7). */
export const reportCommand: CommandModule<object, ReportArgs> = {
  command: 'report',
  describe: 'Speedup report: quality, throughput and latency of dense vs sparse, against the machine\'s measured limits',
  builder: (yargs: Argv) =>
    withExpertCacheFlags(yargs)
      .usage(
        '$0 report --dense <dense-dir> --sparse <sparse-dir> --out DIR [--batch 1,4,16,64]\n' +
          '$0 report --shape <ds-moe-1b|ds-moe-3b|ds-moe-6b|ds-moe-1b-moa|ds-moe-3b-moa|ds-moe-6b-moa|config.json> --random-init --out DIR [--layers N]',
      )
      .option('dense', { type: 'string', describe: 'dense checkpoint folder (default: the plan\'s source)' })
      .option('sparse', { type: 'string', describe: 'sparse plan folder (dsmoe convert output)' })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder: report.md, report.json, *.svg' })
      .option('batch', { type: 'string', describe: `batch sizes (sequences per call; default ${DEFAULT_BATCHES.join(',')}, with --shape chosen within --budget)` })
      .option('threads', { type: 'number', describe: 'runtime threads (default: all hardware threads)' })
      .option('device', deviceOption('cpu', '; default cpu, since the report compares with the CPU\'s measured bandwidth and FMA peak'))
      .option('residency', residencyOption())
      .option('repeats', { type: 'number', describe: `timed repeats per mode and batch after one warm-up (default ${DEFAULT_REPEATS}, with --shape chosen within --budget)` })
      .option('budget', {
        type: 'number',
        default: 10,
        describe: 'with --shape: minutes for the whole report, plan writing included; layers, batches and repeats not given are chosen to fit (0 = no budget: all layers, default batches and repeats)',
      })
      .option('prompt-len', { type: 'number', describe: 'prompt tokens per sequence for prefill (default 32 trained, 16 random-init)' })
      .option('decode-steps', { type: 'number', describe: 'decode steps timed after each prefill (default 16 trained, 8 random-init)' })
      .option('eval-tokens', { type: 'number', default: 8192, describe: 'held-out (or --text) tokens scored per quality point' })
      .option('recipe', {
        type: 'string',
        describe: 'the recipe the dense model was trained with, for its held-out split (default: the one named in its config.json, as recipes/<name>.yaml here or in the package; its hash must match)',
      })
      .option('text', { type: 'string', describe: 'score quality on this UTF-8 file (windows of the model\'s context) instead of the held-out split' })
      .option('epsilons', { type: 'string', default: DEFAULT_EPSILONS.join(','), describe: 'threshold ε values of the quality–cost sweep' })
      .option('sweep', { type: 'boolean', default: true, describe: 'run the quality–cost sweep (--no-sweep to skip)' })
      .option('reference-windows', { type: 'number', default: 4, describe: 'held-out windows also scored with the dense checkpoint\'s reference forward (0 = off)' })
      .option('expert-dtypes', {
        type: 'string',
        describe:
          `rows of the quality–cost table per expert bit-width: the plan with its routed experts stored at each of these (${CLASS_DTYPE_FLAGS.join(', ')}; ` +
          'none = no rows), scored on the held-out tokens and timed at batch 1 decode, with weight bytes per token. Default: the plan\'s own dtype and ' +
          'every quantized one for --sparse; none for --shape --random-init (each row there re-encodes the random plan)',
      })
      .option('shape', { type: 'string', describe: 'paper shape or config.json, with --random-init' })
      .option('random-init', { type: 'boolean', default: false, describe: 'random weights of --shape: speed only' })
      .option('layers', { type: 'number', describe: 'with --shape: keep only this many layers (to fit a small machine)' })
      .option('dtype', { type: 'string', default: 'bf16', choices: ['f32', 'bf16', 'f16'], describe: 'with --shape: weight dtype' })
      .option('k', { type: 'number', describe: 'with --shape: experts per token (default: the paper\'s active share)' })
      .option('seed', { type: 'number', default: 1, describe: 'with --shape: random-init seed' })
      .option('plan-dir', { type: 'string', describe: 'with --shape: where the random plan is written or reused (default OUT/random-plan)' })
      .option('peer', { type: 'boolean', default: true, describe: 'time the same MoE layer in PyTorch when available (--no-peer to skip)' })
      .option('peer-repeats', { type: 'number', default: 5, describe: 'timed calls per PyTorch configuration' })
      .option('llama-cpp', {
        type: 'boolean',
        default: true,
        describe: 'export the plan to GGUF and time it in llama.cpp when node-llama-cpp is installed (--no-llama-cpp to skip)',
      })
      .option('llama-cpp-repeats', { type: 'number', default: 3, describe: 'timed runs per llama.cpp configuration (the best counts)' })
      .option('json', { type: 'boolean', default: false, describe: 'print report.json on stdout instead of the headline' }) as unknown as Argv<ReportArgs>,
  handler: async (args) => {
    const startedAt = Date.now();
    const positive = (flag: string, value: number | undefined) => {
      if (value !== undefined && (!Number.isInteger(value) || value < 1)) throw new UserError(`--${flag} must be a positive integer, got ${value}`);
    };
    positive('threads', args.threads);
    positive('repeats', args.repeats);
    positive('prompt-len', args['prompt-len']);
    positive('decode-steps', args['decode-steps']);
    positive('eval-tokens', args['eval-tokens']);
    positive('peer-repeats', args['peer-repeats']);
    positive('llama-cpp-repeats', args['llama-cpp-repeats']);
    if (!Number.isInteger(args['reference-windows']) || args['reference-windows'] < 0) {
      throw new UserError(`--reference-windows must be a non-negative integer, got ${args['reference-windows']}`);
    }
    const speed = {
      outDir: args.out,
      batches: args.batch === undefined ? undefined : parseIntegerList('--batch', args.batch),
      threads: args.threads,
      repeats: args.repeats,
      promptLen: args['prompt-len'],
      decodeSteps: args['decode-steps'],
      peer: args.peer,
      peerRepeats: args['peer-repeats'],
      llamaCpp: args['llama-cpp'],
      llamaCppRepeats: args['llama-cpp-repeats'],
    };
    const expertDtypes = args['expert-dtypes'] === undefined ? undefined : parseExpertDtypes('--expert-dtypes', args['expert-dtypes']);
    let report;
    if (args.shape !== undefined || args['random-init']) {
      if (!args.shape || !args['random-init']) throw new UserError('--shape and --random-init go together (speed at a shape, random weights)');
      if (args.dense || args.sparse) throw new UserError('--shape --random-init builds its own plan; drop --dense/--sparse');
      if (args.recipe || args.text) throw new UserError('--shape --random-init measures speed only, on no text; drop --recipe/--text');
      const budget = args.budget ?? 10;
      if (!Number.isFinite(budget) || budget < 0) throw new UserError(`--budget must be a number of minutes ≥ 0, got ${args.budget}`);
      positive('layers', args.layers);
      positive('k', args.k);
      const runtime = nativeReportRuntime(args.threads, { device: args.device, expertCache: expertCacheFromArgs(args), residency: residencyFromArgs(args) });
      report = await reportFromShape(runtime, {
        ...speed, shape: args.shape, layers: args.layers, dtype: args.dtype as PlanDtype, k: args.k, seed: args.seed, planDir: args['plan-dir'],
        budgetMinutes: budget, startedAt, expertDtypes,
      });
    } else {
      if (!args.sparse) throw new UserError('name the sparse plan with --sparse DIR (and the dense checkpoint with --dense DIR), or use --shape NAME --random-init');
      const runtime = nativeReportRuntime(args.threads, { device: args.device, expertCache: expertCacheFromArgs(args), residency: residencyFromArgs(args) });
      report = await reportFromFolders(runtime, {
        ...speed,
        batches: speed.batches ?? DEFAULT_BATCHES,
        repeats: speed.repeats ?? DEFAULT_REPEATS,
        denseDir: args.dense ?? null,
        sparseDir: args.sparse,
        recipe: args.recipe,
        text: args.text,
        evalTokens: args['eval-tokens'],
        epsilons: parseNumberList('--epsilons', args.epsilons),
        sweep: args.sweep,
        referenceWindows: args['reference-windows'],
        expertDtypes,
      });
    }
    if (args.json) process.stdout.write(JSON.stringify(report) + '\n');
    else process.stdout.write(`${headline(report)}\nreport: ${args.out}/report.md\n`);
  },
};
