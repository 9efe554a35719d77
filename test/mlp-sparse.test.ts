import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGpu, type GpuContext } from "../src/gpu/device.js";
import { MAP_READ, Usage } from "../src/gpu/flags.js";
import { nodeKernelSource } from "../src/gpu/nodekernels.js";
import { encodeDispatches, PipelineCache } from "../src/gpu/pipelines.js";
import { MlpBlock, sparseStatsDispatch } from "../src/engine/mlp.js";
import { padCols, uploadMatrix, uploadTransposed } from "../src/engine/weights.js";
import { openCheckpoint } from "../src/model/checkpoint.js";
import { floatToHalf, halfToFloat } from "../src/model/dtype.js";
import { memoryFiles } from "../src/model/memoryfiles.js";
import { encodeSafetensors } from "../src/model/safetensors-writer.js";
import { seededRandom } from "../src/engine/sampling.js";

/** Random weights as stored (f32 or f16 bits) and as the float values the GPU will see. */
function randomTensor(rows: number, cols: number, dtype: "F32" | "F16", random: () => number, scale: number) {
  const values = Float64Array.from({ length: rows * cols }, () => (random() * 2 - 1) * scale);
  if (dtype === "F32") {
    const f = Float32Array.from(values);
    return { data: new Uint8Array(f.buffer), values: Float64Array.from(f) };
  }
  const h = Uint16Array.from(values, floatToHalf);
  return { data: new Uint8Array(h.buffer), values: Float64Array.from(h, halfToFloat) };
}

const silu = (g: number) => g / (1 + Math.exp(-g));

async function harness(gpu: GpuContext, H: number, I: number, dtype: "F32" | "F16", cpu: boolean, seed: number) {
  const random = seededRandom(seed);
  const gate = randomTensor(I, H, dtype, random, 0.3);
  const up = randomTensor(I, H, dtype, random, 0.3);
  const down = randomTensor(H, I, dtype, random, 0.3);
  const config = { architectures: ["LlamaForCausalLM"], hidden_size: H, intermediate_size: I, num_hidden_layers: 1, num_attention_heads: 1, head_dim: 4, max_position_embeddings: 8, vocab_size: 8, rms_norm_eps: 1e-5 };
  const st = encodeSafetensors([
    { name: "gate", dtype, shape: [I, H], data: gate.data },
    { name: "up", dtype, shape: [I, H], data: up.data },
    { name: "down", dtype, shape: [H, I], data: down.data },
  ]);
  const ckpt = await openCheckpoint(memoryFiles("mem", { "config.json": JSON.stringify(config), "model.safetensors": st }));
  const d = gpu.device;
  const w = {
    gateUp: await uploadMatrix(d, ckpt, [{ name: "gate", rows: I }, { name: "up", rows: I }], H, "gate_up"),
    down: await uploadMatrix(d, ckpt, [{ name: "down", rows: H }], I, "down"),
    downT: await uploadTransposed(d, ckpt, "down", H, I, "downT"),
  };
  const make = (n: number) => d.createBuffer({ size: Math.max(16, n * 4), usage: Usage.STORAGE | Usage.COPY_DST | Usage.COPY_SRC });
  const b = { state: make(4), h: make(4 * padCols(H)), act: make(4 * padCols(I)), x: make(4 * padCols(H)), idx: make(I), val: make(I), actv: make(I), counts: make(1), totals: make(1), capture: make(4) };
  const pipes = new PipelineCache({ ...gpu, flavour: cpu ? "cpu" : "gpu" }, nodeKernelSource);
  const mlp = new MlpBlock(pipes, d, cpu, { hidden: H, inter: I, layer: 0, captureOffset: null }, w, b);
  const stats = sparseStatsDispatch(pipes, 1, b.counts, b.totals);

  /** Runs the sparse (or masked dense) MLP on one token; returns the residual after the block. */
  async function run(h: Float64Array, x0: Float64Array, threshold: number, path: "sparse" | "dense") {
    const pad = (v: Float64Array) => {
      const out = new Float32Array(padCols(v.length));
      out.set(v);
      return out;
    };
    d.queue.writeBuffer(b.state, 0, new Uint32Array([0, 1, 0, 0]));
    d.queue.writeBuffer(b.h, 0, pad(h));
    d.queue.writeBuffer(b.x, 0, pad(x0));
    mlp.setThreshold(threshold);
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    encodeDispatches(pass, path === "sparse" ? [...mlp.sparse!, stats] : mlp.dense, 1);
    pass.end();
    const staging = d.createBuffer({ size: padCols(H) * 4, usage: MAP_READ | Usage.COPY_DST });
    enc.copyBufferToBuffer(b.x, 0, staging, 0, padCols(H) * 4);
    d.queue.submit([enc.finish()]);
    await staging.mapAsync(MAP_READ);
    const out = new Float32Array(staging.getMappedRange().slice(0)).slice(0, H);
    staging.destroy();
    gpu.check("mlp harness");
    return out;
  }

  /** float64 reference: the dense MLP with neurons below the threshold zeroed. */
  function reference(h: Float64Array, x0: Float64Array, threshold: number) {
    const a = new Float64Array(I);
    const u = new Float64Array(I);
    for (let i = 0; i < I; i++) {
      let g = 0;
      let v = 0;
      for (let k = 0; k < H; k++) {
        g += gate.values[i * H + k] * h[k];
        v += up.values[i * H + k] * h[k];
      }
      a[i] = silu(g);
      u[i] = v;
    }
    const y = Float64Array.from(x0);
    let active = 0;
    for (let i = 0; i < I; i++) {
      if (Math.abs(a[i]) < threshold) continue;
      active++;
      for (let o = 0; o < H; o++) y[o] += down.values[o * I + i] * a[i] * u[i];
    }
    return { y, active, absActs: Array.from(a, Math.abs).sort((p, q) => p - q) };
  }

  return { run, reference, random, close: () => ckpt.close() };
}

let gpu: GpuContext;
beforeAll(async () => {
  gpu = await createGpu();
});
afterAll(() => gpu.destroy());

const SHAPES: [number, number, "F32" | "F16"][] = [
  [72, 100, "F32"],
  [72, 100, "F16"],
  [64, 172, "F32"],
  [200, 333, "F16"],
];

for (const cpu of [true, false]) {
  for (const [H, I, dtype] of SHAPES) {
    describe(`sparse MLP ${H}x${I} ${dtype}, ${cpu ? "cpu" : "gpu"} kernels`, () => {
      it("equals the dense MLP with the same mask: all, none, one and half of the neurons active", async () => {
        const hz = await harness(gpu, H, I, dtype, cpu, H * 31 + I);
        const h = Float64Array.from({ length: H }, () => hz.random() * 2 - 1);
        const x0 = Float64Array.from({ length: H }, () => hz.random() - 0.5);
        const sorted = hz.reference(h, x0, 0).absActs;
        // Thresholds halfway between neighbouring |a| so float rounding cannot flip a neuron.
        const between = (i: number) => (sorted[i - 1] + sorted[i]) / 2;
        const cases: [string, number, number][] = [
          ["all", 0, I],
          ["none", sorted[I - 1] * 2 + 1, 0],
          ["one", between(I - 1), 1],
          ["half", between(Math.floor(I / 2)), I - Math.floor(I / 2)],
        ];
        for (const [what, t, expectedActive] of cases) {
          const ref = hz.reference(h, x0, t);
          expect(ref.active, what).toBe(expectedActive);
          const scale = Math.max(1, ...ref.y.map(Math.abs));
          for (const path of ["sparse", "dense"] as const) {
            const got = await hz.run(h, x0, t, path);
            const err = Math.max(...Array.from(got, (v, o) => Math.abs(v - ref.y[o])));
            expect(err / scale, `${what} via ${path}`).toBeLessThan(1e-5);
            if (what === "none") expect(Array.from(got)).toEqual(Array.from(Float32Array.from(x0)));
          }
        }
        await hz.close();
      });
    });
  }
}
