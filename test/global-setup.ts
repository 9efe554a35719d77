import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The suite's own autotuning cache (vitest's main process names it, so every test file shares it). */
export const TEST_CACHE_DIR = join(tmpdir(), `cats-test-cache-${process.pid}`);

export function teardown(): void {
  rmSync(TEST_CACHE_DIR, { recursive: true, force: true });
}
