import { defineConfig } from "vitest/config";
import { TEST_CACHE_DIR } from "./test/global-setup.js";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // dawn.node is a native addon with its own threads: one process per test file is safer than worker threads.
    pool: "forks",
    // Vitest's default on 2 cores is one fork; most files spend their time waiting on cats
    // subprocesses or the GPU queue, so two overlap well.
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Tests run the default kernel variants (every variant has its own op tests); the autotuning
    // tests turn measuring on themselves, with a cache of their own.
    env: { CATS_MODELS: "../shared/models", CATS_AUTOTUNE: "off", CATS_CACHE_DIR: TEST_CACHE_DIR },
    globalSetup: ["test/global-setup.ts"],
    // The JSON report lets .ci/run print a plain "N passed, N failed" line.
    reporters: ["default", ["json", { outputFile: "test-results.json" }]],
  },
});
