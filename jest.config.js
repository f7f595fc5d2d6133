/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': 'ts-jest' },
  testTimeout: 60000,
  setupFiles: ['<rootDir>/test/helpers/quiet.ts'],
  // The e2e suites start real servers; two workers match the 2-core machines this runs on.
  maxWorkers: 2,
};
