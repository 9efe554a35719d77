import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGpu, type GpuContext } from "../src/gpu/device.js";
import { loadModel, type LoadedModel } from "../src/node.js";
import { maxAbsDiff, MODELS, reference, topK } from "./helpers.js";
import { openCheckpoint } from "../src/model/checkpoint.js";
import { directoryFiles } from "../src/model/nodefiles.js";
import { loadWeights } from "../src/engine/load.js";
import { ROW_BLOCKS_FROM, rowBlocksFrom, STREAMED_MODEL_FROM } from "../src/engine/llama.js";
import { destroyMatrix } from "../src/engine/weights.js";

const MODELS_UNDER_TEST: [string, number][] = [
  ["stories260K", 1e-3],
  ["stories260K-fp16", 2e-2],
];

let gpu: GpuContext;
beforeAll(async () => {
  gpu = await createGpu();
});
afterAll(() => gpu.destroy());

for (const flavour of ["cpu", "gpu"] as const) {
  for (const [model, tol] of MODELS_UNDER_TEST) {
    describe(`${model} with ${flavour} kernels against reference.json`, () => {
      const ref = reference(model);
      let lm: LoadedModel;
      let logits: Float32Array[];
      beforeAll(async () => {
        lm = await loadModel(join(MODELS, model), { flavour, gpu: { ...gpu, flavour } });
        logits = await lm.engine.allLogits(ref.prompt_ids);
      });
      afterAll(async () => lm.close());

      it("tokenizes the prompt as the reference", () => {
        expect(lm.tokenizer.encode(ref.prompt)).toEqual(ref.prompt_ids);
      });

      const expectTop5 = (p: { position: number; top5_ids: number[]; top5_logits: number[] }) => {
        expect(topK(logits[p.position], 5)).toEqual(p.top5_ids);
        expect(
          maxAbsDiff(
            p.top5_ids.map((i) => logits[p.position][i]),
            p.top5_logits,
          ),
        ).toBeLessThan(tol);
      };

      it("matches top-5 ids and logits at positions 0-2", () => {
        for (const p of ref.logits_first_positions) expectTop5(p);
      });

      it("matches top-5 ids and logits at the last prompt position", () => expectTop5(ref.logits_last_prompt_position));

      it("matches all logits at position 0", () => {
        expect(logits[0].length).toBe(ref.logits_full_first_position.length);
        expect(maxAbsDiff(logits[0], ref.logits_full_first_position)).toBeLessThan(tol);
      });

      it("decodes the 32 greedy ids", async () => {
        lm.engine.reset();
        const first = await lm.engine.prefill(ref.prompt_ids);
        const rest = [];
        for (let i = 0; i < 31; i++) rest.push((await lm.engine.decode()).token);
        expect([first.token, ...rest]).toEqual(ref.greedy_new_ids);
      });

      it("gives the same greedy ids with every step in its own timestamped pass (decodeTimed), each step timed", async () => {
        if (!lm.gpu.features.has("timestamp-query")) return; // the method refuses adapters without it
        lm.engine.reset();
        const first = await lm.engine.prefill(ref.prompt_ids);
        const ids = [first.token];
        for (let i = 0; i < 31; i++) {
          const t = await lm.engine.decodeTimed();
          expect(t.steps.map((s) => s.name)).toEqual(lm.engine.decodeSteps.map((s) => s.name));
          expect(t.steps.every((s) => Number.isFinite(s.ms) && s.ms >= 0)).toBe(true);
          ids.push(t.token);
        }
        expect(ids).toEqual(ref.greedy_new_ids);
      });

      it("gives the same greedy ids when steps are chained in one submission", async () => {
        lm.engine.reset();
        const first = await lm.engine.prefill(ref.prompt_ids);
        expect([first.token, ...(await lm.engine.decodeGreedy(31))]).toEqual(ref.greedy_new_ids);
      });

      it("gives the same logits from batched prefill as from token-by-token decoding", async () => {
        const ids = ref.prompt_ids;
        lm.engine.reset();
        const stepwise = [(await lm.engine.prefill([ids[0]], true)).logits!];
        for (const id of ids.slice(1)) {
          lm.engine.setNextToken(id);
          stepwise.push((await lm.engine.decode(true)).logits!);
        }
        ids.forEach((_, t) => expect(maxAbsDiff(stepwise[t], logits[t])).toBeLessThan(1e-4));
        lm.engine.reset();
        const batched = await lm.engine.prefill(ids, true);
        expect(maxAbsDiff(batched.logits!, logits[ids.length - 1])).toBeLessThan(1e-4);
      });
    });
  }
}

describe("prefill longer than one pass", () => {
  it("splits the prompt into chunks and still matches the one-pass logits", async () => {
    const ref = reference("stories260K");
    const whole = await loadModel(join(MODELS, "stories260K"), { gpu });
    const chunked = await loadModel(join(MODELS, "stories260K"), { gpu, chunk: 2 });
    const ids = [...ref.prompt_ids, ...ref.greedy_new_ids.slice(0, 6)];
    whole.engine.reset();
    chunked.engine.reset();
    const a = await whole.engine.prefill(ids, true);
    const b = await chunked.engine.prefill(ids, true);
    expect(b.token).toBe(a.token);
    expect(maxAbsDiff(a.logits!, b.logits!)).toBeLessThan(1e-4);
    await whole.close();
    await chunked.close();
  });
});

describe("timing a token's steps", () => {
  it("refuses an adapter without timestamp-query with one clear message, and the engine decodes on", async () => {
    const features = new Set([...gpu.features].filter((f) => f !== "timestamp-query"));
    const lm = await loadModel(join(MODELS, "stories260K"), { gpu: { ...gpu, features } });
    await lm.engine.prefill(reference("stories260K").prompt_ids);
    await expect(lm.engine.decodeTimed()).rejects.toThrow(
      /^timing the steps of a token needs the adapter's timestamp-query feature, which this one lacks$/,
    );
    expect((await lm.engine.decode()).token).toBe(reference("stories260K").greedy_new_ids[1]);
    await lm.close();
  });
});

describe("matrices larger than the binding limit", () => {
  it("split into row ranges over several bindings give the same logits and greedy ids as unsplit", async () => {
    const ref = reference("stories260K");
    const whole = await loadModel(join(MODELS, "stories260K"), { gpu });
    // 16 KiB splits the 128 KiB embedding / tied lm_head into 8 parts and every MLP matrix into 3.
    const split = await loadModel(join(MODELS, "stories260K"), { gpu, maxBindingBytes: 16 << 10 });
    expect(split.engine.decodeDispatches).toBeGreaterThan(whole.engine.decodeDispatches + 10);
    const [a, b] = [await whole.engine.allLogits(ref.prompt_ids), await split.engine.allLogits(ref.prompt_ids)];
    a.forEach((row, t) => expect(maxAbsDiff(row, b[t])).toBeLessThan(1e-5));
    split.engine.reset();
    const first = await split.engine.prefill(ref.prompt_ids);
    expect([first.token, ...(await split.engine.decodeGreedy(31))]).toEqual(ref.greedy_new_ids);
    await whole.close();
    await split.close();
  });
});

describe("the row-block layout (f32b/f16b) and W_down^T's column slices (f32s/f16s)", () => {
  for (const model of ["stories260K", "stories260K-fp16"]) {
    it(`${model}: q/k/v, o, gate and lm_head in row blocks and W_down^T in column slices give the same logits as row after row, bit for bit`, async () => {
      const ref = reference(model);
      const rows = await loadModel(join(MODELS, model), { gpu, rowBlocks: false });
      const blocks = await loadModel(join(MODELS, model), { gpu, rowBlocks: true });
      const w = blocks.engine.weights;
      const formats = [w.layers[0].qkv, w.layers[0].o, w.layers[0].gate, w.lmHead].map((m) => m.format);
      const f = model.endsWith("fp16") ? "f16" : "f32";
      expect(formats).toEqual([`${f}b`, `${f}b`, `${f}b`, `${f}b`]);
      // CATS skips W_up's rows one by one: it stays row after row; W_down^T's rows are each stored
      // as their parts of the column slices.
      expect([w.layers[0].up.format, w.layers[0].downT.format]).toEqual([f, `${f}s`]);
      expect(rows.engine.weights.layers[0].qkv.format).toBe(f);
      const [a, b] = [await rows.engine.allLogits(ref.prompt_ids), await blocks.engine.allLogits(ref.prompt_ids)];
      a.forEach((row, t) => expect(maxAbsDiff(row, b[t])).toBe(0));
      blocks.engine.reset();
      const first = await blocks.engine.prefill(ref.prompt_ids);
      expect([first.token, ...(await blocks.engine.decodeGreedy(31))]).toEqual(ref.greedy_new_ids);
      await rows.close();
      await blocks.close();
    });
  }

  it("stores only the matrices of at least the given size in row blocks (W_down^T in column slices), and never W_up", async () => {
    // stories260K (f32): the embedding, also the (tied) lm_head, 512 x 64 (128 KiB); q/k/v 128 x 64 (32 KiB), gate and up 172 x 64.
    const ckpt = await openCheckpoint(directoryFiles(join(MODELS, "stories260K")));
    // At 64 KiB only the lm_head; at 40 KiB gate and W_down^T (172 x 64 f32, 43 KiB) too, W_down^T in column slices.
    const expected: [number, string[]][] = [
      [64 << 10, ["f32b", "f32", "f32", "f32", "f32", "f32"]],
      [40 << 10, ["f32b", "f32", "f32", "f32b", "f32", "f32s"]],
    ];
    for (const [from, formats] of expected) {
      const w = await loadWeights(gpu.device, ckpt, undefined, from);
      const l = w.layers[0];
      expect([w.lmHead.format, l.qkv.format, l.o.format, l.gate.format, l.up.format, l.downT.format], `from ${from}`).toEqual(formats);
      for (const m of [w.embed, ...w.layers.flatMap((x) => [x.qkv, x.o, x.gate, x.up, x.downT])]) destroyMatrix(m);
      for (const x of w.layers) for (const b of [x.k, x.v, x.qkvGain, x.mlpGain]) b?.destroy();
    }
  });

  it("on CPU drivers, a model that streams from memory (16 MiB of weights or more) puts every matrix read whole in row blocks; a smaller one those of 1 MiB or more", () => {
    const cpu = { ...gpu, flavour: "cpu" as const };
    const saved = process.env.CATS_ROW_BLOCKS;
    delete process.env.CATS_ROW_BLOCKS;
    try {
      expect(rowBlocksFrom(cpu, undefined, STREAMED_MODEL_FROM)).toBe(0);
      expect(rowBlocksFrom(cpu, undefined, STREAMED_MODEL_FROM - 1)).toBe(ROW_BLOCKS_FROM);
      expect(rowBlocksFrom(cpu)).toBe(ROW_BLOCKS_FROM);
      expect(rowBlocksFrom({ ...gpu, flavour: "gpu" }, undefined, STREAMED_MODEL_FROM)).toBe(Infinity);
      expect(rowBlocksFrom(cpu, false, STREAMED_MODEL_FROM)).toBe(Infinity);
      process.env.CATS_ROW_BLOCKS = "0";
      expect(rowBlocksFrom(cpu, undefined, STREAMED_MODEL_FROM)).toBe(Infinity);
    } finally {
      if (saved === undefined) delete process.env.CATS_ROW_BLOCKS;
      else process.env.CATS_ROW_BLOCKS = saved;
    }
  });
});
