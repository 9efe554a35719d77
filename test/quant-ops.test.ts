/**
 * The quantized kernels: projections, the CATS gate/up and the down projection over q8 and q4
 * codes, in the variants this adapter runs (CPU- and GPU-flavour alike; see variantsOf), against
 * float64 computed here on the dequantized weights with the same mask. Awkward sizes: one row,
 * columns that fill neither a block of 8 nor a group, groups cut short at the end of a row or of
 * the neurons.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OpHarness, opShape, randomQuantMatrix, randomVector, type QuantKind } from "../harness/ops.js";
import { createGpu, type GpuContext } from "../src/gpu/device.js";
import { nodeKernelSource } from "../src/gpu/nodekernels.js";
import { KernelCache } from "../src/gpu/kernel.js";
import { VariantTable, type OpName } from "../src/gpu/variants.js";
import { padCols } from "../src/engine/weights.js";
import { ROW_BLOCK } from "../src/gpu/wgsl.js";
import { setStepParams } from "../src/engine/ops.js";
import { DecodeAttention, maxRelErr, project, silu, thresholdCases } from "./ops-reference.js";

let gpu: GpuContext;
let kernels: KernelCache;
beforeAll(async () => {
  gpu = await createGpu();
  kernels = new KernelCache(gpu, nodeKernelSource);
});
afterAll(() => gpu.destroy());

const EPS = 1e-5;
const TOL = 2e-5;
// Every batched tile variant of the quantized gate/up kernel compiles in about 100 s on 2 cores when
// Mesa's shader cache is cold (after any kernel change, or on a fresh machine); warm, 1-2 s.
const COLD_COMPILE_MS = 300_000;
const KINDS: [string, QuantKind][] = [
  ["q8 per-row sym", { bits: 8, group: null, sym: true }],
  ["q4 g32 asym", { bits: 4, group: 32, sym: false }],
  ["q4 g16 sym", { bits: 4, group: 16, sym: true }],
];
/** Batched variants share the loaders with the one-token ones: one kind, with groups cut short, keeps the suite's time. */
const kindsFor = (op: OpName): [string, QuantKind][] => (op.endsWith("_mat") || op === "matmul" ? [KINDS[1]] : KINDS);
// 100 columns: a partial last group at g32 (3 x 32 + 4), padding past the last block, 37 rows a per-row
// W_down^T group that is not whole quads of neurons; one row and 5 columns: a single short group; 48
// columns: per-row q8 groups of whole 16-code chunks, which one-token products read in place (QFAST).
const SHAPES: [number, number][] = [
  [1, 5],
  [37, 100],
  [9, 48],
];

/**
 * Row blocks change where rows lie, not how lanes share them: each kind runs them in its CPU,
 * shared-input and GPU variant (variantsOf(op, kind, false)), keeping compile time down.
 */
const blocksFor = (op: OpName, kind: string, variant: string): boolean[] =>
  variantsOf(op, kind, false).includes(variant) ? [false, true] : [false];

/**
 * The variants differ in how lanes share rows, which is independent of the quantization: q4 g32 asym
 * (asymmetric, a partial last group) runs every variant, each other kind one CPU, one shared-input
 * (where the adapter has subgroups of 8) and one GPU variant, different ones per kind. Compiling every variant for every kind doubled the suite's
 * time on a cold shader cache.
 */
const which = (kind: string): string => (kind === KINDS[1][0] ? "every variant" : "a CPU, a shared-input and a GPU variant");
const walkVariants = (): string[] =>
  new VariantTable(gpu)
    .candidates("down_cats")
    .map((v) => v.name)
    .filter((name) => name.endsWith("walk") || /^v(2w8|8w8p4)t$/.test(name));
const variantsOf = (op: OpName, kind: string, every = true): string[] => {
  const all = new VariantTable(gpu).candidates(op);
  const k = KINDS.findIndex(([name]) => name === kind);
  if (kind === KINDS[1][0] && every) return all.map((v) => v.name);
  const pick = (of: typeof all) => (of.length > 0 ? [of[k % of.length].name] : []);
  const suiting = (suits: string) => all.filter((v) => v.suits === suits || v.suits === "any");
  // A shared-input variant too: at 8 bits it reads two chunks' inputs per round, at 4 bits one.
  const shared = pick(all.filter((v) => v.consts.XS === true));
  return [...new Set([...pick(suiting("cpu")), ...shared, ...pick(suiting("gpu"))])];
};
const harness = (variants: Partial<Record<OpName, string>>, hidden: number, inter: number): OpHarness =>
  new OpHarness(gpu, nodeKernelSource, opShape({ hidden, inter, heads: 1, kvHeads: 1, headDim: 8, vocab: 8 }), variants, 64, kernels);

describe("quantized projections", () => {
  for (const op of ["matvec", "matmul"] as const) {
    for (const [kind, q] of kindsFor(op)) {
      it(`${op}, ${kind}, ${which(kind)}, three of them in row blocks too: the norm's gain applied as x is read, split by rows`, async () => {
        for (const variant of variantsOf(op, kind)) {
          for (const [[rows, cols], blocked] of SHAPES.flatMap((sh) => blocksFor(op, kind, variant).map((b) => [sh, b] as const))) {
            const h = harness({ [op]: variant }, cols, 8);
            const w = randomQuantMatrix(rows, cols, q, rows * 7 + cols);
            const stride = padCols(cols);
            for (const ntok of op === "matvec" ? [1] : [1, 3, 9]) {
              const xs = Array.from({ length: ntok }, (_, t) => randomVector(cols, 100 * t + cols));
              const gain = randomVector(cols, 5, 0.5, 1.5);
              // Split into parts of 2 rows, or of one row block (32 rows) in that layout.
              const rowBytes = h.quantRows(w.quant, "W one part").parts[0].buffer.size / rows;
              for (const maxBinding of [undefined, (blocked ? ROW_BLOCK : 2) * rowBytes]) {
                const gw = h.quantRows(w.quant, "W", maxBinding, blocked);
                expect(gw.format.includes("bg"), gw.format).toBe(blocked);
                const yStride = padCols(rows);
                const y = h.rows([new Float32Array(rows)], yStride);
                h.setState(0, ntok);
                const x = h.rows(xs, stride);
                const steps = h.ops.project("p", gw, x, y, {
                  batch: op === "matmul",
                  norm: true,
                  gain: h.buffer(gain),
                  xStride: stride,
                  yStride,
                });
                await h.run(steps, ntok);
                const got = await h.readRows(y, ntok, yStride, rows);
                xs.forEach((xt, t) =>
                  expect(
                    maxRelErr(got[t], project(w.values, rows, cols, xt, gain, EPS)),
                    `${variant} ${gw.format} ${rows}x${cols} ntok ${ntok} t ${t} parts ${gw.parts.length}`,
                  ).toBeLessThan(TOL),
                );
              }
            }
            h.destroy();
          }
        }
      });
    }
  }
});

describe("the CATS MLP over quantized rows", () => {
  for (const op of ["gate_up_vec", "gate_up_mat"] as const) {
    for (const [kind, q] of kindsFor(op)) {
      // One token's gate in row blocks too, as the cpu flavour loads it (up stays in rows: CATS skips them).
      const layouts = op === "gate_up_vec" ? [false, true] : [false];
      it(
        `${op}, ${kind}, ${which(kind)}, gate in rows${layouts.length > 1 ? " (and row blocks in three variants)" : ""}: dense, all, none, one and half of the neurons active`,
        { timeout: COLD_COMPILE_MS },
        async () => {
          for (const variant of variantsOf(op, kind)) {
            for (const [[inter, hidden], blocked] of SHAPES.flatMap((sh) =>
              (layouts.length > 1 ? blocksFor(op, kind, variant) : layouts).map((b) => [sh, b] as const),
            )) {
              // One token's masked cases run as a CATS step does, through gate_up_cats (the same variants).
              const h = harness(op === "gate_up_vec" ? { gate_up_vec: variant, gate_up_cats: variant } : { [op]: variant }, hidden, inter);
              const gate = randomQuantMatrix(inter, hidden, q, inter + hidden);
              const up = randomQuantMatrix(inter, hidden, q, inter * 3 + hidden);
              const gain = randomVector(hidden, 9, 0.5, 1.5);
              const stride = padCols(hidden);
              const istride = padCols(inter);
              for (const ntok of op === "gate_up_vec" ? [1] : [1, 3]) {
                const xs = Array.from({ length: ntok }, (_, t) => randomVector(hidden, 31 * t + inter));
                const g = xs.map((x) => project(gate.values, inter, hidden, x, gain, EPS).map(silu));
                const u = xs.map((x) => project(up.values, inter, hidden, x, gain, EPS));
                const sorted = g.flatMap((a) => Array.from(a, Math.abs)).sort((a, b) => a - b);
                const cases = thresholdCases(sorted);
                const gw = h.quantRows(gate.quant, "gate", undefined, blocked);
                const uw = h.quantRows(up.quant, "up");
                const x = h.rows(xs, stride);
                for (const [what, threshold] of cases) {
                  const act = h.buffer((ntok + 8) * istride);
                  const steps = h.ops.gateUp("g", gw, uw, x, act, {
                    batch: op === "gate_up_mat",
                    layer: 0,
                    totals: h.buffer(new Uint32Array(2)),
                    capture: h.buffer(4),
                    captureOffset: null,
                    gain: h.buffer(gain),
                    cats: op === "gate_up_vec" && threshold >= 0,
                  });
                  for (const s of steps) setStepParams(s, { threshold });
                  h.setState(0, ntok);
                  await h.run(steps, ntok);
                  const got = await h.readRows(act, ntok, istride, inter);
                  g.forEach((gt, t) => {
                    const want = gt.map((a, i) => (threshold >= 0 && Math.abs(a) < threshold ? 0 : a * u[t][i]));
                    expect(maxRelErr(got[t], want), `${variant} ${inter}x${hidden} ntok ${ntok} ${what} t ${t}`).toBeLessThan(TOL);
                  });
                }
              }
              h.destroy();
            }
          }
        },
      );
    }
  }

  for (const op of ["down_vec", "down_cats", "down_mat"] as const) {
    // down_cats adds variants that read every row where most neurons are active: each of them too.
    const extra = (kind: string) =>
      op === "down_mat" ? [] : ["v4w8p4", ...(op === "down_cats" ? (variantsOf(op, kind).length > 0 ? walkVariants() : []) : [])];
    for (const [kind, q] of kindsFor(op)) {
      it(`${op}, ${kind}, ${which(kind)}${op === "down_mat" ? "" : op === "down_cats" ? ", v4w8p4 and the walk and touch variants" : " and v4w8p4"}: groups down the neurons, in rows and in column slices, zero activations skipped`, async () => {
        // A walk in neuron ranges too, whose ranges start and end inside groups (one group of all the neurons for per-row q8).
        // Column slices (q{bits}sg{G}) of 128 columns: 300 columns make two whole slices and a narrower last one.
        const cases: [number, number, boolean][] = [
          ...SHAPES.map(([i, h]): [number, number, boolean] => [i, h, false]),
          [100, 13, false],
          [37, 300, true],
          [100, 13, true],
        ];
        for (const variant of new Set([...variantsOf(op, kind), ...extra(kind)])) {
          for (const [inter, hidden, sliced] of cases) {
            const h = harness({ [op]: variant }, hidden, inter);
            // W_down [hidden, inter]: its groups run along the neurons, down W_down^T's rows.
            const down = randomQuantMatrix(hidden, inter, q, hidden * 5 + inter);
            const downT = h.quantTransposed(down.quant, "downT", sliced);
            const stride = padCols(hidden);
            const istride = padCols(inter);
            for (const ntok of op === "down_mat" ? [1, 3] : [1]) {
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
        }
      });
    }
  }
});

describe("one decode token's qkv projection and attention over quantized rows", () => {
  it("q4 g32 asym in row blocks, 4 heads over 2 kv heads, head_dim 8, hidden 100: every qkv_attention variant, the gain applied as x is read", async () => {
    const [heads, kvHeads, headDim, hidden] = [4, 2, 8, 100];
    const rows = (heads + 2 * kvHeads) * headDim;
    const w = randomQuantMatrix(rows, hidden, KINDS[1][1], 77);
    const gain = randomVector(hidden, 9, 0.5, 1.5);
    const xs = Array.from({ length: 6 }, (_, p) => randomVector(hidden, 300 + p));
    const s = opShape({ hidden, inter: 8, heads, kvHeads, headDim, vocab: 8 });
    for (const variant of new VariantTable(gpu).candidates("qkv_attention_vec").map((v) => v.name)) {
      const h = new OpHarness(gpu, nodeKernelSource, s, { qkv_attention_vec: variant }, 64, kernels);
      // W_qkv's 64 rows in two row blocks, as the cpu flavour loads a large one.
      const gw = h.quantRows(w.quant, "W", undefined, true);
      expect(gw.format).toBe("q4bg32");
      const [k, v] = [h.buffer(16 * kvHeads * headDim), h.buffer(16 * kvHeads * headDim)];
      const o = h.buffer(s.qStride);
      const reference = new DecodeAttention(heads, kvHeads, headDim);
      for (let pos = 0; pos < xs.length; pos++) {
        const row = project(w.values, rows, hidden, xs[pos], gain, EPS);
        const want = reference.step(row);
        h.setState(pos, 1);
        const x = h.rows([xs[pos]], s.hiddenStride);
        await h.run(
          h.ops.qkvAttention((op) => op, gw, x, { gain: h.buffer(gain), qkv: h.buffer(s.qkvStride), k, v, out: o }),
          1,
        );
        const [got] = await h.readRows(o, 1, s.qStride, heads * headDim);
        for (let hd = 0; hd < heads; hd++) {
          expect(maxRelErr(got.slice(hd * headDim, (hd + 1) * headDim), want[hd]), `${variant} pos ${pos} head ${hd}`).toBeLessThan(TOL);
        }
      }
      h.destroy();
    }
  });
});
