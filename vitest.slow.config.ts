import { defineConfig } from 'vitest/config';

// The slow harnesses of issue 8 (abuse, fault soak, full disk): real processes, network namespaces and a
// tmpfs, so root is needed. `npm run test:slow`; .ci/run runs them with their bounded sizes.
export default defineConfig({
  test: {
    include: ['test/slow/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    // the soak calls gc() before it reads RSS, so growth means retained memory, not garbage
    execArgv: ['--expose-gc'],
  },
});
