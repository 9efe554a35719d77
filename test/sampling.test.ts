import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generate } from "../src/engine/generate.js";
import { argmax, sampleToken, seededRandom } from "../src/engine/sampling.js";
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
