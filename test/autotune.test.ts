import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { finalWinner, screenLeaders, type TuneProgress } from "../src/gpu/autotune.js";
import { createGpu, type GpuContext } from "../src/gpu/device.js";
import { loadModel as loadCatsModel } from "../src/index.js";
import { loadModel } from "../src/node.js";
import { maxAbsDiff, MODELS, reference, tempDir } from "./helpers.js";

let gpu: GpuContext;
let dir: string;
const saved = process.env.CATS_CACHE_DIR;
beforeAll(async () => {
  gpu = await createGpu();
  dir = tempDir("cats-tune-");
  process.env.CATS_CACHE_DIR = dir;
});
afterAll(async () => {
  gpu.destroy();
  process.env.CATS_CACHE_DIR = saved;
  await rm(dir, { recursive: true, force: true });
});

/** Loads stories260K with autotuning on; returns what it told the user, its progress reports, the cache file and the logits. */
async function tunedLoad(tuneBatchedOnly = false): Promise<{
  notices: string[];
  progress: TuneProgress[];
  file: { entries: Record<string, { choices: Record<string, string> }> };
  logits: Float32Array[];
}> {
  const notices: string[] = [];
  const progress: TuneProgress[] = [];
  const ref = reference("stories260K");
  const lm = await loadModel(join(MODELS, "stories260K"), {
    gpu,
    tune: true,
    tuneBatchedOnly,
    notice: (m) => notices.push(m),
    onTuneProgress: (p) => progress.push(p),
  });
  const logits = await lm.engine.allLogits(ref.prompt_ids);
  await lm.close();
  return { notices, progress, file: JSON.parse(await readFile(join(dir, "autotune.json"), "utf8")), logits };
}

/** Progress reports count the cases up from 0, one per case, each a case that ends up in the cache. */
function expectCountedCases(progress: TuneProgress[], choices: Record<string, string>, measuredNow: number): void {
  expect(progress.length).toBe(measuredNow);
  progress.forEach((p, i) => {
    expect(p.done).toBe(i);
    expect(p.total).toBe(measuredNow);
    expect(choices[`${p.op} ${p.shape}`]).toBeDefined();
  });
}

describe("the autotuning cache", () => {
  it("is written on first use, read back without measuring again, and re-measured when corrupted", async () => {
    const ref = reference("stories260K");
    const first = await tunedLoad();
    expect(first.notices.some((n) => n.startsWith("measuring kernel variants"))).toBe(true);
    const [entry] = Object.values(first.file.entries);
    expect(Object.keys(entry.choices).length).toBeGreaterThan(3);
    expectCountedCases(first.progress, entry.choices, Object.keys(entry.choices).length);
    expect(maxAbsDiff(first.logits[0], ref.logits_full_first_position)).toBeLessThan(1e-3);

    const second = await tunedLoad();
    expect(second.notices).toEqual([]);
    expect(second.progress).toEqual([]);
    expect(second.file).toEqual(first.file);
    expect(maxAbsDiff(second.logits[0], first.logits[0])).toBe(0);

    await writeFile(join(dir, "autotune.json"), '{"format": "cats-autotune", "version": 1, "entries": {"x": {"choices": 7}}');
    const third = await tunedLoad();
    expect(third.notices[0]).toMatch(/autotune\.json: ignoring the kernel tuning cache \(.*\); measuring again$/);
    expect(third.notices.some((n) => n.startsWith("measuring kernel variants"))).toBe(true);
    expect(Object.keys(Object.values(third.file.entries)[0].choices).sort()).toEqual(Object.keys(entry.choices).sort());
    expect(maxAbsDiff(third.logits[0], ref.logits_full_first_position)).toBeLessThan(1e-3);
  });

  it("measures only the batched ops for calibration, and the rest on the next full load", async () => {
    await rm(join(dir, "autotune.json"), { force: true });
    const batched = await tunedLoad(true);
    const ops = (f: typeof batched.file) => new Set(Object.keys(Object.values(f.entries)[0].choices).map((k) => k.split(" ")[0]));
    expect([...ops(batched.file)].sort()).toEqual(["attention_mat", "down_mat", "gate_up_mat", "matmul"]);
    expectCountedCases(
      batched.progress,
      Object.values(batched.file.entries)[0].choices,
      Object.keys(Object.values(batched.file.entries)[0].choices).length,
    );
    const full = await tunedLoad();
    expect(full.notices.some((n) => n.startsWith("measuring kernel variants"))).toBe(true);
    // Only the cases not measured before are counted.
    const added =
      Object.keys(Object.values(full.file.entries)[0].choices).length - Object.keys(Object.values(batched.file.entries)[0].choices).length;
    expectCountedCases(full.progress, Object.values(full.file.entries)[0].choices, added);
    expect(ops(full.file).has("matvec")).toBe(true);
    expect(ops(full.file).has("down_cats")).toBe(true);
    expect(ops(full.file).has("gate_up_cats")).toBe(true);
    // The batched choices made first are kept, not measured again.
    const [b, f] = [Object.values(batched.file.entries)[0].choices, Object.values(full.file.entries)[0].choices];
    for (const [k, v] of Object.entries(b)) expect(f[k]).toBe(v);
  });
});

describe("evaluation through the library", () => {
  it("with tuneBatchedOnly, measures only the batched ops (cats eval's load)", async () => {
    await rm(join(dir, "autotune.json"), { force: true });
    const model = await loadCatsModel(join(MODELS, "stories260K"), { tune: true, tuneBatchedOnly: true });
    try {
      const r = await model.eval("Once upon a time there was a little girl. She liked to play outside in the sun.", { maxTokens: 24 });
      expect(r.perplexity).toBeGreaterThan(1);
    } finally {
      await model.dispose();
    }
    const file = JSON.parse(await readFile(join(dir, "autotune.json"), "utf8")) as {
      entries: Record<string, { choices: Record<string, string> }>;
    };
    const ops = new Set(Object.keys(Object.values(file.entries)[0].choices).map((k) => k.split(" ")[0]));
    expect([...ops].sort()).toEqual(["attention_mat", "down_mat", "gate_up_mat", "matmul"]);
  });
});

describe("choosing among measured variants", () => {
  it("sends the leaders within 10% of the best median speed-up to a final, ties broken by the faster best call", () => {
    // Candidate 0 is the reference (speed-up 1); 3 leads, 1 and 4 are within 10% of it, 2 is not.
    expect(screenLeaders([1, 1.5, 1.2, 1.6, 1.45], [10, 7, 8, 6, 7])).toEqual([3, 1, 4]);
    // At most three meet again, and a tie goes to the faster best call.
    expect(screenLeaders([1, 2, 2, 2, 2], [9, 8, 5, 7, 6])).toEqual([2, 4, 3]);
    // A clear winner is kept without a final.
    expect(screenLeaders([1, 3, 1.2], [9, 3, 8])).toEqual([1]);
  });

  it("keeps the screen's leader unless another finalist is faster against it", () => {
    expect(finalWinner([0.95, 0.8])).toBe(0);
    expect(finalWinner([1.1, 1.3])).toBe(2);
    expect(finalWinner([1.05])).toBe(1);
    expect(finalWinner([])).toBe(0);
  });
});
