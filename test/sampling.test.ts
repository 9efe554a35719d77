import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fc, it as prop } from "@fast-check/vitest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generate } from "../src/engine/generate.js";
import { argmax, sampleToken, seededRandom, type SamplingOptions } from "../src/engine/sampling.js";
import { loadModel, type LoadedModel } from "../src/node.js";
import { MODELS, reference, tempDir } from "./helpers.js";

describe("sampling on stories260K", () => {
  const ref = reference("stories260K");
  let lm: LoadedModel;
  beforeAll(async () => {
    lm = await loadModel(join(MODELS, "stories260K"));
  });
  afterAll(async () => lm.close());
  const run = (o: { temperature: number; topK: number; topP: number; seed: number }) =>
    generate(lm.engine, ref.prompt_ids, { ...o, maxTokens: 24 });

  it("is reproducible for a seed and differs across seeds", async () => {
    const a = await run({ temperature: 1, topK: 0, topP: 0.95, seed: 7 });
    const b = await run({ temperature: 1, topK: 0, topP: 0.95, seed: 7 });
    const c = await run({ temperature: 1, topK: 0, topP: 0.95, seed: 8 });
    expect(b.ids).toEqual(a.ids);
    expect(c.ids).not.toEqual(a.ids);
  });

  it("with top-k 1 equals greedy decoding at any temperature", async () => {
    const topOne = await run({ temperature: 1.5, topK: 1, topP: 1, seed: 1 });
    expect(topOne.ids).toEqual(ref.greedy_new_ids.slice(0, 24));
  });

  it("stops at an EOS id from config.json", async () => {
    // stories260K never emits its EOS (llama2.c separates stories with BOS), so this copy names the
    // 10th greedy token as an extra EOS id: generation must end right there.
    const dir = tempDir("cats-eos-");
    for (const f of ["model.safetensors", "tokenizer.json", "tokenizer_config.json"])
      copyFileSync(join(MODELS, "stories260K", f), join(dir, f));
    const cfg = JSON.parse(readFileSync(join(MODELS, "stories260K", "config.json"), "utf8"));
    const stopId = ref.greedy_new_ids[9];
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, eos_token_id: [2, stopId] }));
    const eosModel = await loadModel(dir, { gpu: lm.gpu });
    const r = await generate(eosModel.engine, ref.prompt_ids, { temperature: 0, topK: 0, topP: 1, seed: 0, maxTokens: 100 });
    expect(r.stopReason).toBe("eos");
    expect(r.ids).toEqual(ref.greedy_new_ids.slice(0, ref.greedy_new_ids.indexOf(stopId) + 1));
    await eosModel.close();
  });
});

describe("sampleToken", () => {
  const logits = new Float32Array([0, 3, 1, 2.9, -5]);

  it("is argmax at temperature 0, ties to the lower id", () => {
    expect(sampleToken(logits, { temperature: 0, topK: 0, topP: 1 }, Math.random)).toBe(1);
    expect(argmax([1, 4, 4, 2])).toBe(1);
  });

  it("never leaves the top-k set", () => {
    const random = seededRandom(3);
    for (let i = 0; i < 500; i++) expect([1, 3]).toContain(sampleToken(logits, { temperature: 5, topK: 2, topP: 1 }, random));
  });

  it("keeps the smallest nucleus reaching top-p", () => {
    const random = seededRandom(4);
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) seen.add(sampleToken(logits, { temperature: 1, topK: 0, topP: 0.45 }, random));
    expect([...seen]).toEqual([1]);
  });

  it("follows the softmax distribution", () => {
    const random = seededRandom(5);
    const counts = [0, 0, 0, 0, 0];
    const n = 20000;
    for (let i = 0; i < n; i++) counts[sampleToken(logits, { temperature: 1, topK: 0, topP: 1 }, random)]++;
    const z = [...logits].map(Math.exp);
    const total = z.reduce((a, b) => a + b);
    z.forEach((p, i) => expect(Math.abs(counts[i] / n - p / total)).toBeLessThan(0.015));
  });
});

/**
 * sampleToken's rule written out plainly: the whole vocabulary sorted with a comparator, float64
 * weights, the total summed in id order, the nucleus and the draw walked in sorted order.
 */
function referenceSample(logits: Float32Array, o: SamplingOptions, u: number): number {
  if (o.temperature === 0) return argmax(logits);
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  const weight = (id: number) => Math.exp((logits[id] - logits[order[0]]) / o.temperature);
  const candidates = o.topK > 0 ? order.slice(0, o.topK) : order;
  const total = [...candidates].sort((a, b) => a - b).reduce((sum, id) => sum + weight(id), 0);
  let nucleus = candidates;
  if (o.topP < 1) {
    let cum = 0;
    const end = candidates.findIndex((id) => (cum += weight(id) / total) >= o.topP);
    if (end >= 0) nucleus = candidates.slice(0, end + 1);
  }
  const mass = o.topP < 1 ? nucleus.reduce((sum, id) => sum + weight(id), 0) : total;
  let r = u * mass;
  for (const id of nucleus) if ((r -= weight(id)) < 0) return id;
  return nucleus[nucleus.length - 1];
}

describe("sampleToken against a full sort", () => {
  // Few distinct values, so that ties (and -0 beside +0) are common; some far below the rest.
  const logit = fc.oneof(fc.constantFrom(0, -0, 1, -1, 2.5, 30, -80, -1e4), fc.float({ min: -40, max: 40, noNaN: true }));
  prop.prop(
    [
      fc.array(logit, { minLength: 1, maxLength: 300 }),
      fc.double({ min: 0.05, max: 4, noNaN: true }),
      fc.nat({ max: 320 }),
      fc.oneof(fc.constant(1), fc.double({ min: 0.01, max: 1, noNaN: true })),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
    ],
    { numRuns: 400, seed: 20261207 },
  )("picks the token the full sort picks, for any logits, options and draw", (values, temperature, topK, topP, u) => {
    const logits = Float32Array.from(values);
    const o = { temperature, topK, topP };
    expect(sampleToken(logits, o, () => u)).toBe(referenceSample(logits, o, u));
  });

  it("refuses a vocabulary too large for its sort keys, in one line", () => {
    expect(() => sampleToken(new Float32Array(2 ** 21 + 1), { temperature: 1, topK: 0, topP: 1 }, () => 0.5)).toThrow(
      /^sampling: a vocabulary of 2097153 ids, over the 2097152 this sampler can order$/,
    );
  });

  it("ties -0 with +0: the lower id comes first", () => {
    const logits = new Float32Array([-5, -0, 0, -0]);
    for (const u of [0, 0.3, 0.5, 0.7, 0.99]) {
      const o = { temperature: 1, topK: 0, topP: 1 };
      expect(sampleToken(logits, o, () => u)).toBe(referenceSample(logits, o, u));
    }
    expect(sampleToken(logits, { temperature: 1, topK: 1, topP: 1 }, () => 0.5)).toBe(1);
  });

  it("and at Llama's 32,000-id vocabulary, where the bands and the sort keys are used in earnest", () => {
    const random = seededRandom(11);
    const gauss = () => Array.from({ length: 12 }, random).reduce((a, b) => a + b) - 6;
    const logits = Float32Array.from({ length: 32000 }, () => Math.round(gauss() * 250) / 100);
    for (let i = 0; i < 20; i++) logits[Math.floor(random() * 32000)] = 8 + 8 * random();
    for (const o of [
      { temperature: 0.7, topK: 0, topP: 1 },
      { temperature: 1, topK: 40, topP: 0.9 },
      { temperature: 1.5, topK: 0, topP: 0.95 },
      { temperature: 3, topK: 0, topP: 1 },
    ]) {
      for (let i = 0; i < 8; i++) {
        const u = random();
        expect(sampleToken(logits, o, () => u)).toBe(referenceSample(logits, o, u));
      }
    }
  });
});
