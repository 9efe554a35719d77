import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkThresholdsFile, thresholdsForLevel } from "../src/cats/thresholds.js";
import { loadModel } from "../src/node.js";
import { cats, DATA, maxAbsDiff, MODELS, reference, smallCalibrationArgs, tempDir, topK } from "./helpers.js";
import { ortGreedy, ortSession } from "../harness/ort-greedy.js";
import { WebPeers } from "../bench/web-peers.js";

const MODEL = join(MODELS, "stories260K");
const ref = reference("stories260K");
const tmp = tempDir("cats-onnx-");
const f32Dir = join(tmp, "f32");
const f16Dir = join(tmp, "f16");
const sparseDir = join(tmp, "sparse");
const thresholdsFile = join(tmp, "thresholds.json");

async function exportOk(args: string[]): Promise<void> {
  const r = await cats(["export", "onnx", "--model", MODEL, ...args]);
  expect(r.errors).toEqual([]);
  expect(r.status).toBe(0);
}

beforeAll(async () => {
  await Promise.all([exportOk(["--out", f32Dir]), exportOk(["--dtype", "f16", "--out", f16Dir])]);
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("cats export onnx: onnxruntime-node (CPU EP)", () => {
  it("writes the directory transformers.js reads", () => {
    for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "onnx/model.onnx"])
      expect(existsSync(join(f32Dir, f)), f).toBe(true);
    expect(existsSync(join(f16Dir, "onnx/model_fp16.onnx"))).toBe(true);
    expect(readFileSync(join(f32Dir, "config.json"), "utf8")).toBe(readFileSync(join(MODEL, "config.json"), "utf8"));
  });

  it("f32: prompt logits within 1e-4 of reference.json, 32 greedy ids equal through the KV cache", async () => {
    const r = await ortGreedy(await ortSession(join(f32Dir, "onnx/model.onnx")), ref.prompt_ids, ref.greedy_new_ids.length);
    expect(maxAbsDiff(r.promptLogits[0], ref.logits_full_first_position)).toBeLessThan(1e-4);
    for (const p of [...ref.logits_first_positions, ref.logits_last_prompt_position]) {
      expect(topK(r.promptLogits[p.position], 5)).toEqual(p.top5_ids);
      expect(
        maxAbsDiff(
          p.top5_ids.map((i) => r.promptLogits[p.position][i]),
          p.top5_logits,
        ),
      ).toBeLessThan(1e-4);
    }
    expect(r.newIds).toEqual(ref.greedy_new_ids);
  });

  it("round trip: cats generate on the f32 and f16 exports gives the original safetensors' greedy ids", async () => {
    const run = (dir: string) => cats(["generate", "--model", dir, "--temperature", "0", "--max-tokens", "32", "--json", ref.prompt]);
    const [original, f32, f16] = await Promise.all([run(MODEL), run(f32Dir), run(f16Dir)]);
    // The f16 export (onnx/model_fp16.onnx, weights Cast to f32 in the graph) loads as f16 weights.
    for (const exported of [f32, f16]) {
      expect(exported.errors).toEqual([]);
      expect(JSON.parse(exported.stdout).ids).toEqual(JSON.parse(original.stdout).ids);
      expect(JSON.parse(exported.stdout).ids).toEqual(ref.greedy_new_ids);
    }
  });

  it("f16 (f16 weights and KV cache): the same greedy ids", async () => {
    const r = await ortGreedy(await ortSession(join(f16Dir, "onnx/model_fp16.onnx")), ref.prompt_ids, ref.greedy_new_ids.length);
    expect(r.newIds).toEqual(ref.greedy_new_ids);
  });

  it("--external-data: weights in onnx/model.onnx_data give the same logits", async () => {
    const dir = join(tmp, "external");
    await exportOk(["--external-data", "--out", dir]);
    expect(existsSync(join(dir, "onnx/model.onnx_data"))).toBe(true);
    const r = await ortGreedy(await ortSession(join(dir, "onnx/model.onnx")), ref.prompt_ids, 4);
    expect(maxAbsDiff(r.promptLogits[0], ref.logits_full_first_position)).toBeLessThan(1e-4);
  });

  it("--thresholds --sparsity 0.5: onnxruntime's logits equal cats' sparse logits on held-out text", async () => {
    const cal = await cats(smallCalibrationArgs(thresholdsFile));
    expect(cal.status).toBe(0);
    await exportOk(["--thresholds", thresholdsFile, "--sparsity", "0.5", "--out", sparseDir]);
    const lm = await loadModel(MODEL);
    try {
      const file = await checkThresholdsFile(JSON.parse(readFileSync(thresholdsFile, "utf8")), thresholdsFile, lm.checkpoint);
      lm.engine.setThresholds(thresholdsForLevel(file, 0.5, thresholdsFile).thresholds);
      const text = readFileSync(join(DATA, "tinystories_heldout.txt"), "utf8").slice(0, 2000);
      const ids = lm.tokenizer.encode(text, true).slice(0, 64);
      const catsLogits = await lm.engine.allLogits(ids);
      const ort = await ortGreedy(await ortSession(join(sparseDir, "onnx/model.onnx")), ids, 1);
      const dense = await ortGreedy(await ortSession(join(f32Dir, "onnx/model.onnx")), ids, 1);
      let worst = 0;
      let denseGap = 0;
      for (let i = 0; i < ids.length; i++) {
        worst = Math.max(worst, maxAbsDiff(ort.promptLogits[i], catsLogits[i]));
        denseGap = Math.max(denseGap, maxAbsDiff(dense.promptLogits[i], catsLogits[i]));
      }
      expect(worst).toBeLessThan(1e-4);
      // The mask is really there: the dense export is far from cats' sparse logits.
      expect(denseGap).toBeGreaterThan(1e-2);
    } finally {
      await lm.close();
    }
  }, 60_000);
});

describe("cats export onnx: transformers.js", () => {
  it("AutoModelForCausalLM in Node (local files only) generates reference.json's greedy ids, f32 and f16", async () => {
    const { env, AutoModelForCausalLM, Tensor } = await import("@huggingface/transformers");
    env.allowRemoteModels = false;
    env.localModelPath = tmp;
    const ids = (v: number[]) => new Tensor("int64", BigInt64Array.from(v.map(BigInt)), [1, v.length]);
    for (const [name, dtype] of [
      ["f32", "fp32"],
      ["f16", "fp16"],
    ] as const) {
      const model = await AutoModelForCausalLM.from_pretrained(name, { dtype });
      const p = ref.prompt_ids;
      const out = (await model.generate({
        input_ids: ids(p),
        attention_mask: ids(p.map(() => 1)),
        max_new_tokens: ref.greedy_new_ids.length,
        do_sample: false,
      })) as { data: BigInt64Array };
      expect(Array.from(out.data, Number).slice(p.length), dtype).toEqual(ref.greedy_new_ids);
      await model.dispose();
    }
  });

  it("transformers.js and onnxruntime-web (wasm) in headless Chromium generate the same ids", async () => {
    const web = await WebPeers.open(f32Dir, { webgpu: false });
    try {
      for (const library of ["transformers.js", "onnxruntime-web"] as const) {
        const r = await web.run({ library, device: "wasm" }, "fp32", ref.prompt_ids, ref.greedy_new_ids.length, 1);
        expect(r.runs[0].ids, library).toEqual(ref.greedy_new_ids);
      }
    } finally {
      await web.close();
    }
  }, 120_000);
});

describe("cats export onnx: errors", () => {
  const one = (r: { status: number | null; errors: string[] }, status: number) => {
    expect(r.status).toBe(status);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/^cats: /);
  };
  it("bad flags exit 2 with one line", async () => {
    one(await cats(["export", "onnx", "--model", MODEL]), 2);
    one(await cats(["export", "onnx", "--dtype", "bf16", "--out", join(tmp, "x")]), 2);
    one(await cats(["export", "onnx", "--sparsity", "1.5", "--out", join(tmp, "x")]), 2);
    one(await cats(["export", "onnx", "--bogus", "--out", join(tmp, "x")]), 2);
  });
  it("bad input or --out exit 1 with one line, before writing anything", async () => {
    const file = join(tmp, "a-file");
    writeFileSync(file, "x");
    one(await cats(["export", "onnx", "--model", MODEL, "--out", file]), 1);
    one(await cats(["export", "onnx", "--model", MODEL, "--out", join(file, "sub")]), 1);
    one(await cats(["export", "onnx", "--model", MODEL, "--out", MODEL]), 1);
    one(await cats(["export", "onnx", "--model", join(tmp, "missing"), "--out", join(tmp, "y")]), 1);
    one(await cats(["export", "onnx", "--model", MODEL, "--sparsity", "0.5", "--out", join(tmp, "y")]), 1);
    one(await cats(["export", "onnx", "--model", MODEL, "--thresholds", file, "--sparsity", "0.5", "--out", join(tmp, "y")]), 1);
    expect(existsSync(join(tmp, "y", "onnx"))).toBe(false);
  });
});
