import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGpu, type GpuContext } from "../src/gpu/device.js";
import { loadModel } from "../src/node.js";
import { cats, MODELS, reference, tempDir } from "./helpers.js";
import { referenceIntermediates } from "./llama-reference.js";
import { maxRelErr } from "./ops-reference.js";

const MODEL = join(MODELS, "stories260K");

let gpu: GpuContext;
beforeAll(async () => {
  gpu = await createGpu();
});
afterAll(() => gpu.destroy());

describe("the debug path reads intermediates by step name", () => {
  const ids = reference("stories260K").prompt_ids;
  let want: Map<string, Float64Array[]>;
  beforeAll(async () => {
    want = await referenceIntermediates(MODEL, ids);
  });

  for (const flavour of ["cpu", "gpu"] as const) {
    it(`matches a float64 forward pass at every step (${flavour} kernels)`, async () => {
      const lm = await loadModel(MODEL, { flavour, gpu: { ...gpu, flavour } });
      const got = await lm.engine.inspect(ids);
      await lm.close();
      expect(got.map((t) => t.name)).toEqual([...want.keys()]);
      for (const t of got) {
        const rows = want.get(t.name)!;
        expect(t.rows.length, t.name).toBe(rows.length);
        t.rows.forEach((row, r) => expect(maxRelErr(row, rows[r]), `${t.name} row ${r}`).toBeLessThan(1e-4));
      }
    });
  }

  it("cats inspect --out writes the chosen steps as float32 rows with an index", async () => {
    const out = tempDir("cats-inspect-");
    try {
      const r = await cats(["inspect", "--out", out, "--step", "layer 1 attention", "--step", "lm_head", reference("stories260K").prompt]);
      expect(r.errors).toEqual([]);
      expect(r.status).toBe(0);
      const index = JSON.parse(await readFile(join(out, "index.json"), "utf8"));
      expect(index.ids).toEqual(ids);
      expect(index.tensors.map((t: { name: string }) => t.name)).toEqual(["layer 1 attention", "lm_head"]);
      for (const t of index.tensors as { name: string; file: string; rows: number; width: number }[]) {
        const bytes = await readFile(join(out, t.file));
        const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
        expect(data.length).toBe(t.rows * t.width);
        const rows = want.get(t.name)!;
        rows.forEach((row, r) => expect(maxRelErr(data.subarray(r * t.width, (r + 1) * t.width), row)).toBeLessThan(1e-4));
      }
      const bad = await cats(["inspect", "--step", "layer 1 atention", "Once"]);
      expect(bad.status).toBe(1);
      expect(bad.errors).toEqual(['cats: no step named "layer 1 atention"']);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
