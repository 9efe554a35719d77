import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGpu, type GpuContext } from "../src/gpu/device.js";
import { nodeKernelSource } from "../src/gpu/nodekernels.js";
import { createMlpRunner, type MlpRunner } from "../src/engine/mlp-runner.js";
import { seededRandom } from "../src/engine/sampling.js";

const silu = (g: number) => g / (1 + Math.exp(-g));

/** float64 reference: the dense MLP with neurons whose |silu(gate)| is below the threshold zeroed. */
function maskedDenseMlp(r: MlpRunner, h: number[], x0: number[], threshold: number) {
  const { hidden: H, inter: I, values: w } = r;
  const a = new Float64Array(I);
  const u = new Float64Array(I);
  for (let i = 0; i < I; i++) {
    let g = 0;
    let v = 0;
    for (let k = 0; k < H; k++) {
      g += w.gate[i * H + k] * h[k];
      v += w.up[i * H + k] * h[k];
    }
    a[i] = silu(g);
    u[i] = v;
  }
  const y = Float64Array.from(x0);
  let active = 0;
  for (let i = 0; i < I; i++) {
    if (Math.abs(a[i]) < threshold) continue;
    active++;
    for (let o = 0; o < H; o++) y[o] += w.down[o * I + i] * a[i] * u[i];
  }
  return { y, active, sortedAbs: Array.from(a, Math.abs).sort((p, q) => p - q) };
}

let gpu: GpuContext;
beforeAll(async () => {
  gpu = await createGpu();
});
afterAll(() => gpu.destroy());

// Sizes deliberately not multiples of the workgroup (64) or of the padding (8).
const SHAPES: [number, number, boolean][] = [
  [72, 100, false],
  [72, 100, true],
  [64, 172, false],
  [200, 333, true],
];

for (const flavour of ["cpu", "gpu"] as const) {
  for (const [H, I, f16] of SHAPES) {
    describe(`sparse MLP ${H}x${I} ${f16 ? "f16" : "f32"}, ${flavour} kernels`, () => {
      it("equals the dense MLP with the same mask: all, none, one and half of the neurons active", async () => {
        const runner = await createMlpRunner({ ...gpu, flavour }, nodeKernelSource, { hidden: H, inter: I, f16, seed: H * 31 + I });
        const random = seededRandom(I);
        const h = Array.from({ length: H }, () => random() * 2 - 1);
        const x0 = Array.from({ length: H }, () => random() - 0.5);
        const sorted = maskedDenseMlp(runner, h, x0, 0).sortedAbs;
        // Thresholds halfway between neighbouring |a| so float rounding cannot flip a neuron.
        const between = (i: number) => (sorted[i - 1] + sorted[i]) / 2;
        const half = Math.floor(I / 2);
        const cases: [string, number, number][] = [
          ["all", 0, I],
          ["none", sorted[I - 1] * 2 + 1, 0],
          ["one", between(I - 1), 1],
          ["half", between(half), I - half],
        ];
        for (const [what, t, expectedActive] of cases) {
          const ref = maskedDenseMlp(runner, h, x0, t);
          expect(ref.active, what).toBe(expectedActive);
          const scale = Math.max(1, ...ref.y.map(Math.abs));
          runner.load(h, x0, t);
          for (const path of ["sparse", "dense"] as const) {
            const got = await runner.run(path);
            const err = Math.max(...Array.from(got, (v, o) => Math.abs(v - ref.y[o])));
            expect(err / scale, `${what} via ${path}`).toBeLessThan(1e-5);
            if (what === "none") expect(Array.from(got)).toEqual(Array.from(Float32Array.from(x0)));
          }
          expect(await runner.takeActiveTotal(), `${what}: active count`).toBe(2 * expectedActive);
        }
        runner.destroy();
      });
    });
  }
}
