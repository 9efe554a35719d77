import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // dawn.node is a native addon with its own threads: one process per test file is safer than worker threads.
    pool: "forks",
    testTimeout: 120_000,
    hookTimeout: 120_000,
    env: { CATS_MODELS: "../shared/models" },
    // The JSON report lets .ci/run print a plain "N passed, N failed" line.
    reporters: ["default", ["json", { outputFile: "test-results.json" }]],
  },
});
