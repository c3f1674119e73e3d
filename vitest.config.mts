import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests start real servers and mounts; two cores, so run files two at a time.
    fileParallelism: true,
    maxWorkers: 2,
    pool: 'forks',
  },
});
