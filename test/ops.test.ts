/**
 * Every op of the forward pass, in every variant this adapter runs, with f32 and f16 weights, on
 * awkward shapes (one row, sizes that are not multiples of 4, 8 or the workgroup, matrices split
 * across bindings), each against float64 computed here: the spirit of llama.cpp's test-backend-ops.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OpHarness, opShape, randomMatrix, randomVector, transpose, type HostMatrix } from "../harness/ops.js";
import { createGpu, type GpuContext } from "../src/gpu/device.js";
import { nodeKernelSource } from "../src/gpu/nodekernels.js";
import { KernelCache } from "../src/gpu/kernel.js";
import { VariantTable, type OpName } from "../src/gpu/variants.js";
import { floatFormat, padCols } from "../src/engine/weights.js";
import { setStepParams } from "../src/engine/ops.js";
import { composeKernel, ROW_BLOCK } from "../src/gpu/wgsl.js";
import { attend, DecodeAttention, maxRelErr, project, rope, silu, thresholdCases } from "./ops-reference.js";

let gpu: GpuContext;
/** One cache for the whole file: each kernel variant is compiled once, whatever the shapes. */
let kernels: KernelCache;
beforeAll(async () => {
  gpu = await createGpu();
  kernels = new KernelCache(gpu, nodeKernelSource);
});
afterAll(() => gpu.destroy());

const DTYPES = [
  ["f32", false],
  ["f16", true],
] as const;
const EPS = 1e-5;
const TOL = 2e-5;

const variantsOf = (op: OpName): string[] => new VariantTable(gpu).candidates(op).map((v) => v.name);
/** Variant names are only known once the adapter is: each test iterates over them itself. */
const forEachVariant = async (op: OpName, f: (variant: string) => Promise<void>): Promise<void> => {
  for (const v of variantsOf(op)) await f(v);
};

function harness(
  variants: Partial<Record<OpName, string>>,
  s = { hidden: 8, inter: 8, heads: 1, kvHeads: 1, headDim: 8, vocab: 8 },
): OpHarness {
  return new OpHarness(gpu, nodeKernelSource, opShape(s), variants, 64, kernels);
}

const PROJECTION_SHAPES: [number, number][] = [
  [1, 5],
  [3, 20],
  [37, 100],
  [130, 72],
];

describe("projections (qkv, o_proj, lm_head)", () => {
  for (const op of ["matvec", "matmul"] as const) {
    for (const [dtype, f16] of DTYPES) {
      it(`${op}, ${dtype}, every variant, rows and row blocks: norm fused, residual added, last token, split across bindings`, async () => {
        await forEachVariant(op, async (variant) => {
          const h = harness({ [op]: variant });
          for (const [[rows, cols], blocked] of PROJECTION_SHAPES.flatMap((sh) => [false, true].map((b) => [sh, b] as const))) {
            const w = randomMatrix(rows, cols, f16, rows * 7 + cols);
            const stride = padCols(cols);
            const tokenCounts = op === "matvec" ? [1] : [1, 3, 9];
            for (const ntok of tokenCounts) {
              const xs = Array.from({ length: ntok }, (_, t) => randomVector(cols, 100 * t + cols));
              const gain = randomVector(cols, 5, 0.5, 1.5);
              const y0 = Array.from({ length: ntok }, (_, t) => randomVector(rows, 7 + t));
              // A matrix split into parts of at most 2 rows (one row block in that layout) must give
              // the same result as a whole one.
              const rowsPerPart = blocked ? ROW_BLOCK : 2;
              for (const maxBinding of [undefined, rowsPerPart * padCols(cols) * (f16 ? 2 : 4)]) {
                const gw = await h.matrix(w, "W", maxBinding, blocked);
                expect(gw.format).toBe(floatFormat(f16, blocked));
                const x = h.rows(xs, stride);
                const g = h.buffer(gain);
                // The norm with its gain folded into W (as loaded), with the gain applied (a tied lm_head), and a residual add.
                for (const cfg of [
                  { norm: true, gained: false, residual: false },
                  { norm: true, gained: true, residual: false },
                  { norm: false, gained: false, residual: true },
                ]) {
                  const yStride = padCols(rows);
                  const y = h.rows(y0, yStride);
                  h.setState(0, ntok);
                  await h.run(
                    h.ops.project("p", gw, x, y, {
                      batch: op === "matmul",
                      norm: cfg.norm,
                      gain: cfg.gained ? g : undefined,
                      residual: cfg.residual,
                      xStride: stride,
                      yStride,
                    }),
                    ntok,
                  );
                  const got = await h.readRows(y, ntok, yStride, rows);
                  xs.forEach((xt, t) => {
                    const normGain = cfg.gained ? gain : new Float32Array(cols).fill(1);
                    const want = project(w.values, rows, cols, xt, cfg.norm ? normGain : null, EPS).map(
                      (v, r) => v + (cfg.residual ? y0[t][r] : 0),
                    );
                    expect(
                      maxRelErr(got[t], want),
                      `${variant} ${gw.format} ${rows}x${cols} ntok ${ntok} t ${t} ${JSON.stringify(cfg)} parts ${gw.parts.length}`,
                    ).toBeLessThan(TOL);
                  });
                }
              }
            }
          }
          h.destroy();
        });
      });
    }
  }

  it("runs lm_head on a prefill's last position, copied out of the pass's rows", async () => {
    const [rows, cols, ntok] = [37, 20, 5];
    const h = harness({}, { hidden: cols, inter: 8, heads: 1, kvHeads: 1, headDim: 8, vocab: 8 });
    const w = randomMatrix(rows, cols, false, 11);
    const xs = Array.from({ length: ntok }, (_, t) => randomVector(cols, 50 + t));
    const gain = randomVector(cols, 6, 0.5, 1.5);
    const x = h.rows(xs, padCols(cols));
    const last = h.buffer(padCols(cols));
    const y = h.buffer(padCols(rows));
    h.setState(0, ntok);
    const gw = await h.matrix(w);
    await h.run(
      [
        h.ops.lastRow(x, last),
        ...h.ops.project("lm_head", gw, last, y, {
          batch: false,
          norm: true,
          gain: h.buffer(gain),
          xStride: padCols(cols),
          yStride: padCols(rows),
        }),
      ],
      ntok,
    );
    expect(maxRelErr(await h.read(y, rows), project(w.values, rows, cols, xs[ntok - 1], gain, EPS))).toBeLessThan(TOL);
    h.destroy();
  });

  it("splits a matrix of the adapter's whole binding size into parts and gets the same result", async () => {
    const limit = gpu.device.limits.maxStorageBufferBindingSize;
    const cols = 8192;
    const rows = Math.floor(limit / (cols * 4));
    const w = randomMatrix(rows, cols, false, 3, 0.01);
    const x = randomVector(cols, 4);
    const want = project(w.values, rows, cols, x, null, EPS);
    const h = harness({});
    for (const maxBinding of [undefined, Math.ceil(limit / 3)]) {
      const gw = await h.matrix(w, "W", maxBinding);
      expect(gw.parts.length).toBe(maxBinding ? 4 : 1);
      const y = h.buffer(rows);
      h.setState(0, 1);
      await h.run(h.ops.project("p", gw, h.rows([x], cols), y, { batch: false, xStride: cols, yStride: rows }), 1);
      expect(maxRelErr(await h.read(y, rows), want)).toBeLessThan(TOL);
      for (const p of gw.parts) p.buffer.destroy();
    }
    h.destroy();
  }, 120_000);
});

/** float64 gate/up with the CATS mask (the norm's gain folded into W_gate and W_up): act, and how many (neuron, token) pairs stay active. */
function gateUpRef(gate: HostMatrix, up: HostMatrix, xs: Float32Array[], threshold: number) {
  const gain = new Float32Array(gate.cols).fill(1);
  let active = 0;
  const acts = xs.map((x) => {
    const g = project(gate.values, gate.rows, gate.cols, x, gain, EPS);
    const u = project(up.values, up.rows, up.cols, x, gain, EPS);
    return g.map((gi, n) => {
      const a = silu(gi);
      if (threshold >= 0 && Math.abs(a) < threshold) return 0;
      active++;
      return a * u[n];
    });
  });
  const absA = xs.map((x) => project(gate.values, gate.rows, gate.cols, x, gain, EPS).map((g) => Math.abs(silu(g))));
  return { acts, active, absA };
}

describe("the CATS MLP: gate/up with the mask, down over W_down transposed", () => {
  const MLP_SHAPES: [number, number][] = [
    [1, 5],
    [3, 20],
    [37, 100],
    [172, 64],
  ];
  for (const op of ["gate_up_vec", "gate_up_mat"] as const) {
    for (const [dtype, f16] of DTYPES) {
      // One token's gate in row blocks too, as the cpu flavour loads it (up stays in rows: CATS skips them).
      const layouts = op === "gate_up_vec" ? [false, true] : [false];
      it(`${op}, ${dtype}, every variant, gate in ${layouts.length > 1 ? "rows and row blocks" : "rows"}: dense, all, none, one and half of the neurons active, capture, counts`, async () => {
        await forEachVariant(op, async (variant) => {
          for (const [[inter, hidden], blocked] of MLP_SHAPES.flatMap((sh) => layouts.map((b) => [sh, b] as const))) {
            // One token's masked cases run as a CATS step does, through gate_up_cats (the same variants).
            const h = harness(op === "gate_up_vec" ? { gate_up_vec: variant, gate_up_cats: variant } : { [op]: variant }, {
              hidden,
              inter,
              heads: 1,
              kvHeads: 1,
              headDim: 8,
              vocab: 8,
            });
            const gate = randomMatrix(inter, hidden, f16, inter + hidden);
            const up = randomMatrix(inter, hidden, f16, inter * 3 + hidden);
            const stride = padCols(hidden);
            const istride = padCols(inter);
            for (const ntok of op === "gate_up_vec" ? [1] : [1, 3, 9]) {
              const xs = Array.from({ length: ntok }, (_, t) => randomVector(hidden, 31 * t + inter));
              const sorted = gateUpRef(gate, up, xs, -1)
                .absA.flatMap((a) => Array.from(a))
                .sort((a, b) => a - b);
              const cases = thresholdCases(sorted);
              // Split across bindings: parts of 3 rows, or of one row block where gate is in blocks.
              const partBytes = (blocked ? ROW_BLOCK : 3) * stride * (f16 ? 2 : 4);
              const gw = await h.matrix(gate, "gate", partBytes, blocked);
              const uw = await h.matrix(up, "up", partBytes);
              expect(gw.format).toBe(floatFormat(f16, blocked));
              const x = h.rows(xs, stride);
              for (const [what, threshold] of cases) {
                const act = h.buffer((ntok + 8) * istride);
                const totals = h.buffer(new Uint32Array(2));
                const capture = h.buffer((ntok + 8) * istride * 2);
                const steps = h.ops.gateUp("g", gw, uw, x, act, {
                  batch: op === "gate_up_mat",
                  layer: 1,
                  totals,
                  capture,
                  captureOffset: istride,
                  cats: op === "gate_up_vec" && threshold >= 0,
                });
                for (const s of steps) setStepParams(s, { threshold });
                h.setState(0, ntok);
                await h.run(steps, ntok);
                const ref = gateUpRef(gate, up, xs, threshold);
                const got = await h.readRows(act, ntok, istride, inter);
                ref.acts.forEach((want, t) =>
                  expect(maxRelErr(got[t], want), `${variant} ${gw.format} ${inter}x${hidden} ntok ${ntok} ${what} t ${t}`).toBeLessThan(
                    TOL,
                  ),
                );
                const counted = (await h.readU32(totals, 2))[1];
                expect(counted, `${variant} ${what}: active count`).toBe(threshold < 0 ? 0 : ref.active);
                const cap = await h.read(capture, istride + ntok * istride);
                ref.absA.forEach((want, t) =>
                  expect(
                    maxRelErr(cap.slice(istride + t * istride, istride + t * istride + inter), want),
                    `${variant} capture`,
                  ).toBeLessThan(TOL),
                );
              }
            }
            h.destroy();
          }
        });
      });
    }
  }

  it("refuses gate and up split across bindings at different rows, in one line", async () => {
    const [inter, hidden] = [37, 20];
    const h = harness({}, { hidden, inter, heads: 1, kvHeads: 1, headDim: 8, vocab: 8 });
    const gate = await h.matrix(randomMatrix(inter, hidden, true, 1), "gate", 3 * padCols(hidden) * 2);
    const up = await h.matrix(randomMatrix(inter, hidden, true, 2), "up");
    const x = h.rows([randomVector(hidden, 3)], padCols(hidden));
    const opts = { batch: false, layer: 0, totals: h.buffer(new Uint32Array(2)), capture: h.buffer(padCols(inter)), captureOffset: null };
    expect(() => h.ops.gateUp("layer 0 gate_up", gate, up, x, h.buffer(padCols(inter)), opts)).toThrow(
      /^layer 0 gate_up: gate and up are split across bindings at different rows$/,
    );
    h.destroy();
  });

  for (const op of ["down_vec", "down_cats", "down_mat"] as const) {
    for (const [dtype, f16] of DTYPES) {
      it(`${op}, ${dtype}, every variant: x += act W_down over W_down^T in rows and in column slices, zero activations skipped`, async () => {
        await forEachVariant(op, async (variant) => {
          // Parts of 3 neurons each (a matrix split across bindings), and whole, so that a variant's
          // neuron ranges (NS) fall within one part. Column slices (f16s/f32s) of 128 columns: 300
          // columns make two whole slices and a narrower last one.
          for (const [inter, hidden, split, sliced] of [
            ...MLP_SHAPES.map(([i, h]) => [i, h, true, false] as const),
            [100, 13, true, false] as const,
            [100, 13, false, false] as const,
            [37, 300, true, true] as const,
            [50, 300, false, true] as const,
            [172, 64, false, true] as const,
          ]) {
            const h = harness({ [op]: variant }, { hidden, inter, heads: 1, kvHeads: 1, headDim: 8, vocab: 8 });
            const down = randomMatrix(hidden, inter, f16, hidden * 5 + inter);
            const limit = split ? 3 * padCols(hidden) * (f16 ? 2 : 4) : undefined;
            const downT = await h.matrix(transpose(down), "downT", limit, false, sliced);
            const stride = padCols(hidden);
            const istride = padCols(inter);
            for (const ntok of op === "down_mat" ? [1, 3, 9] : [1]) {
              for (const keep of [1, 0, 0.5, 1 / inter]) {
                const acts = Array.from({ length: ntok }, (_, t) =>
                  randomVector(inter, 13 * t + inter).map((v, n) => ((n * 7919 + t) % inter < keep * inter ? v : 0)),
                );
                const x0 = Array.from({ length: ntok }, (_, t) => randomVector(hidden, 17 + t));
                const x = h.rows(x0, stride);
                h.setState(0, ntok);
                await h.run(h.ops.down("d", downT, h.rows(acts, istride), x, { batch: op === "down_mat", cats: op === "down_cats" }), ntok);
                const got = await h.readRows(x, ntok, stride, hidden);
                acts.forEach((a, t) => {
                  const want = project(down.values, hidden, inter, a, null, EPS).map((v, o) => v + x0[t][o]);
                  expect(
                    maxRelErr(got[t], want),
                    `${variant} ${downT.format} ${inter}x${hidden} ntok ${ntok} keep ${keep} t ${t}`,
                  ).toBeLessThan(TOL);
                });
              }
            }
            h.destroy();
          }
        });
      });
    }
  }
});

describe("down_cats walk and touch variants", () => {
  it("read every row of a mostly active range, or a word of each skipped row, and give the very sums of skipping the zero rows, in rows and in column slices", async () => {
    const twins = variantsOf("down_cats").flatMap((v) =>
      /^v\d+w8(p4)?$/.test(v) ? [`${v}walk`, `${v}t`].map((w) => [w, v] as const) : [],
    );
    if (twins.length === 0) return; // walk and touch variants are CPU-driver variants
    const [inter, hidden] = [1000, 140];
    const down = randomMatrix(hidden, inter, true, 5);
    for (const sliced of [false, true]) {
      for (const keep of [0.6, 0.5, 0.3]) {
        const act = randomVector(inter, 9).map((v, n) => (((n * 2654435761) >>> 0) % 1000 < keep * 1000 ? v : 0));
        const x0 = randomVector(hidden, 10);
        const out = new Map<string, Float32Array>();
        for (const v of new Set(twins.flat())) {
          const h = harness({ down_cats: v }, { hidden, inter, heads: 1, kvHeads: 1, headDim: 8, vocab: 8 });
          const x = h.rows([x0], padCols(hidden));
          h.setState(0, 1);
          const downT = await h.matrix(transpose(down), "downT", undefined, false, sliced);
          await h.run(h.ops.down("d", downT, h.rows([act], padCols(inter)), x, { batch: false, cats: true }), 1);
          out.set(v, Float32Array.from((await h.readRows(x, 1, padCols(hidden), hidden))[0]));
          h.destroy();
        }
        for (const [twin, v] of twins) expect([...out.get(twin)!], `${twin} sliced ${sliced} keep ${keep}`).toEqual([...out.get(v)!]);
      }
    }
  });
});

describe("one decode token's o_proj and MLP, fused or split", () => {
  // [hidden, heads, head_dim, inter]: sizes off multiples of 8, stories260K's, and more blocks than lanes.
  const SHAPES: [number, number, number, number][] = [
    [20, 3, 4, 37],
    [64, 8, 8, 172],
    [100, 9, 8, 300],
  ];
  for (const [dtype, f16] of DTYPES) {
    // f16 weights cannot hold the norm's gain, so the kernel applies it (as f16 models load).
    const gained = f16;
    it(`${dtype}, every variant: x += o W_o, then the CATS MLP with its norm (gain ${gained ? "applied" : "folded"}), dense, all, none and half active; o and gate in row blocks at stories260K's shape`, async () => {
      await forEachVariant("o_mlp_vec", async (variant) => {
        for (const [hidden, heads, headDim, inter] of SHAPES) {
          const blocked = hidden === 64;
          const qdim = heads * headDim;
          const h = harness({ o_mlp_vec: variant }, { hidden, inter, heads, kvHeads: heads, headDim, vocab: 8 });
          const gain = gained ? randomVector(hidden, hidden + 7, 0.5, 1.5) : new Float32Array(hidden).fill(1);
          const seed = hidden + inter;
          const [wo, gate, up, down] = [
            randomMatrix(hidden, qdim, f16, seed),
            randomMatrix(inter, hidden, f16, seed + 1),
            randomMatrix(inter, hidden, f16, seed + 2),
            randomMatrix(hidden, inter, f16, seed + 3),
          ];
          const weights = {
            o: await h.matrix(wo, "o", undefined, blocked),
            gate: await h.matrix(gate, "gate", undefined, blocked),
            up: await h.matrix(up, "up"),
            downT: await h.matrix(transpose(down), "downT"),
            mlpGain: gained ? h.buffer(gain) : null,
          };
          const o = randomVector(qdim, seed + 4);
          const x0 = randomVector(hidden, seed + 5);
          // float64: x1 = x0 + o W_o, then the MLP on rmsnorm(x1) (unit gain: folded into the weights).
          const x1 = project(wo.values, hidden, qdim, o, null, EPS).map((v, i) => v + x0[i]);
          const g = project(gate.values, inter, hidden, x1, gain, EPS);
          const u = project(up.values, inter, hidden, x1, gain, EPS);
          const sorted = Array.from(g, (v) => Math.abs(silu(v))).sort((a, b) => a - b);
          const half = (sorted[(inter >> 1) - 1] + sorted[inter >> 1]) / 2;
          // A CATS step list's fused kernel (cats) has the masked path; a dense list's has none.
          for (const [what, threshold, cats] of [
            ["dense", -1, false],
            ["dense, the CATS step's kernel", -1, true],
            ["all", 0, true],
            ["none", sorted[inter - 1] * 2 + 1, true],
            ["half", half, true],
          ] as [string, number, boolean][]) {
            const act = Array.from(g, (gi, n) => (threshold >= 0 && Math.abs(silu(gi)) < threshold ? 0 : silu(gi) * u[n]));
            const want = project(down.values, hidden, inter, act, null, EPS).map((v, i) => v + x1[i]);
            const x = h.rows([x0], padCols(hidden));
            const totals = h.buffer(new Uint32Array(2));
            const steps = h.ops.oMlp(
              (op) => op,
              weights,
              { o: h.rows([o], padCols(qdim)), x, act: h.buffer(padCols(inter) * 2) },
              {
                batch: false,
                cats,
                layer: 1,
                totals,
                capture: h.buffer(4),
                captureOffset: null,
              },
            );
            expect(steps.length, `${variant}: dispatches`).toBe(variant === "split" ? 3 : 1);
            for (const s of steps) if (s.gateOfLayer !== undefined) setStepParams(s, { threshold });
            h.setState(0, 1);
            await h.run(steps, 1);
            const [got] = await h.readRows(x, 1, padCols(hidden), hidden);
            expect(maxRelErr(got, want), `${variant} ${hidden}/${qdim}/${inter} ${what}`).toBeLessThan(TOL);
            const active = act.filter((_, n) => threshold < 0 || Math.abs(silu(g[n])) >= threshold).length;
            expect((await h.readU32(totals, 2))[1], `${variant} ${what}: active count`).toBe(threshold < 0 ? 0 : active);
          }
          h.destroy();
        }
      });
    });
  }
});

describe("attention: RoPE, the KV cache, grouped-query heads", () => {
  for (const [heads, kvHeads, headDim] of [
    [4, 2, 8],
    [3, 3, 16],
    [8, 1, 8],
    [2, 1, 40],
  ]) {
    it(`${heads} heads over ${kvHeads} kv heads, head_dim ${headDim}: batched passes, then decode steps at cache lengths 1 to 34, every variant`, async () => {
      const shape = { hidden: 8, inter: 8, heads, kvHeads, headDim, vocab: 8 };
      const s = opShape(shape);
      const qkvWidth = (heads + 2 * kvHeads) * headDim;
      const kvStride = kvHeads * headDim;
      // Each decode variant with a batched one, in turn, so that every variant of both runs.
      const batched = variantsOf("attention_mat");
      for (const [i, variant] of variantsOf("attention_vec").entries()) {
        const h = harness({ attention_vec: variant, attention_mat: batched[i % batched.length] }, shape);
        const context = 40;
        const k = h.buffer(context * kvStride);
        const v = h.buffer(context * kvStride);
        const q = h.buffer(12 * s.qStride);
        const o = h.buffer(12 * s.qStride);
        const rows = Array.from({ length: 34 }, (_, p) => randomVector(qkvWidth, 1000 + p));
        const head = (row: Float32Array, i: number) => row.slice(i * headDim, (i + 1) * headDim);
        const keys = rows.map((r, p) => Array.from({ length: kvHeads }, (_, j) => rope(head(r, heads + j), p)));
        const values = rows.map((r) => Array.from({ length: kvHeads }, (_, j) => head(r, heads + kvHeads + j)));
        const want = (p: number, hd: number) =>
          attend(
            rope(head(rows[p], hd), p),
            keys.slice(0, p + 1).map((kk) => kk[Math.floor(hd / (heads / kvHeads))]),
            values.slice(0, p + 1).map((vv) => vv[Math.floor(hd / (heads / kvHeads))]),
          );
        // Positions 0..16 in two batched passes (5 tokens, then 12: workgroups of 8 lanes, the last
        // part full), the rest one decode step at a time.
        for (const [pos, n] of [
          [0, 5],
          [5, 12],
        ]) {
          const qkv = h.rows(rows.slice(pos, pos + n), s.qkvStride);
          h.setState(pos, n);
          await h.run([h.ops.ropeKv("rope", qkv, q, k, v), h.ops.attention("attention", q, k, v, o)], n);
          const got = await h.readRows(o, n, s.qStride, heads * headDim);
          for (let t = 0; t < n; t++) {
            for (let hd = 0; hd < heads; hd++)
              expect(
                maxRelErr(got[t].slice(hd * headDim, (hd + 1) * headDim), want(pos + t, hd)),
                `${batched[i % batched.length]} batched pos ${pos + t} head ${hd}`,
              ).toBeLessThan(TOL);
          }
        }
        for (let pos = 17; pos < 34; pos++) {
          const qkv = h.rows([rows[pos]], s.qkvStride);
          h.setState(pos, 1);
          await h.run([h.ops.attentionDecode("attention", qkv, k, v, o)], 1);
          const [got] = await h.readRows(o, 1, s.qStride, heads * headDim);
          for (let hd = 0; hd < heads; hd++)
            expect(
              maxRelErr(got.slice(hd * headDim, (hd + 1) * headDim), want(pos, hd)),
              `${variant} decode pos ${pos} head ${hd}`,
            ).toBeLessThan(TOL);
        }
        h.destroy();
      }
    });
  }
});

describe("one decode token's qkv projection and attention, fused or split", () => {
  // Each case compiles its variants anew (head_dim and group are constants): every variant runs on one
  // case per dtype, the other cases run the split pair and one fused variant of each attention kind.
  const SOME = ["split", "fused4w8", "fused4w8s", "fused4w8p", "fused_sg4", "fused_wg"];
  // The last column: W_qkv in row blocks (f32b/f16b), as the cpu flavour loads it.
  for (const [dtype, f16, heads, kvHeads, headDim, hidden, gained, every, blocked] of [
    ["f32", false, 4, 2, 8, 20, false, true, false],
    ["f32", false, 3, 3, 16, 37, true, false, true],
    ["f16", true, 8, 1, 8, 64, true, true, false],
    ["f16", true, 4, 2, 8, 20, false, false, true],
    // A 7B head: the GPU variants' 64 lanes must still fit the workgroup storage limit.
    ["f16", true, 2, 1, 128, 24, false, false, false],
  ] as const) {
    it(`${dtype}${blocked ? " in row blocks" : ""}, ${heads} heads over ${kvHeads} kv heads, head_dim ${headDim}, hidden ${hidden}, gain ${gained ? "applied" : "folded"}: decode steps at cache lengths 1 to 8, ${every ? "every variant" : "a variant of each kind"}`, async () => {
      const shape = { hidden, inter: 8, heads, kvHeads, headDim, vocab: 8 };
      const s = opShape(shape);
      const qkvRows = (heads + 2 * kvHeads) * headDim;
      const w = randomMatrix(qkvRows, hidden, f16, qkvRows + hidden);
      const gain = randomVector(hidden, 3, 0.5, 1.5);
      const xs = Array.from({ length: 8 }, (_, p) => randomVector(hidden, 500 + p));
      for (const variant of variantsOf("qkv_attention_vec").filter((v) => every || SOME.includes(v))) {
        const h = harness({ qkv_attention_vec: variant }, shape);
        const gw = await h.matrix(w, "qkv", undefined, blocked);
        const k = h.buffer(40 * kvHeads * headDim);
        const v = h.buffer(40 * kvHeads * headDim);
        const qkv = h.buffer(s.qkvStride);
        const o = h.buffer(s.qStride);
        const reference = new DecodeAttention(heads, kvHeads, headDim);
        for (let pos = 0; pos < xs.length; pos++) {
          const row = project(w.values, qkvRows, hidden, xs[pos], gained ? gain : new Float32Array(hidden).fill(1), EPS);
          const want = reference.step(row);
          h.setState(pos, 1);
          const steps = h.ops.qkvAttention((op) => op, gw, h.rows([xs[pos]], s.hiddenStride), {
            gain: gained ? h.buffer(gain) : null,
            qkv,
            k,
            v,
            out: o,
          });
          expect(steps.length, variant).toBe(variant === "split" ? 2 : 1);
          await h.run(steps, 1);
          const [got] = await h.readRows(o, 1, s.qStride, heads * headDim);
          for (let hd = 0; hd < heads; hd++) {
            expect(maxRelErr(got.slice(hd * headDim, (hd + 1) * headDim), want[hd]), `${variant} pos ${pos} head ${hd}`).toBeLessThan(TOL);
          }
        }
        h.destroy();
      }
    });
  }
});

describe("one decode token's whole layer, fused or split", () => {
  // [dtype, heads, kv heads, head_dim, hidden, inter]: sizes off multiples of 8, stories260K's, and a
  // head_dim of 16, whose RoPE pairs lie in different blocks of 8.
  // The last column: qkv, o and gate in row blocks, as the cpu flavour loads them.
  for (const [dtype, f16, heads, kvHeads, headDim, hidden, inter, blocked] of [
    ["f32", false, 4, 2, 8, 20, 37, true],
    ["f16", true, 8, 4, 8, 64, 172, true],
    ["f32", false, 2, 1, 16, 24, 30, false],
  ] as const) {
    it(`${dtype}${blocked ? " (qkv, o, gate in row blocks)" : ""}, ${heads} heads over ${kvHeads}, head_dim ${headDim}, hidden ${hidden}, inter ${inter}, every variant: decode steps at cache lengths 1 to 6, dense and half active`, async () => {
      const qdim = heads * headDim;
      const qkvRows = (heads + 2 * kvHeads) * headDim;
      const seed = hidden + inter + headDim;
      const [wqkv, wo, gate, up, down] = [
        randomMatrix(qkvRows, hidden, f16, seed),
        randomMatrix(hidden, qdim, f16, seed + 1),
        randomMatrix(inter, hidden, f16, seed + 2),
        randomMatrix(inter, hidden, f16, seed + 3),
        randomMatrix(hidden, inter, f16, seed + 4),
      ];
      // f16 weights cannot hold the norms' gains, so the kernel applies them (as f16 models load).
      const [qkvGain, mlpGain] = [1, 2].map((k) =>
        f16 ? randomVector(hidden, seed + 20 + k, 0.5, 1.5) : new Float32Array(hidden).fill(1),
      );
      const xs = Array.from({ length: 6 }, (_, p) => randomVector(hidden, seed + 10 + p));
      await forEachVariant("layer_vec", async (variant) => {
        const shape = { hidden, inter, heads, kvHeads, headDim, vocab: 8 };
        const s = opShape(shape);
        const h = harness({ layer_vec: variant }, shape);
        const w = {
          qkv: await h.matrix(wqkv, "qkv", undefined, blocked),
          qkvGain: f16 ? h.buffer(qkvGain) : null,
          o: await h.matrix(wo, "o", undefined, blocked),
          gate: await h.matrix(gate, "gate", undefined, blocked),
          up: await h.matrix(up, "up"),
          downT: await h.matrix(transpose(down), "downT"),
          mlpGain: f16 ? h.buffer(mlpGain) : null,
          k: h.buffer(8 * kvHeads * headDim),
          v: h.buffer(8 * kvHeads * headDim),
        };
        const reference = new DecodeAttention(heads, kvHeads, headDim);
        for (let pos = 0; pos < xs.length; pos++) {
          // float64: attention on rmsnorm(x) W_qkv, then x += o W_o and the MLP with the CATS mask.
          const o64 = reference.step(project(wqkv.values, qkvRows, hidden, xs[pos], qkvGain, EPS)).flatMap((head) => Array.from(head));
          const x1 = project(wo.values, hidden, qdim, o64, null, EPS).map((v, i) => v + xs[pos][i]);
          const g = project(gate.values, inter, hidden, x1, mlpGain, EPS);
          const u = project(up.values, inter, hidden, x1, mlpGain, EPS);
          const sorted = Array.from(g, (v) => Math.abs(silu(v))).sort((a, b) => a - b);
          const threshold = pos % 2 === 0 ? -1 : (sorted[(inter >> 1) - 1] + sorted[inter >> 1]) / 2;
          const act = Array.from(g, (gi, n) => (threshold >= 0 && Math.abs(silu(gi)) < threshold ? 0 : silu(gi) * u[n]));
          const want = project(down.values, hidden, inter, act, null, EPS).map((v, i) => v + x1[i]);

          const x = h.rows([xs[pos]], s.hiddenStride);
          const totals = h.buffer(new Uint32Array(2));
          const o = h.buffer(s.qStride);
          const cats = threshold >= 0;
          const fused = h.ops.fusedLayer("layer", w, { o, x }, { layer: 1, totals, cats });
          expect(fused === null, `${variant}: fused`).toBe(variant === "split");
          const steps = fused
            ? [fused]
            : [
                ...h.ops.qkvAttention((op) => op, w.qkv, x, { gain: w.qkvGain, qkv: h.buffer(s.qkvStride), k: w.k, v: w.v, out: o }),
                ...h.ops.oMlp(
                  (op) => op,
                  w,
                  { o, x, act: h.buffer(s.interStride) },
                  { batch: false, cats, layer: 1, totals, capture: h.buffer(4), captureOffset: null },
                ),
              ];
          for (const step of steps) if (step.gateOfLayer !== undefined) setStepParams(step, { threshold });
          h.setState(pos, 1);
          await h.run(steps, 1);
          const [got] = await h.readRows(x, 1, s.hiddenStride, hidden);
          expect(maxRelErr(got, want), `${variant} pos ${pos}`).toBeLessThan(TOL);
          const active = threshold < 0 ? 0 : act.filter((_, n) => Math.abs(silu(g[n])) >= threshold).length;
          expect((await h.readU32(totals, 2))[1], `${variant} pos ${pos}: active count`).toBe(active);
        }
        h.destroy();
      });
    });
  }
});

describe("embedding, argmax, NLL", () => {
  for (const [[dtype, f16], blocked] of DTYPES.flatMap((d) => [false, true].map((b) => [d, b] as const))) {
    it(`embeds token rows from a table split across bindings (${dtype}${blocked ? ", row blocks" : ""})`, async () => {
      const h = harness({}, { hidden: 20, inter: 8, heads: 1, kvHeads: 1, headDim: 8, vocab: 37 });
      const table = randomMatrix(37, 20, f16, 77);
      const tokens = [0, 36, 5, 17, 36];
      // Parts of 5 rows, or of one row block (a tied lm_head's table is in blocks).
      const gw = await h.matrix(table, "embed", (blocked ? ROW_BLOCK : 5) * padCols(20) * (f16 ? 2 : 4), blocked);
      expect(gw.format).toBe(floatFormat(f16, blocked));
      expect(gw.parts.length).toBe(blocked ? 2 : 8);
      const x = h.buffer(8 * padCols(20));
      h.setState(0, tokens.length);
      await h.run(h.ops.embed(gw, h.buffer(new Uint32Array(tokens)), x), tokens.length);
      const got = await h.readRows(x, tokens.length, padCols(20), 20);
      tokens.forEach((id, t) => expect(Array.from(got[t])).toEqual(Array.from(table.values.slice(id * 20, id * 20 + 20))));
      h.destroy();
    });
  }

  it("picks the greedy token on the GPU, ties to the lower id, and advances the decode state (every variant)", async () => {
    for (const variant of variantsOf("argmax")) {
      const vocab = 301;
      const h = harness({ argmax: variant }, { hidden: 8, inter: 8, heads: 1, kvHeads: 1, headDim: 8, vocab });
      const logits = randomVector(vocab, 3);
      logits[123] = 5;
      logits[250] = 5;
      const tokens = h.buffer(8);
      const outIds = h.buffer(8);
      h.setState(10, 3, 2);
      await h.run([h.ops.argmax(h.buffer(logits), tokens, outIds)], 3);
      expect((await h.readU32(tokens, 1))[0], variant).toBe(123);
      expect((await h.readU32(outIds, 4))[2]).toBe(123);
      expect(Array.from(await h.readU32(h.state, 3))).toEqual([13, 1, 3]);
      h.destroy();
    }
  });

  it("computes each token's negative log-likelihood on the GPU", async () => {
    const vocab = 77;
    const h = harness({}, { hidden: 8, inter: 8, heads: 1, kvHeads: 1, headDim: 8, vocab });
    const stride = padCols(vocab);
    const rows = Array.from({ length: 5 }, (_, t) => randomVector(vocab, 40 + t, -8, 8));
    const targets = [0, 76, 3, 40, 40];
    const nll = h.buffer(8);
    h.setState(0, 5);
    await h.run([h.ops.nll(h.rows(rows, stride), stride, h.buffer(new Uint32Array(targets)), nll)], 5);
    const got = await h.read(nll, 5);
    rows.forEach((r, t) => {
      const m = Math.max(...r);
      const lse = m + Math.log(r.reduce((a, v) => a + Math.exp(v - m), 0));
      expect(Math.abs(got[t] - (lse - r[targets[t]]))).toBeLessThan(1e-5);
    });
    h.destroy();
  });
});

describe("kernels bound by name", () => {
  it("declare //#weights8u matrices as uniform arrays of their _VEC4S size, and refuse quantized ones naming the kernel", () => {
    const consts = {
      OB: 1,
      HB: 1,
      IB: 1,
      OM: 1,
      HM: 1,
      IM: 1,
      UW: true,
      GAIN_MLP: false,
      WO_VEC4S: 16,
      WGATE_VEC4S: 32,
      WUP_VEC4S: 32,
      WDOWN_VEC4S: 32,
    };
    const floats = { WO: "f32", WGATE: "f16", WUP: "f16", WDOWN: "f16" } as const;
    const code = composeKernel(nodeKernelSource, { file: "o_mlp", weights: floats, consts });
    expect(code).toMatch(/var<uniform> WO: array<vec4<f32>, WO_VEC4S>;/);
    expect(code).toMatch(/var<uniform> WGATE: array<vec4<u32>, WGATE_VEC4S>;/);
    expect(() => composeKernel(nodeKernelSource, { file: "o_mlp", weights: { ...floats, WUP: "q4g128" }, consts })).toThrow(
      "kernel o_mlp: weight format q4g128: uniform-array weights are f32 or f16",
    );
  });

  it("refuse a misspelled binding, a missing one, an unknown or mistyped param, naming the kernel", async () => {
    const kernel = new KernelCache(gpu, nodeKernelSource).get({ file: "nll" });
    const b = gpu.device.createBuffer({ size: 64, usage: GPUBufferUsage.STORAGE });
    const args = { params: { vocab: 4, stride: 8 }, state: b, logits: b, targets: b, nll: b };
    expect(() => kernel.bind(args)).not.toThrow();
    expect(() => kernel.bind({ ...args, logitz: b })).toThrow(
      /kernel nll: has no binding "logitz" \(bindings: state, logits, targets, nll\)/,
    );
    const { nll: _, ...missing } = args;
    expect(() => kernel.bind(missing)).toThrow(/kernel nll: binding "nll" is not given/);
    expect(() => kernel.bind({ ...args, params: { vocab: 4, strid: 8 } })).toThrow(
      /kernel nll: params have no field "strid" \(fields: vocab, stride\)/,
    );
    expect(() => kernel.bind({ ...args, params: { vocab: 4 } })).toThrow(/kernel nll: param "stride" \(u32\) is not given/);
    expect(() => kernel.bind({ ...args, params: { vocab: -1, stride: 8 } })).toThrow(/kernel nll: param "vocab": expected u32, got -1/);
    expect(() =>
      new KernelCache(gpu, nodeKernelSource).get({
        file: "matmul",
        weights: { W: "f32", Q: "f16" },
        consts: { SUBGROUP: false, WORKGROUP: false, WG: 64, R: 1, TM: 1, XU: false, XS: false, W8: false, XN: 1, GAIN: false },
      }),
    ).toThrow(/kernel matmul: declares no weight matrix "Q" \(it has W\)/);
    b.destroy();
  });
});
