import { reportCommand } from '../../../src/cli/commands/report';
import { parseIntegerList, parseNumberList } from '../../../src/report/parse_list';

/** Flag validation happens before any runtime work, with one-line errors naming the flag. */
describe('dsmoe report flags', () => {
  const base = {
    out: 'X', batch: '1,4', repeats: 3, 'eval-tokens': 8192, epsilons: '0.48', sweep: true, 'reference-windows': 4,
    'random-init': false, dtype: 'bf16', seed: 1, peer: false, 'peer-repeats': 5, json: false, _: [], $0: 'dsmoe',
  };
  const run = (extra: Record<string, unknown>) => (reportCommand.handler as (a: unknown) => Promise<void>)({ ...base, ...extra });

  test('--shape needs --random-init, and excludes --sparse', async () => {
    await expect(run({ shape: 'ds-moe-1b' })).rejects.toThrow('--shape and --random-init go together');
    await expect(run({ shape: 'ds-moe-1b', 'random-init': true, sparse: 'S' })).rejects.toThrow(/drop --dense\/--sparse/);
    await expect(run({ shape: 'ds-moe-1b', 'random-init': true, text: 'notes.txt' })).rejects.toThrow(/speed only, on no text; drop --recipe\/--text/);
  });

  test('a plan folder is required without --shape', async () => {
    await expect(run({})).rejects.toThrow(/--sparse DIR/);
  });

  test('numeric flags are checked', async () => {
    await expect(run({ repeats: 0, sparse: 'S' })).rejects.toThrow('--repeats must be a positive integer, got 0');
    await expect(run({ batch: '1,x', sparse: 'S' })).rejects.toThrow('--batch must be a comma-separated list of positive integers');
  });

  test('--expert-dtypes names are checked before any plan is read', async () => {
    await expect(run({ sparse: 'S', 'expert-dtypes': 'bf16,q5' })).rejects.toThrow(/^--expert-dtypes: unknown dtype "q5" \(expected a list of f32, bf16, f16, q8, q4/);
    await expect(run({ shape: 'ds-moe-1b', 'random-init': true, 'expert-dtypes': 'int4' })).rejects.toThrow('--expert-dtypes: unknown dtype "int4"');
  });

  test('lists parse, sort and deduplicate', () => {
    expect(parseIntegerList('--batch', '64, 1,4,4')).toEqual([1, 4, 64]);
    expect(parseNumberList('--epsilons', '0.48,0.1')).toEqual([0.48, 0.1]);
    expect(() => parseNumberList('--epsilons', '0,1')).toThrow(/positive numbers/);
  });
});
