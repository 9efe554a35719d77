/**
 * `npm run bench:kernels`: the decode kernels against the adapter's read ceiling. First the
 * ceiling (a pure streaming read), then every kernel's effective GB/s as a share of it, each timed
 * right after the ceiling in every round (medians of the per-round ratios): matrix-vector products
 * (f32, f16, the same in row blocks f32b / f16b, and quantized q8 per-row / q4 g128) at real
 * shapes, and the MLP block dense and CATS-sparse at 0/50/70/90%, f16 or quantized (W_gate in row
 * blocks where the engine would load it so on this adapter). Each matrix-vector case runs the variant that
 * measures fastest for it (as `cats` tunes a model's shapes) unless --variant forces one.
 * With --mlp-parts each MLP case is also timed as its gate/up step alone and its down step alone
 * (each down right after a gate/up at its own threshold, which left the activations it reads).
 *   node dist/bench/kernels.js [--rounds R] [--shapes ...] [--formats f32,f16,f32b,f16b,q8,q4] [--mlp ...] [--mlp-format f16|q8|q4]
 *                              [--mlp-parts] [--variant op=name,...] [--json]
 */
import { Command } from "commander";
import { OpHarness, opShape, randomMatrix, randomQuantMatrix, randomVector, transpose, type QuantKind } from "../harness/ops.js";
import { positiveInt } from "../src/cli/args.js";
import { createGpu } from "../src/gpu/device.js";
import { KernelCache } from "../src/gpu/kernel.js";
import { nodeKernelSource } from "../src/gpu/nodekernels.js";
import { PairedTimer, readCeiling, type PairedResult, type Timed } from "../src/gpu/roofline.js";
import { parseOverrides, VariantTable } from "../src/gpu/variants.js";
import { scratchBuffer, tune, type TuneCase } from "../src/gpu/autotune.js";
import { encodeSteps, gateUpShape, matrixShape, Ops, setStepParams, type Step } from "../src/engine/ops.js";
import { padCols, type GpuMatrix } from "../src/engine/weights.js";
import { quantileOfSorted } from "../src/cats/quantiles.js";
import { DECODE_ROUNDS } from "../src/engine/tuning.js";
import { rowBlocksFrom } from "../src/engine/llama.js";
import { downSlicesFrom } from "../src/engine/load.js";

const opts = new Command("bench-kernels")
  .option("--rounds <r>", "paired rounds per table", positiveInt, 9)
  .option("--shapes <list>", "matrix-vector shapes, rows x cols", "768x768,768x2048,4096x4096,4096x11008,32000x768")
  .option(
    "--formats <list>",
    "matrix-vector weight formats: f32, f16, q8 (per row), q4 (groups of 128), each in row blocks with a b (f16b, q4b)",
    "f32,f16,f32b,f16b",
  )
  .option("--mlp <list>", "MLP shapes, hidden x inter", "768x2048,4096x11008")
  .option("--mlp-format <format>", "MLP weight format: f16, q8 or q4", "f16")
  .option("--mlp-parts", "also time each MLP case's gate/up and down steps on their own")
  .option("--variant <list>", "force kernel variants, op=name,...")
  .option("--json", "print JSON")
  .parse()
  .opts<{
    rounds: number;
    shapes: string;
    formats: string;
    mlp: string;
    mlpFormat: string;
    mlpParts?: boolean;
    variant?: string;
    json?: boolean;
  }>();

/** The quantizations `--formats` and `--mlp-format` name: what `cats quantize` writes by default. */
const QUANT: Record<string, QuantKind> = { q8: { bits: 8, group: null, sym: true }, q4: { bits: 4, group: 128, sym: true } };
for (const f of [...opts.formats.split(","), opts.mlpFormat]) {
  if (!["f32", "f16", ...Object.keys(QUANT)].includes(f.replace(/b$/, "")) || (f.endsWith("b") && f === opts.mlpFormat)) {
    console.error(
      `cats: bench:kernels: format "${f}": expected f32, f16, q8 or q4${f === opts.mlpFormat ? "" : ", or one of them in row blocks (f16b, q4b)"}`,
    );
    process.exit(2);
  }
}

/** Enough copies of a matrix that cycling through them reads well past any CPU cache. */
const COPY_BYTES = 192 << 20;
/** A comma-separated list of ROWSxCOLS shapes; an empty list skips that table. */
function shapeList(flag: string, list: string): [number, number][] {
  return list
    .split(",")
    .filter((s) => s.trim() !== "")
    .map((s) => {
      const m = /^\s*(\d+)x(\d+)\s*$/.exec(s);
      if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) {
        console.error(`cats: bench:kernels: ${flag} "${s}": expected shapes like 4096x4096, comma-separated (or "" for none)`);
        process.exit(2);
      }
      return [Number(m[1]), Number(m[2])];
    });
}
const mvShapes = shapeList("--shapes", opts.shapes);
const mlpShapes = shapeList("--mlp", opts.mlp);

const gpu = await createGpu();
const kernels = new KernelCache(gpu, nodeKernelSource);
const overrides = parseOverrides(opts.variant);
const ceiling = await readCeiling(gpu, kernels);
const timer = new PairedTimer(gpu);

interface Row extends PairedResult {
  kernel: string;
  active: number;
  speedup?: number;
}
const rows: Row[] = [];

for (const [R, C] of mvShapes) {
  for (const format of opts.formats.split(",")) {
    const f16 = format.startsWith("f16");
    const blocked = format.endsWith("b");
    const h = new OpHarness(
      gpu,
      nodeKernelSource,
      opShape({ hidden: C, inter: 8, heads: 1, kvHeads: 1, headDim: 8, vocab: 8 }),
      overrides,
      8,
      kernels,
    );
    const q = QUANT[format.replace(/b$/, "")];
    const w = q ? randomQuantMatrix(R, C, q, R + C) : randomMatrix(R, C, f16, R + C, 1 / Math.sqrt(C));
    const upload = async () =>
      w.quant ? h.quantRows(w.quant, "weights", undefined, blocked) : await h.matrix(w, "weights", undefined, blocked);
    const first = await upload();
    // Bytes as stored: codes with their scales and offsets for quantized formats.
    const bytes = first.bytes;
    const copies: GpuMatrix[] = [first];
    for (let i = 1; i < Math.max(1, Math.min(16, Math.ceil(COPY_BYTES / bytes))); i++) copies.push(await upload());
    const x = h.rows([randomVector(C, 1)], padCols(C));
    const y = h.buffer(padCols(R) * 2);
    h.setState(0, 1);
    const project = (table: VariantTable, m: GpuMatrix) =>
      new Ops(gpu, kernels, table, { state: h.state, rope: h.rope }, h.shape).project("matvec", m, x, y, {
        batch: false,
        xStride: padCols(C),
        yStride: padCols(R),
      });
    const key = matrixShape(first);
    const tuned = overrides.matvec
      ? {}
      : await tune(
          gpu,
          [{ op: "matvec", shape: key, bytes, build: (table) => (pass) => encodeSteps(pass, project(table, first), 1) }],
          {},
          DECODE_ROUNDS,
        );
    const table = new VariantTable(gpu, overrides, tuned);
    const steps = copies.map((m) => project(table, m));
    const timed: Timed = {
      name: `matvec ${R}x${C} ${format}`,
      bytes,
      encode: (pass, i) => encodeSteps(pass, steps[i % steps.length], 1),
    };
    const { cases } = await timer.paired(ceiling.timed, [timed], opts.rounds);
    const chosen = table.choice("matvec", key);
    rows.push({ ...cases[0], kernel: `matvec (${chosen.variant.name}${chosen.source === "autotune" ? ", measured" : ""})`, active: 1 });
    h.destroy();
  }
}

for (const [H, I] of mlpShapes) {
  const h = new OpHarness(
    gpu,
    nodeKernelSource,
    opShape({ hidden: H, inter: I, heads: 1, kvHeads: 1, headDim: 8, vocab: 8 }),
    overrides,
    8,
    kernels,
  );
  const q = QUANT[opts.mlpFormat];
  const f16 = opts.mlpFormat === "f16";
  const matrix = (rows: number, cols: number, seed: number, scale: number) =>
    q ? randomQuantMatrix(rows, cols, q, seed) : randomMatrix(rows, cols, f16, seed, scale);
  const gate = matrix(I, H, 1, Math.sqrt(3 / H));
  const up = matrix(I, H, 2, Math.sqrt(3 / H));
  const down = matrix(H, I, 3, Math.sqrt(3 / I));
  // Laid out as the engine stores them (loadWeights, UpLayout "both"): gate in row blocks, W_up in
  // row blocks for the dense steps and row after row for the CATS ones, W_down^T in column slices,
  // where those apply.
  const slicesFrom = downSlicesFrom(rowBlocksFrom(gpu));
  const blocked = (q ? (I * H * q.bits) / 8 : gate.stored.byteLength) >= rowBlocksFrom(gpu);
  const [g, u, uDense, d] =
    gate.quant && up.quant && down.quant
      ? [
          h.quantRows(gate.quant, "gate", undefined, blocked),
          h.quantRows(up.quant),
          blocked ? h.quantRows(up.quant, "up", undefined, true) : null,
          h.quantTransposed(down.quant, "downT", (I * H * down.quant.bits) / 8 >= slicesFrom),
        ]
      : [
          await h.matrix(gate, "gate", undefined, blocked),
          await h.matrix(up),
          blocked ? await h.matrix(up, "up", undefined, true) : null,
          await h.matrix(transpose(down), "downT", undefined, false, down.stored.byteLength >= slicesFrom),
        ];
  const upOf = (cats: boolean) => (cats ? u : (uDense ?? u));
  const xv = randomVector(H, 4);
  const x = h.rows([xv], padCols(H));
  const act = h.buffer(2 * padCols(I));
  const totals = h.buffer(new Uint32Array(4));
  // Thresholds at exact quantiles of this input's |silu(gate)|, so the active fraction is exact.
  const scale = 1 / Math.sqrt(xv.reduce((a, v) => a + v * v, 0) / H + 1e-5);
  const absActs = Array.from({ length: I }, (_, n) => {
    let s = 0;
    for (let k = 0; k < H; k++) s += gate.values[n * H + k] * xv[k];
    const a = s * scale;
    return Math.abs(a / (1 + Math.exp(-a)));
  }).sort((a, b) => a - b);
  const capture = h.buffer(4);
  const ops = (table: VariantTable) => new Ops(gpu, kernels, table, { state: h.state, rope: h.rope }, h.shape);
  const gateUp = (table: VariantTable, cats = false) =>
    ops(table).gateUp("gate_up", g, upOf(cats), x, act, { batch: false, layer: 0, totals, capture, captureOffset: null, cats });
  // The CATS gate/up pass is tuned at half the neurons active, as `cats` tunes it between 50% and 70%.
  const halfThreshold = quantileOfSorted(absActs, 0.5);
  const gateUpHalf = (table: VariantTable) => {
    const steps = gateUp(table, true);
    for (const st of steps) setStepParams(st, { threshold: halfThreshold });
    return steps;
  };
  const downProject = (table: VariantTable, input = act, cats = false) => ops(table).down("down", d, input, x, { batch: false, cats });
  const halfActive = scratchBuffer(gpu, 2 * padCols(I), "half-active act", 0.5);
  h.setState(0, 1);
  // Each half runs the variant that measures fastest for its shape, as `cats` tunes a model: the
  // down projection on a dense input for the dense row, on a half-active one for the sparse rows;
  // the dense gate_up pass that tunes first leaves every activation nonzero for the dense down's,
  // and the CATS one tunes after it.
  const shapeOf = (op: "gate_up_vec" | "gate_up_cats" | "down_vec" | "down_cats") =>
    op === "gate_up_vec" ? gateUpShape(g, upOf(false)) : op === "gate_up_cats" ? gateUpShape(g, upOf(true)) : matrixShape(d);
  const tuneCase = (
    op: "gate_up_vec" | "gate_up_cats" | "down_vec" | "down_cats",
    shape: string,
    bytes: number,
    build: (t: VariantTable) => Step[],
  ): TuneCase[] =>
    overrides[op]
      ? []
      : [
          {
            op,
            shape,
            bytes,
            build: (table) => {
              const built = build(table);
              return (pass) => encodeSteps(pass, built, 1);
            },
          },
        ];
  const tuned = await tune(
    gpu,
    [
      ...tuneCase("gate_up_vec", shapeOf("gate_up_vec"), g.bytes + u.bytes, (t) => gateUp(t)),
      ...tuneCase("down_vec", shapeOf("down_vec"), d.bytes, (t) => downProject(t)),
      ...tuneCase("gate_up_cats", shapeOf("gate_up_cats"), g.bytes + u.bytes / 2, gateUpHalf),
      ...tuneCase("down_cats", shapeOf("down_cats"), d.bytes / 2, (t) => downProject(t, halfActive, true)),
    ],
    {},
    DECODE_ROUNDS,
  );
  const table = new VariantTable(gpu, overrides, tuned);
  const denseSteps = [...gateUp(table), ...downProject(table)];
  const catsSteps = [...gateUp(table, true), ...downProject(table, act, true)];
  const chosen = (op: "gate_up_vec" | "gate_up_cats" | "down_vec" | "down_cats") => {
    const c = table.choice(op, shapeOf(op));
    return `${c.variant.name}${c.source === "autotune" ? ", measured" : ""}`;
  };
  // Bytes per neuron row as stored (W_gate, W_up and W_down^T rows are the same size in every format but the scales of W_down^T's groups).
  const rowBytes = (m: GpuMatrix) => m.bytes / m.rows;
  const cases: { label: string; threshold: number; active: number }[] = [{ label: "dense", threshold: -1, active: 1 }];
  for (const level of [0, 0.5, 0.7, 0.9]) {
    const threshold = level === 0 ? 0 : quantileOfSorted(absActs, level);
    cases.push({ label: `sparse ${level * 100}%`, threshold, active: absActs.filter((a) => a >= threshold).length / I });
  }
  // As the engine does, the dense row runs the dense steps and the CATS rows (threshold >= 0) the CATS ones.
  const gateUpSteps = gateUp(table);
  const gateUpCatsSteps = catsSteps.slice(0, gateUpSteps.length);
  const parts = {
    mlp: { steps: (c: { threshold: number }) => (c.threshold < 0 ? denseSteps : catsSteps), gate: true, up: true, down: true },
    gate_up: { steps: (c: { threshold: number }) => (c.threshold < 0 ? gateUpSteps : gateUpCatsSteps), gate: true, up: true, down: false },
    down: {
      steps: (c: { threshold: number }) => (c.threshold < 0 ? denseSteps : catsSteps).slice(gateUpSteps.length),
      gate: false,
      up: false,
      down: true,
    },
  };
  const partNames: (keyof typeof parts)[] = opts.mlpParts ? ["mlp", "gate_up", "down"] : ["mlp"];
  // In case order, so that each down-only case follows a gate/up at its own threshold.
  const timedCases = cases.flatMap((c) => partNames.map((part) => ({ ...c, part })));
  const timed = timedCases.map((c): Timed => {
    const p = parts[c.part];
    const steps = p.steps(c);
    return {
      name: `${c.part} ${H}x${I} ${opts.mlpFormat} ${c.label}`,
      bytes: (p.gate ? I * rowBytes(g) : 0) + Math.round(c.active * I) * ((p.up ? rowBytes(u) : 0) + (p.down ? rowBytes(d) : 0)),
      encode: (pass) => encodeSteps(pass, steps, 1),
    };
  });
  // The threshold is a uniform the steps read; set it before each timing, inside the paired rounds,
  // on the CATS steps (a down-only case reads the activations their gate/up step left); the dense
  // steps keep the -1 they were built with.
  const withThreshold = timed.map((t, i) => ({
    ...t,
    encode: (pass: GPUComputePassEncoder, call: number) => {
      if (call === 0)
        for (const st of catsSteps) if (st.gateOfLayer !== undefined) setStepParams(st, { threshold: timedCases[i].threshold });
      t.encode(pass, call);
    },
  }));
  const result = await timer.paired(ceiling.timed, withThreshold, opts.rounds);
  // Paired with the dense row of the same part and round (both timed within a few tens of
  // milliseconds): the median of the per-round ratios, not a ratio of medians from different spells.
  result.cases.forEach((r, i) => {
    const c = timedCases[i];
    const dense = result.cases[partNames.indexOf(c.part)].roundMs;
    const [gateUpOp, downOp] = c.threshold < 0 ? (["gate_up_vec", "down_vec"] as const) : (["gate_up_cats", "down_cats"] as const);
    const variant =
      c.part === "gate_up" ? chosen(gateUpOp) : c.part === "down" ? chosen(downOp) : `${chosen(gateUpOp)} + ${chosen(downOp)}`;
    rows.push({
      ...r,
      kernel: `${c.part} (${variant})`,
      active: c.active,
      speedup: quantileOfSorted(
        r.roundMs.map((ms, round) => dense[round] / ms).sort((a, b) => a - b),
        0.5,
      ),
    });
  });
  halfActive.destroy();
  h.destroy();
}

const a = gpu.adapter;
if (opts.json) {
  console.log(JSON.stringify({ adapter: a, ceiling: { gb_per_s: ceiling.gbPerS, kernel: ceiling.shape }, rows }, null, 1));
} else {
  const f = (v: number, d: number) => v.toFixed(d);
  console.log(
    `Decode kernels on ${a.description || a.device || a.vendor}; read ceiling ${f(ceiling.gbPerS, 2)} GB/s (${ceiling.shape}); medians of ${opts.rounds} paired rounds`,
  );
  console.log("| kernel | case | active | ms/call | MB/call | GB/s | share of ceiling (p25-p75) | speed-up vs dense (paired by round) |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const share = `${f(r.share.median * 100, 0)}% (${f(r.share.p25 * 100, 0)}-${f(r.share.p75 * 100, 0)}%)`;
    console.log(
      `| ${r.kernel} | ${r.name} | ${f(r.active, 2)} | ${f(r.ms, 3)} | ${f(r.bytes / 1e6, 2)} | ${f(r.gbPerS, 2)} | ${share} | ${r.speedup ? f(r.speedup, 2) : ""} |`,
    );
  }
}
ceiling.destroy();
timer.destroy();
gpu.destroy();
process.exit(0);
