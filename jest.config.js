/** Tests are TypeScript, transpiled without type checking (npm test type-checks once, up front). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { isolatedModules: true, diagnostics: false }] },
  testTimeout: 120000,
  // Two cores: run test files in parallel on both, each file's heavy work is single-threaded.
  maxWorkers: 2,
};
