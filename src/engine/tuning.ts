import type { TuneCase } from "../gpu/autotune.js";
import { scratchBuffer } from "../gpu/autotune.js";
import type { GpuContext } from "../gpu/device.js";
import { Usage } from "../gpu/flags.js";
import type { KernelCache } from "../gpu/kernel.js";
import { VariantTable } from "../gpu/variants.js";
import { Submitter } from "../gpu/submit.js";
import { quantileOfSorted } from "../cats/quantiles.js";
import type { LayerWeights, ModelWeights } from "./forward.js";
import {
  attentionShape,
  encodeSteps,
  layerFits,
  layerShape,
  gateUpShape,
  matrixShape,
  oMlpFits,
  oMlpShape,
  Ops,
  setStepParams,
  type Step,
} from "./ops.js";
import type { LlamaConfig } from "../model/config.js";
import { opShapeOf } from "./llama.js";
import type { GpuMatrix } from "./weights.js";

/** Paired rounds of the one-token (decode) cases; batched cases take tune()'s default. */
export const DECODE_ROUNDS = 5;

/**
 * Paired rounds of the `down_cats` case: its leaders (skipping, or reading every row at half active)
 * differ by a few percent, and at 5 rounds three tunings in a row on one host picked three variants.
 */
const CATS_DOWN_ROUNDS = 15;

/** Shares of neurons a CATS mask keeps in the `gate_up_cats` and `down_cats` tuning cases: the 50% and 70% levels. */
const CATS_TUNE_ACTIVE = [0.5, 0.3];

/**
 * The one-token down projection cases read W_down^T matrices of at least this many bytes in turn
 * (the layers', then zeroed copies of them), where the model's weights are larger: a decode step
 * streams W_down^T from memory once the model outgrows the caches, and which variant is fastest
 * depends on it (llama-110m at q4: twelve 0.8 MB matrices sit in a 32 MB L3 when called in turn,
 * where a token's other weights evict them; skipped rows are cheap from cache and dear from memory).
 */
const DOWN_STREAM_BYTES = 96 << 20;

/** Tokens of the batched pass the `_mat` variants are tuned on. */
const BATCH_TOKENS = 64;

/**
 * Tokens a batched case of a `rows x cols` matrix is tuned on: 64 up to llama-110m's qkv projection,
 * fewer (at least 8, a tile of the widest variant) for larger matrices, so that a call stays about
 * that size: at 7B shapes 64-token calls took tuning past ten minutes on a CPU driver.
 */
function batchTokensFor(rows: number, cols: number): number {
  const fit = Math.floor((BATCH_TOKENS * 2304 * 768) / (rows * cols));
  return Math.max(8, Math.min(BATCH_TOKENS, 2 ** Math.floor(Math.log2(Math.max(1, fit)))));
}

/**
 * Per layer, the thresholds at which `input` leaves each of CATS_TUNE_ACTIVE of the neurons active:
 * the quantiles of |silu(gate)| that one dense gate/up pass per layer captures.
 */
async function gateThresholds(
  ops: Ops,
  gpu: GpuContext,
  m: ModelWeights,
  input: GPUBuffer,
  stride: number,
  scratch: Scratch,
): Promise<number[][]> {
  const inter = m.layers[0].gate.rows;
  const capture = scratch(m.layers.length * stride, "tune capture |silu(gate)|");
  const act = scratch(stride, "tune capture act");
  const totals = scratch(64, "tune capture totals");
  const steps = m.layers.flatMap((l, i) =>
    ops.gateUp("tune capture", l.gate, l.up, input, act, {
      batch: false,
      layer: 0,
      totals,
      capture,
      captureOffset: i * stride,
      gain: l.mlpGain,
    }),
  );
  const submitter = new Submitter(gpu);
  try {
    const [bytes] = await submitter.run(
      "measuring the CATS gate/up pass",
      (encoder) => {
        const pass = encoder.beginComputePass();
        encodeSteps(pass, steps, 1);
        pass.end();
      },
      [{ buffer: capture, bytes: m.layers.length * stride * 4 }],
    );
    const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    return m.layers.map((_, i) => {
      const sorted = all.slice(i * stride, i * stride + inter).sort();
      return CATS_TUNE_ACTIVE.map((active) => quantileOfSorted(sorted, 1 - active));
    });
  } finally {
    submitter.destroy();
  }
}

type Scratch = (floats: number, label: string) => GPUBuffer;

/**
 * Encodes call `call` of a CATS case from its steps per level and layer: each call the next layer's,
 * the level moving on with every round of the layers, so that calls alternate between both.
 */
function byLevelAndLayer(built: Step[][][]): (pass: GPUComputePassEncoder, call: number) => void {
  const L = built[0].length;
  return (pass, call) => encodeSteps(pass, built[(call + Math.floor(call / L)) % built.length][call % L], 1);
}

/**
 * What autotuning measures for a model: every op with variants at every matrix shape the model
 * has, one token (decode) and a batch (prefill, evaluation, calibration), on the model's own
 * weights and on scratch inputs that are never zero. With `catsGate`, also the decode gate/up
 * pass under CATS thresholds, which a dense pass over the scratch input measures first. Returns
 * the cases and a cleanup.
 */
export async function modelTuneCases(
  gpu: GpuContext,
  kernels: KernelCache,
  m: ModelWeights,
  config: LlamaConfig,
  contextLength: number,
  catsGate = false,
): Promise<{ cases: TuneCase[]; destroy: () => void }> {
  const made: GPUBuffer[] = [];
  const scratch: Scratch = (floats, label) => {
    const b = scratchBuffer(gpu, floats, label);
    made.push(b);
    return b;
  };
  const rows = BATCH_TOKENS + 8;
  const shape = opShapeOf(config, rows);
  const widest = Math.max(shape.hiddenStride, shape.interStride, shape.qkvStride, shape.qStride);
  // A uniform-array input is bound at any tile's row with a whole window after it.
  const input = scratch(rows * widest + 16384, "tune input");
  // CATS masks at the two levels runs use most (50% and 70% sparsity), a mask of its own for each
  // layer, as a token's layers have: the same one in every call is a pattern the branch predictor
  // may learn.
  const masks = CATS_TUNE_ACTIVE.map((active) =>
    m.layers.map((_, i) => scratchBuffer(gpu, shape.interStride + 16384, `tune ${active * 100}%-active input`, active, i)),
  );
  made.push(...masks.flat());
  const output = scratch(rows * Math.max(widest, m.lmHead.cols4 * 4, m.lmHead.rows + 8), "tune output");
  const totals = scratch(64, "tune totals");
  const capture = scratch(16, "tune capture");
  const state = (ntok: number) => {
    const b = scratch(4, `tune state ${ntok}`);
    gpu.device.queue.writeBuffer(b, 0, new Uint32Array([0, ntok, 0, 0]));
    return b;
  };
  const states = new Map<number, GPUBuffer>();
  const stateFor = (ntok: number) => {
    if (!states.has(ntok)) states.set(ntok, state(ntok));
    return states.get(ntok)!;
  };
  const rope = scratch(contextLength * shape.headDim, "tune rope");
  // The down projection's matrices for the one-token cases (DOWN_STREAM_BYTES).
  const modelBytes =
    (m.lmHead === m.embed ? 0 : m.embed.bytes) +
    m.lmHead.bytes +
    m.layers.reduce((a, l) => a + l.qkv.bytes + l.o.bytes + l.gate.bytes + l.up.bytes + l.downT.bytes, 0);
  const streamed = m.layers.map((l) => l.downT);
  for (let i = 0; streamed.reduce((a, d) => a + d.bytes, 0) < Math.min(DOWN_STREAM_BYTES, modelBytes); i++) {
    const d = m.layers[i % m.layers.length].downT;
    const parts = d.parts.map((p) => {
      const buffer = gpu.device.createBuffer({ label: "tune W_down^T copy", size: p.buffer.size, usage: Usage.STORAGE });
      made.push(buffer);
      return { ...p, buffer };
    });
    streamed.push({ ...d, parts });
  }
  let thresholds: number[][] | null = null;
  try {
    if (catsGate) {
      const ops = new Ops(gpu, kernels, new VariantTable(gpu), { state: stateFor(1), rope }, shape);
      thresholds = await gateThresholds(ops, gpu, m, input, shape.interStride, scratch);
    }
  } catch (e) {
    made.forEach((b) => b.destroy());
    throw e;
  }
  const cases: TuneCase[] = [];
  // A call reads the next layer's matrices, as a token's steps do: one layer's alone may sit in the
  // caches when called again and again (llama-110m's W_down^T is 3 MB, the L3 of this kind of host
  // 32 MB), and the choice for matrices read from cache is not the choice for matrices streamed.
  const add = (
    op: TuneCase["op"],
    w: GpuMatrix,
    bytes: number,
    ntok: number,
    steps: (ops: Ops, l: LayerWeights, i: number) => Step[],
    key = matrixShape(w),
  ) => {
    if (cases.some((c) => c.op === op && c.shape === key)) return;
    cases.push({
      op,
      shape: key,
      bytes,
      build: (table: VariantTable) => {
        const ops = new Ops(gpu, kernels, table, { state: stateFor(ntok), rope }, shape);
        const built = m.layers.map((l, i) => steps(ops, l, i));
        return (pass, call) => encodeSteps(pass, built[call % built.length], ntok);
      },
    });
  };
  const layer = m.layers[0];
  for (const batch of [false, true]) {
    const tokens = (w: GpuMatrix) => (batch ? batchTokensFor(w.rows, w.cols) : 1);
    // Each with the norm gain the forward pass applies as it reads the input (where the weights cannot hold it).
    for (const [w, gain] of [
      [(l: LayerWeights) => l.qkv, (l: LayerWeights) => l.qkvGain],
      [(l: LayerWeights) => l.o, () => null],
    ] as const) {
      const xStride = w(layer) === layer.o ? shape.qStride : shape.hiddenStride;
      add(batch ? "matmul" : "matvec", w(layer), w(layer).bytes, tokens(w(layer)), (ops, l) =>
        ops.project("tune", w(l), input, output, { batch, norm: true, gain: gain(l), xStride, yStride: w(l).rows + 8 }),
      );
    }
    add(batch ? "matmul" : "matvec", m.lmHead, m.lmHead.bytes, tokens(m.lmHead), (ops) =>
      ops.project("tune", m.lmHead, input, output, {
        batch,
        norm: true,
        gain: m.lmHeadGain,
        xStride: shape.hiddenStride,
        yStride: m.lmHead.rows + 8,
      }),
    );
    // A CATS step reads its own copy of W_up where there is one (UpLayout "both").
    const gateUp = (ops: Ops, l: LayerWeights, cats = false) =>
      ops.gateUp("tune", l.gate, Ops.upFor(l, cats), input, output, {
        batch,
        layer: 0,
        totals,
        capture,
        captureOffset: null,
        gain: l.mlpGain,
        cats,
      });
    add(
      batch ? "gate_up_mat" : "gate_up_vec",
      layer.gate,
      layer.gate.bytes + layer.up.bytes,
      tokens(layer.gate),
      (ops, l) => gateUp(ops, l),
      gateUpShape(layer.gate, layer.up),
    );
    // The CATS step's gate/up pass, tuned apart from the dense one (see gate_up_cats in
    // variants.ts), at both levels in turn and each call a different layer's, as down_cats below.
    if (!batch && thresholds) {
      const active = CATS_TUNE_ACTIVE.reduce((a, b) => a + b) / CATS_TUNE_ACTIVE.length;
      cases.push({
        op: "gate_up_cats",
        shape: gateUpShape(layer.gate, layer.upCats ?? layer.up),
        bytes: layer.gate.bytes + layer.up.bytes * active,
        build: (table: VariantTable) => {
          const ops = new Ops(gpu, kernels, table, { state: stateFor(1), rope }, shape);
          const built = CATS_TUNE_ACTIVE.map((_, level) =>
            m.layers.map((l, i) => {
              const steps = gateUp(ops, l, true);
              for (const st of steps) setStepParams(st, { threshold: thresholds[i][level] });
              return steps;
            }),
          );
          return byLevelAndLayer(built);
        },
      });
    }
    if (batch) {
      add("down_mat", layer.downT, layer.downT.bytes, tokens(layer.downT), (ops, l) => ops.down("tune", l.downT, input, output, { batch }));
    } else {
      cases.push({
        op: "down_vec",
        shape: matrixShape(layer.downT),
        bytes: layer.downT.bytes,
        build: (table: VariantTable) => {
          const ops = new Ops(gpu, kernels, table, { state: stateFor(1), rope }, shape);
          const built = streamed.map((d) => ops.down("tune", d, input, output, { batch }));
          return (pass, call) => encodeSteps(pass, built[call % built.length], 1);
        },
      });
    }
    // A CATS step's down projection, tuned apart from the dense one: which variant reads scattered
    // rows fastest is not the dense choice on CPU drivers, nor the same at every level (see down_cats
    // in variants.ts). Calls alternate between the levels' masks, each call a different layer's
    // matrix than the last, so that the choice is the fastest over both levels together.
    if (!batch) {
      const key = matrixShape(layer.downT);
      const active = CATS_TUNE_ACTIVE.reduce((a, b) => a + b) / CATS_TUNE_ACTIVE.length;
      cases.push({
        op: "down_cats",
        shape: key,
        bytes: layer.downT.bytes * active,
        build: (table: VariantTable) => {
          const ops = new Ops(gpu, kernels, table, { state: stateFor(1), rope }, shape);
          const built = masks.map((level) =>
            streamed.map((d, i) => ops.down("tune", d, level[i % level.length], output, { batch, cats: true })),
          );
          return byLevelAndLayer(built);
        },
      });
    }
  }
  // Decode attention at a mid-length context, in layer 0's cache (a decode step rewrites each row before it reads it).
  const position = Math.min(128, contextLength - 1);
  const attentionState = scratch(4, "tune attention state");
  gpu.device.queue.writeBuffer(attentionState, 0, new Uint32Array([position, 1, 0, 0]));
  cases.push({
    op: "attention_vec",
    shape: attentionShape(shape),
    bytes: 2 * (position + 1) * shape.kvHeads * shape.headDim * 4,
    build: (table: VariantTable) => {
      const steps = [
        new Ops(gpu, kernels, table, { state: attentionState, rope }, shape).attentionDecode("tune", input, layer.k, layer.v, output),
      ];
      return (pass) => encodeSteps(pass, steps, 1);
    },
  });
  // Batched attention: a tile of tokens after a stretch of context, as prefill and calibration windows have.
  const batchPosition = Math.max(0, Math.min(256, contextLength - BATCH_TOKENS));
  const batchTokens = Math.min(BATCH_TOKENS, contextLength - batchPosition);
  const batchState = scratch(4, "tune batched attention state");
  gpu.device.queue.writeBuffer(batchState, 0, new Uint32Array([batchPosition, batchTokens, 0, 0]));
  cases.push({
    op: "attention_mat",
    shape: attentionShape(shape),
    bytes: 2 * (batchPosition + batchTokens) * shape.kvHeads * shape.headDim * 4,
    build: (table: VariantTable) => {
      const steps = [new Ops(gpu, kernels, table, { state: batchState, rope }, shape).attention("tune", input, layer.k, layer.v, output)];
      return (pass) => encodeSteps(pass, steps, batchTokens);
    },
  });
  // The decode step's qkv projection and attention, as two dispatches (each with its choice measured
  // above) or one: tuned last, so the split variant runs what would otherwise run.
  const attentionOut = scratch(shape.qStride, "tune attention output");
  cases.push({
    op: "qkv_attention_vec",
    shape: matrixShape(layer.qkv),
    bytes: layer.qkv.bytes + 2 * (position + 1) * shape.kvHeads * shape.headDim * 4,
    build: (table: VariantTable) => {
      const ops = new Ops(gpu, kernels, table, { state: attentionState, rope }, shape);
      const steps = ops.qkvAttention((op) => `tune ${op}`, layer.qkv, input, {
        gain: layer.qkvGain,
        qkv: output,
        k: layer.k,
        v: layer.v,
        out: attentionOut,
      });
      return (pass) => encodeSteps(pass, steps, 1);
    },
  });
  // The decode step's o_proj and MLP: three dispatches (each with its choice measured above) or one.
  if (oMlpFits(layer, shape)) {
    const x = scratch(shape.hiddenStride, "tune o_mlp x");
    const act = scratch(shape.interStride, "tune o_mlp act");
    cases.push({
      op: "o_mlp_vec",
      shape: oMlpShape(layer),
      bytes: layer.o.bytes + layer.gate.bytes + layer.up.bytes + layer.downT.bytes,
      build: (table: VariantTable) => {
        const ops = new Ops(gpu, kernels, table, { state: stateFor(1), rope }, shape);
        const steps = ops.oMlp(
          (op) => `tune ${op}`,
          layer,
          { o: input, x, act },
          { batch: false, layer: 0, totals, capture, captureOffset: null },
        );
        return (pass) => encodeSteps(pass, steps, 1);
      },
    });
  }
  // The whole decode layer: the dispatches measured above (their choices standing), or one.
  if (layerFits(layer, shape)) {
    const x = scratch(shape.hiddenStride, "tune layer x");
    const o = scratch(shape.qStride, "tune layer o");
    const qkv = scratch(shape.qkvStride, "tune layer qkv");
    const act = scratch(shape.interStride, "tune layer act");
    cases.push({
      op: "layer_vec",
      shape: layerShape(layer),
      bytes: layer.qkv.bytes + layer.o.bytes + layer.gate.bytes + layer.up.bytes + layer.downT.bytes,
      build: (table: VariantTable) => {
        const ops = new Ops(gpu, kernels, table, { state: attentionState, rope }, shape);
        const at = (op: string) => `tune ${op}`;
        const fused = ops.fusedLayer(at("layer"), layer, { o, x }, { layer: 0, totals });
        const steps = fused
          ? [fused]
          : [
              ...ops.qkvAttention(at, layer.qkv, x, { gain: layer.qkvGain, qkv, k: layer.k, v: layer.v, out: o }),
              ...ops.oMlp(at, layer, { o, x, act }, { batch: false, layer: 0, totals, capture, captureOffset: null }),
            ];
        return (pass) => encodeSteps(pass, steps, 1);
      },
    });
  }
  // Decode calls are short and set every token's speed: more rounds, so that one slow spell cannot
  // choose for them (at llama-110m's lm_head the tuner once kept rows4w8, 9.2 ms at best against
  // rows4w8s's 7.3 in a later 5-round comparison).
  for (const c of cases) if (c.op === "matvec" || c.op.endsWith("_vec") || c.op === "gate_up_cats") c.rounds = DECODE_ROUNDS;
  for (const c of cases) if (c.op === "down_cats") c.rounds = CATS_DOWN_ROUNDS;
  return { cases, destroy: () => made.forEach((b) => b.destroy()) };
}
