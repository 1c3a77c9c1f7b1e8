/**
 * `--expert-cache <25%|512MiB>` and `--prefetch` for the commands that run a plan (generate, eval, serve, report):
 * one definition of the flags, their help and their parsing (src/runtime/expert_cache.ts validates the size
 * against the plan when it is opened).
 */
import type { Argv } from 'yargs';
import { parseExpertCacheSize, type ExpertCacheOptions } from '../runtime/expert_cache';

export interface ExpertCacheArgs {
  'expert-cache'?: string;
  prefetch: boolean;
}

export function withExpertCacheFlags<T>(yargs: Argv<T>): Argv<T & ExpertCacheArgs> {
  return yargs
    .option('expert-cache', {
      type: 'string',
      describe:
        'keep only this much of the routed experts in memory and read the rest from the plan file on demand: a share of each layer\'s experts (25%) or a size (512MiB, 2GB); at least k experts per layer. Results are identical; only speed changes',
    })
    .option('prefetch', {
      type: 'boolean',
      default: true,
      describe: 'with --expert-cache: predict the next layer\'s experts from this layer\'s hidden state and read them ahead (--no-prefetch to turn off)',
    }) as unknown as Argv<T & ExpertCacheArgs>;
}

/** The cache options of the flags, or undefined without --expert-cache (a bad size is a one-line UserError). */
export function expertCacheFromArgs(args: ExpertCacheArgs): ExpertCacheOptions | undefined {
  const size = args['expert-cache'];
  if (size === undefined) return undefined;
  return { size: parseExpertCacheSize(size, '--expert-cache'), prefetch: args.prefetch };
}
