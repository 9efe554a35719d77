import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { calibrate } from "../src/cats/calibrate.js";
import { checkThresholdsFile, modelFingerprint, thresholdsForLevel, type ThresholdsFile } from "../src/cats/thresholds.js";
import { createGpu, type GpuContext } from "../src/gpu/device.js";
import { loadModel, type LoadedModel } from "../src/node.js";
import type { UpLayout } from "../src/engine/load.js";
import { DATA, maxAbsDiff, MODELS, reference } from "./helpers.js";

let gpu: GpuContext;
beforeAll(async () => {
  gpu = await createGpu();
});
afterAll(() => gpu.destroy());

/** numpy.quantile's default, written out independently of src/cats/quantiles.ts. */
function numpyQuantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  const h = (s.length - 1) * q;
  const lo = Math.floor(h);
  return lo + 1 < s.length ? s[lo] + (h - lo) * (s[lo + 1] - s[lo]) : s[lo];
}

describe("sparse decoding at sparsity 0", () => {
  for (const flavour of ["cpu", "gpu"] as const) {
    it(`gives the dense greedy ids on stories260K (${flavour} kernels)`, async () => {
      const ref = reference("stories260K");
      const lm = await loadModel(join(MODELS, "stories260K"), { gpu: { ...gpu, flavour } });
      lm.engine.setThresholds(new Array(lm.checkpoint.config.numLayers).fill(0));
      lm.engine.reset();
      const first = await lm.engine.prefill(ref.prompt_ids);
      const ids = [first.token];
      for (let i = 0; i < 31; i++) ids.push((await lm.engine.decode()).token);
      expect(ids).toEqual(ref.greedy_new_ids);
      const stats = await lm.engine.takeSparsityStats();
      expect(stats.tokens).toBe(ref.prompt_ids.length + 31);
      expect(stats.overall).toBe(0);
      await lm.close();
    });
  }
});

describe("a CATS decode step with its own down projection variant", () => {
  // Split layers, so that the down projection is a step of its own.
  const load = (down: string) =>
    loadModel(join(MODELS, "stories260K"), { gpu, tune: false, variants: `layer_vec=split,o_mlp_vec=split,${down}` });
  const TH = [0.21, 0.22, 0.22, 0.23, 0.25];
  /** The prompt's and 8 decode steps' logits, dense or under fixed thresholds (a third or more of the neurons masked). */
  const run = async (lm: LoadedModel, thresholds: number[] | null = TH): Promise<Float32Array[]> => {
    lm.engine.setThresholds(thresholds);
    lm.engine.reset();
    const out = [(await lm.engine.prefill(reference("stories260K").prompt_ids, true)).logits!];
    for (let i = 0; i < 8; i++) out.push((await lm.engine.decode(true)).logits!);
    const stats = await lm.engine.takeSparsityStats();
    if (thresholds) expect(stats.overall).toBeGreaterThan(0.3);
    return out;
  };
  const sameBits = (a: Float32Array[], b: Float32Array[], what: string) =>
    a.forEach((logits, t) => expect(Buffer.from(logits.buffer).equals(Buffer.from(b[t].buffer)), `${what}, step ${t}`).toBe(true));

  /**
   * Loads the model twice, with a CATS choice of its own (`own`) and with both choices alike
   * (`same`): `own` switches to its own list of as many steps when thresholds are set and back when
   * they are cleared, `same` keeps one list, and both give the same bits.
   */
  const ownListMatches = async (own: string, same: string, what: string) => {
    const [a, b] = [await load(own), await load(same)];
    const [dense, sameDense] = [a.engine.decodeSteps, b.engine.decodeSteps];
    const [got, want] = [await run(a), await run(b)];
    expect(a.engine.decodeSteps).not.toBe(dense);
    expect(a.engine.decodeSteps.length).toBe(dense.length);
    // Where the choices agree, one list serves both.
    expect(b.engine.decodeSteps).toBe(sameDense);
    sameBits(got, want, what);
    a.engine.setThresholds(null);
    expect(a.engine.decodeSteps).toBe(dense);
    await a.close();
    await b.close();
  };

  it("runs its own step list when thresholds are set, with the same logits as the dense list's kernels under the same mask", async () => {
    // v1w8 and v2w8 differ only in which output blocks a lane owns: each output's sum runs over the neurons in the same order.
    await ownListMatches("down_vec=v1w8,down_cats=v2w8", "down_vec=v1w8,down_cats=v1w8", "v2w8 against v1w8");
  });

  it("runs its own gate/up variant when that choice differs, pooling 32 or 256 rows for the up pass: the same bits", async () => {
    // Each up row's sum runs over the columns in the same order whichever lane computes it.
    await ownListMatches(
      "gate_up_vec=rows4s,gate_up_cats=rows4w8s,down_vec=v1w8,down_cats=v1w8",
      "gate_up_vec=rows4s,gate_up_cats=rows4s,down_vec=v1w8,down_cats=v1w8",
      "rows4w8s against rows4s",
    );
  });

  it("reads W_up in row blocks on dense steps and row after row on CATS ones (upLayout both): each layout's own bits", async () => {
    // Row blocks forced for every matrix, so that stories260K's small ones take them too.
    const layout = (upLayout: UpLayout) =>
      loadModel(join(MODELS, "stories260K"), {
        gpu,
        tune: false,
        rowBlocks: true,
        upLayout,
        variants: `layer_vec=split,o_mlp_vec=split,down_vec=v1w8,down_cats=v1w8,gate_up_vec=rows4w8s,gate_up_cats=rows4w8s`,
      });
    const [both, blocks, rows] = [await layout("both"), await layout("blocks"), await layout("rows")];
    const up = (lm: LoadedModel) => lm.engine.weights.layers.map((l) => [l.up.format, l.upCats?.format ?? null]);
    expect(up(both).every(([dense, cats]) => dense === "f32b" && cats === "f32")).toBe(true);
    expect(up(blocks).every(([dense, cats]) => dense === "f32b" && cats === null)).toBe(true);
    expect(up(rows).every(([dense, cats]) => dense === "f32" && cats === null)).toBe(true);
    const dense = both.engine.decodeSteps;
    sameBits(await run(both, null), await run(blocks, null), "dense, both against blocks");
    sameBits(await run(both), await run(rows), "CATS, both against rows");
    expect(both.engine.decodeSteps).not.toBe(dense);
    expect(both.engine.decodeSteps.length).toBe(dense.length);
    // The decode steps again with the dense steps' copy zeroed after the prefill (a batched pass,
    // which reads it): the CATS steps read the other copy.
    const catsDecode = async (lm: LoadedModel, zeroDenseCopy: boolean) => {
      lm.engine.setThresholds(TH);
      lm.engine.reset();
      await lm.engine.prefill(reference("stories260K").prompt_ids);
      if (zeroDenseCopy) {
        for (const l of lm.engine.weights.layers)
          for (const part of l.up.parts) gpu.device.queue.writeBuffer(part.buffer, 0, new Uint8Array(part.buffer.size));
      }
      const out: Float32Array[] = [];
      for (let i = 0; i < 8; i++) out.push((await lm.engine.decode(true)).logits!);
      return out;
    };
    sameBits(await catsDecode(both, true), await catsDecode(rows, false), "CATS decode, both (its blocks copy zeroed) against rows");
    for (const lm of [both, blocks, rows]) await lm.close();
  });

  it("may walk the neurons in four ranges within one dispatch: the logits of one walk within rounding, the same bits every run, no more dispatches", async () => {
    const [ranges, whole] = [await load("down_vec=v4w8p4,down_cats=v4w8p4"), await load("down_vec=v1w8,down_cats=v1w8")];
    // Stories260K's 172 neurons in ranges of 44 + 44 + 44 + 40, their sums added in that order.
    const [a, b] = [await run(ranges, null), await run(whole, null)];
    a.forEach((logits, t) => expect(maxAbsDiff(logits, b[t]), `dense, step ${t}`).toBeLessThan(1e-4));
    const dense = ranges.engine.decodeSteps.length;
    expect(dense).toBe(whole.engine.decodeSteps.length);
    const [c, again, d] = [await run(ranges), await run(ranges), await run(whole)];
    expect(ranges.engine.decodeSteps.length).toBe(dense);
    sameBits(c, again, "CATS again");
    c.forEach((logits, t) => expect(maxAbsDiff(logits, d[t]), `CATS, step ${t}`).toBeLessThan(1e-4));
    await ranges.close();
    await whole.close();
  });
});

describe("calibration on a small input", () => {
  const positions = 700; // two windows: 512 + 188 positions
  const levels = [0.3, 0.5, 0.9];
  let lm: LoadedModel;
  let windows: number[][];
  beforeAll(async () => {
    lm = await loadModel(join(MODELS, "stories260K"), { gpu, capture: true });
    const ids = lm.tokenizer.encode(readFileSync(join(DATA, "tinystories_calib.txt"), "utf8").trim(), false);
    windows = [
      [1, ...ids.slice(0, 511)],
      [1, ...ids.slice(511, 511 + 187)],
    ];
  });
  afterAll(async () => lm.close());

  /** The debug path: |silu(gate)| dumped per layer for the same windows, as plain numbers. */
  async function dumpedActivations(thresholds: number[] | null): Promise<number[][]> {
    lm.engine.setThresholds(thresholds);
    const perLayer: number[][] = Array.from({ length: 5 }, () => []);
    for (const w of windows) (await lm.engine.captureActivations(w)).forEach((a, l) => perLayer[l].push(...a));
    lm.engine.setThresholds(null);
    return perLayer;
  }

  it("gives thresholds equal to the quantiles of the dumped activations", async () => {
    const ids = lm.tokenizer.encode(readFileSync(join(DATA, "tinystories_calib.txt"), "utf8").trim(), false);
    const r = await calibrate(lm.engine, ids, { positions, levels, sketchPoints: 1001, refine: false });
    expect(r.positions).toBe(positions);
    expect(r.windows).toBe(2);
    const acts = await dumpedActivations(null);
    acts.forEach((a, l) => {
      expect(a.length).toBe(positions * 172);
      for (const lv of levels) expect(r.thresholds.get(lv)![l]).toBeCloseTo(numpyQuantile(a, lv), 7);
      expect(r.sketches[l][0]).toBe(Math.min(...a));
      expect(r.sketches[l][1000]).toBe(Math.max(...a));
      expect(r.sketches[l][250]).toBeCloseTo(numpyQuantile(a, 0.25), 7);
    });
  });

  it("refines each level on activations taken with the earlier layers already sparsified", async () => {
    const ids = lm.tokenizer.encode(readFileSync(join(DATA, "tinystories_calib.txt"), "utf8").trim(), false);
    const r = await calibrate(lm.engine, ids, { positions, levels: [0.5], sketchPoints: 11, refine: true });
    const acts = await dumpedActivations(r.denseThresholds.get(0.5)!);
    acts.forEach((a, l) => expect(r.thresholds.get(0.5)![l]).toBeCloseTo(numpyQuantile(a, 0.5), 7));
    // Layer 0 sees the same input either way, so refinement cannot move its threshold.
    expect(r.thresholds.get(0.5)![0]).toBe(r.denseThresholds.get(0.5)![0]);
  });

  it("decodes sparsely the same way every time: two runs give bit-identical logits", async () => {
    const ids = lm.tokenizer.encode(readFileSync(join(DATA, "tinystories_calib.txt"), "utf8").trim(), false);
    const r = await calibrate(lm.engine, ids, { positions, levels: [0.5], sketchPoints: 11, refine: false });
    lm.engine.setThresholds(r.thresholds.get(0.5)!);
    const run = async (): Promise<Float32Array[]> => {
      lm.engine.reset();
      const out = [(await lm.engine.prefill(reference("stories260K").prompt_ids, true)).logits!];
      for (let i = 0; i < 12; i++) out.push((await lm.engine.decode(true)).logits!);
      return out;
    };
    const [a, b] = [await run(), await run()];
    lm.engine.setThresholds(null);
    a.forEach((logits, t) => expect(Buffer.from(logits.buffer).equals(Buffer.from(b[t].buffer)), `step ${t}`).toBe(true));
  });

  it("reports the sparsity the mask really applies: at layer 0 the share of dumped activations below the threshold", async () => {
    const ids = lm.tokenizer.encode(readFileSync(join(DATA, "tinystories_calib.txt"), "utf8").trim(), false);
    const r = await calibrate(lm.engine, ids, { positions, levels: [0.5], sketchPoints: 11, refine: false });
    const t = r.thresholds.get(0.5)!;
    const acts = await dumpedActivations(null);
    lm.engine.setThresholds(t);
    await lm.engine.takeSparsityStats();
    for (const w of windows) await lm.engine.windowNll(w);
    const stats = await lm.engine.takeSparsityStats();
    lm.engine.setThresholds(null);
    expect(stats.tokens).toBe(positions);
    expect(stats.perLayer[0]).toBe(acts[0].filter((v) => v < t[0]).length / acts[0].length);
  });
});

describe("thresholds files", () => {
  async function smallFile(model: string): Promise<ThresholdsFile> {
    const lm = await loadModel(join(MODELS, model), { gpu, capture: true });
    const ids = lm.tokenizer.encode("Once upon a time there was a cat. ".repeat(20), false);
    const r = await calibrate(lm.engine, ids, { positions: 100, levels: [0.5], sketchPoints: 11, refine: false });
    const file: ThresholdsFile = {
      format: "cats-thresholds",
      version: 1,
      model: { fingerprint: await modelFingerprint(lm.checkpoint), name: model, layers: 5, intermediate_size: 172, synthetic: false },
      calibration: { data: "inline", data_sha256: "", tokens: 100, windows: 1, windowing: "", seconds: 0 },
      quantile_method: "",
      exact_levels: [0.5],
      thresholds: { "0.5": r.thresholds.get(0.5)! },
      sketch: { points: 11, per_layer: r.sketches },
    };
    await lm.close();
    return file;
  }

  it("are refused for another model, naming the file and field", async () => {
    const file = await smallFile("stories260K");
    const other = await loadModel(join(MODELS, "stories260K-fp16"), { gpu });
    await expect(checkThresholdsFile(file, "T.json", other.checkpoint)).rejects.toThrow(
      /T\.json: field "model\.fingerprint": made for model "stories260K" \(sha256:[0-9a-f]{64}\), but .*stories260K-fp16 is sha256:/,
    );
    await other.close();
  });

  it("give exact levels, derive others from the sketch, and refuse malformed content", async () => {
    const file = await smallFile("stories260K");
    const lm = await loadModel(join(MODELS, "stories260K"), { gpu });
    const t = await checkThresholdsFile(file, "T.json", lm.checkpoint);
    expect(thresholdsForLevel(t, 0.5, "T.json")).toMatchObject({ source: "exact", thresholds: file.thresholds["0.5"] });
    const derived = thresholdsForLevel(t, 0.35, "T.json");
    expect(derived.source).toBe("sketch");
    derived.thresholds.forEach((v, l) => expect(v).toBeCloseTo(0.5 * file.sketch.per_layer[l][3] + 0.5 * file.sketch.per_layer[l][4], 9));
    expect(thresholdsForLevel(t, 0, "T.json").source).toBe("dense");
    await expect(checkThresholdsFile({ ...file, thresholds: { "0.5": [1, 2] } }, "T.json", lm.checkpoint)).rejects.toThrow(
      /T\.json: field "thresholds\.0\.5": expected 5 finite numbers/,
    );
    await expect(checkThresholdsFile({ ...file, sketch: undefined }, "T.json", lm.checkpoint)).rejects.toThrow(/T\.json: field "sketch"/);
    await expect(checkThresholdsFile({ ...file, version: 9 }, "T.json", lm.checkpoint)).rejects.toThrow(/field "version": expected 1/);
    await lm.close();
  });
});
