import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGpu, type GpuContext } from "../src/gpu/device.js";
import { withPausedPolls } from "../src/gpu/poll.js";
import { Submitter } from "../src/gpu/submit.js";
import { encodeSteps } from "../src/engine/ops.js";
import { loadModel } from "../src/node.js";
import { MODELS, reference } from "./helpers.js";

const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("pauses between dawn.node's polls", () => {
  it("swaps the global setImmediate for one that sleeps first, only while a wait is under way", async () => {
    const original = globalThis.setImmediate;
    let took = 0;
    await withPausedPolls(5, async () => {
      expect(globalThis.setImmediate).not.toBe(original);
      const t0 = performance.now();
      await immediate();
      took = performance.now() - t0;
    });
    expect(took).toBeGreaterThanOrEqual(4.5);
    expect(globalThis.setImmediate).toBe(original);
    await expect(withPausedPolls(1, () => Promise.reject(new Error("lost")))).rejects.toThrow("lost");
    expect(globalThis.setImmediate).toBe(original);
  });

  it("keeps the swap until the last of nested waits ends, pausing for the shortest", async () => {
    const original = globalThis.setImmediate;
    let release!: () => void;
    const outer = withPausedPolls(1000, () => new Promise<void>((resolve) => (release = resolve)));
    let took = Infinity;
    await withPausedPolls(2, async () => {
      const t0 = performance.now();
      await immediate();
      took = performance.now() - t0;
    });
    expect(took).toBeLessThan(500);
    expect(globalThis.setImmediate).not.toBe(original);
    release();
    await outer;
    expect(globalThis.setImmediate).toBe(original);
  });
});

describe("the Submitter's waits on dawn.node", () => {
  let gpu: GpuContext;
  beforeAll(async () => {
    gpu = await createGpu();
  });
  afterAll(() => gpu.destroy());

  it("poll flat out while a kind of work is new, then with pauses once its waits are known to be long", async () => {
    const lm = await loadModel(join(MODELS, "stories260K"), { gpu });
    await lm.engine.prefill(reference("stories260K").prompt_ids);
    const submitter = new Submitter(gpu);
    // Hundreds of decode steps in one pass: tens of milliseconds of GPU work, the same each time.
    const work = (encoder: GPUCommandEncoder): void => {
      const pass = encoder.beginComputePass();
      for (let i = 0; i < 300; i++) encodeSteps(pass, lm.engine.decodeSteps, 1);
      pass.end();
    };
    const original = globalThis.setImmediate;
    let polls = 0;
    const counting = ((callback: (...args: unknown[]) => void, ...args: unknown[]) => {
      polls++;
      return original(callback, ...args);
    }) as typeof setImmediate;
    const counts: number[] = [];
    globalThis.setImmediate = counting;
    try {
      for (let i = 0; i < 3; i++) {
        polls = 0;
        await submitter.run("poll test", work, [], "poll test");
        counts.push(polls);
        expect(globalThis.setImmediate).toBe(counting);
      }
    } finally {
      globalThis.setImmediate = original;
      submitter.destroy();
      await lm.close();
    }
    // dawn.node polls through the global: flat out it calls it thousands of times a wait.
    expect(counts[0]).toBeGreaterThan(100);
    expect(Math.max(counts[1], counts[2])).toBeLessThan(counts[0] / 4);
  });
});
