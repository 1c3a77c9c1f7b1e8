import type { CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { BackendChoice, backendChoices } from '../../train/backend';
import { kernelChoices, KernelChoice } from '../../train/native_kernels';
import { runStudy } from '../../study/run_study';

interface StudyArgs {
  study: string;
  out: string;
  resume: boolean;
  jobs: number;
  point?: string;
  threads?: number;
  backend: BackendChoice;
  kernels: KernelChoice;
  quiet: boolean;
  set?: string[];
}

/** `dsmoe study <study.yaml> --out DIR`: train, evaluate, convert and probe every point of a grid of recipes. */
export const studyCommand: CommandModule<object, StudyArgs> = {
  command: 'study <study>',
  describe: 'Run a study: a base recipe over axes of recipe fields; each point is trained, evaluated, converted and probed; writes study.json, study.md and charts',
  builder: (yargs) =>
    yargs
      .positional('study', { type: 'string', demandOption: true, describe: 'study file (.yaml or .json), see studies/' })
      .option('out', { type: 'string', demandOption: true, describe: 'study folder (points/, study.json, study.md, charts)' })
      .option('resume', { type: 'boolean', default: false, describe: 'continue the study in --out: finished points are skipped, an interrupted one resumes' })
      .option('jobs', { type: 'number', default: 1, describe: 'points run at once, each in its own process (needs the built CLI)' })
      .option('set', { type: 'string', array: true, describe: 'field=value replacing a set: entry of the study for this run (e.g. train.max_steps=200 for a reduced run)' })
      .option('point', { type: 'string', hidden: true, describe: 'run this one point only (what --jobs children do)' })
      .option('threads', { type: 'number', describe: 'native threads for conversion, evaluation and probes (default: all)' })
      .option('backend', { type: 'string', choices: backendChoices, default: 'auto', describe: 'tfjs backend for training' })
      .option('kernels', { type: 'string', choices: kernelChoices, default: 'auto', describe: 'matrix products in training: native or tfjs' })
      .option('quiet', { type: 'boolean', default: false, describe: 'no progress output' }) as never,
  handler: async (args) => {
    if (args.threads !== undefined && (!Number.isInteger(args.threads) || args.threads < 1)) throw new UserError(`--threads must be a positive integer, got ${args.threads}`);
    const outcome = await runStudy({
      studyFile: args.study,
      outDir: args.out,
      resume: args.resume || args.point !== undefined,
      jobs: args.jobs,
      backend: args.backend,
      kernels: args.kernels,
      threads: args.threads,
      verbose: !args.quiet,
      onlyPoint: args.point,
      overrides: args.set,
      command: ['dsmoe study', args.study, '--out', args.out, ...(args.set ?? []).map((s) => `--set ${s}`)].join(' '),
    });
    if (outcome.study) {
      const done = outcome.study.points.filter((p) => p.status === 'done').length;
      process.stdout.write(`${args.out}: ${done}/${outcome.study.points.length} points done (${outcome.ran.length} run now, ${outcome.skipped.length} skipped)\n`);
    }
    if (outcome.interrupted) process.exit(130);
  },
};
