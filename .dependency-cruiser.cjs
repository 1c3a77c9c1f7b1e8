/**
 * The layering of src/ (docs/design.md §9), checked by `npm run lint:deps` inside `npm test`.
 * Stages talk through the shared contracts (src/plan, src/checkpoint, src/data, src/sampling, src/errors.ts), never
 * through each other: whatever serves a model (runtime, serve, report) must not pull in the trainer or the converter.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'A cycle makes two modules one: neither can be read, tested or replaced alone.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'serving-stays-off-training-and-conversion',
      severity: 'error',
      comment: 'runtime/, serve/ and report/ read plans and checkpoints through src/plan and src/checkpoint only.',
      from: { path: '^src/(runtime|serve|report)/' },
      to: { path: '^src/(train|convert)/' },
    },
    {
      name: 'contracts-stay-below-the-stages',
      severity: 'error',
      comment: 'The shared formats import no stage: each stage imports them.',
      from: { path: '^src/(plan|checkpoint|sampling)/|^src/errors\\.ts$' },
      to: { path: '^src/(train|convert|runtime|serve|report|cli|interop|bench|notebooks|study)/' },
    },
    {
      name: 'studies-sit-above-the-stages',
      severity: 'error',
      comment: 'src/study runs train → convert → eval through the stages; only the CLI runs a study, no stage imports it.',
      from: { path: '^src/', pathNot: '^src/(cli|study)/' },
      to: { path: '^src/study/' },
    },
    {
      name: 'no-cli-below-the-cli',
      severity: 'error',
      comment: 'Commands call the stages; no stage calls a command.',
      from: { path: '^src/', pathNot: '^src/(cli|notebooks)/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^src/data/corpus/' },
  },
};
