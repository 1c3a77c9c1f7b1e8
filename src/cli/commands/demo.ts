import type { Argv, CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { runDemo } from '../../report/demo';
import { parseIntegerList } from '../../report/parse_list';

interface DemoArgs {
  out: string;
  recipe: string;
  'max-steps'?: number;
  batch: string;
  repeats: number;
  threads?: number;
  reuse: boolean;
}

/** `dsmoe demo`: the README's first command — train, convert, report, one headline (under 10 minutes on 2 cores). */
export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe: 'Train the tiny recipe, convert it to a sparse plan, write the speedup report, print one headline',
  builder: (yargs: Argv) =>
    yargs
      .option('out', { type: 'string', default: 'checkpoints/demo', describe: 'folder for dense/, sparse/ and report/' })
      .option('recipe', { type: 'string', default: 'recipes/tiny.yaml', describe: 'recipe to train' })
      .option('max-steps', { type: 'number', describe: "optimizer steps (and schedule length) instead of the recipe's (tiny: 600, ≈ 2.5 minutes on 2 cores with the native training kernels)" })
      .option('batch', { type: 'string', default: '1,4,16,64', describe: 'batch sizes the report times' })
      .option('repeats', { type: 'number', default: 3, describe: 'timed repeats per mode and batch' })
      .option('threads', { type: 'number', describe: 'runtime threads (default: all hardware threads)' })
      .option('reuse', { type: 'boolean', default: false, describe: 'skip training / conversion when their outputs already exist' }) as unknown as Argv<DemoArgs>,
  handler: async (args) => {
    const maxSteps = args['max-steps'];
    if (maxSteps !== undefined && (!Number.isInteger(maxSteps) || maxSteps < 1)) throw new UserError(`--max-steps must be a positive integer, got ${maxSteps}`);
    if (!Number.isInteger(args.repeats) || args.repeats < 1) throw new UserError(`--repeats must be a positive integer, got ${args.repeats}`);
    const result = await runDemo({
      outDir: args.out,
      recipe: args.recipe,
      maxSteps,
      batches: parseIntegerList('--batch', args.batch),
      repeats: args.repeats,
      threads: args.threads,
      reuse: args.reuse,
    });
    const s = result.seconds;
    process.stderr.write(
      `demo: done in ${(s.total / 60).toFixed(1)} min (train ${s.train.toFixed(0)} s, convert ${s.convert.toFixed(0)} s, report ${s.report.toFixed(0)} s); ` +
        `report: ${args.out}/report/report.md\n`,
    );
    process.stdout.write(result.headline + '\n');
  },
};
