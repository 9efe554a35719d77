import { CatsError } from "../errors.js";
import type { GpuContext, KernelFlavour } from "./device.js";

/**
 * Every op with more than one kernel variant. `_vec` ops serve one token (decode, and the last
 * token of a prefill); `_mat` ops serve batched passes (prefill, evaluation, calibration);
 * `gate_up_cats` and `down_cats` are the decode MLP's two steps where CATS masks it.
 */
export const OPS = [
  "matvec",
  "matmul",
  "gate_up_vec",
  "gate_up_cats",
  "gate_up_mat",
  "down_vec",
  "down_cats",
  "down_mat",
  "attention_vec",
  "attention_mat",
  "qkv_attention_vec",
  "o_mlp_vec",
  "layer_vec",
  "argmax",
] as const;
export type OpName = (typeof OPS)[number];

/**
 * One way to run an op: the WGSL constants that select it (see kernels/lanes.wgsl for the lanes
 * variants) and the adapter features it needs. All variants of an op compute the same thing and
 * are all tested; only their speed differs by adapter.
 */
export interface Variant {
  name: string;
  consts: Record<string, number | boolean>;
  requires?: Requirement[];
  /** The adapters whose autotuning measures it: row-per-invocation variants suit CPU drivers, split-K ones GPUs. */
  suits: KernelFlavour | "any";
}

/**
 * What a variant needs of the adapter: a WebGPU feature, or subgroups that are always 8 lanes
 * (kernels that pass values between the lanes of an 8-lane workgroup with subgroup shuffles).
 */
export type Requirement = "subgroups" | "subgroups of 8";

/** vec4s of an input a one-token kernel may read as a uniform array (kernels/input.wgsl): 64 KiB, WebGPU's default limit. */
export const UNIFORM_INPUT_VEC4S = 4096;

/**
 * Lanes variants (kernels/lanes.wgsl). Row variants read their input as a uniform array (XU,
 * kernels/input.wgsl), a tile of TM tokens per dispatch: all lanes read the same element, which a
 * uniform buffer serves best; split-K lanes read different elements, which it would serialise on GPUs.
 * Shared row variants (XS) read it from storage once per 8-lane subgroup and pass it round with
 * shuffles, all tiles in one dispatch.
 */
const lanes = (kind: "rows" | "shared" | "sg" | "wg", r: number, tm: number, wg = 64): Record<string, number | boolean> => ({
  SUBGROUP: kind === "sg",
  WORKGROUP: kind === "wg",
  ROWS: kind === "rows" || kind === "shared",
  WG: wg,
  R: r,
  TM: tm,
  XU: kind === "rows",
  XS: kind === "shared",
  W8: kind === "rows" || kind === "shared",
  XN: UNIFORM_INPUT_VEC4S,
});

/** Rows variants whose 8-lane subgroups read the input once between them (XS, kernels/project1.wgsl). */
const SHARED: Pick<Variant, "requires" | "suits"> = { requires: ["subgroups", "subgroups of 8"], suits: "cpu" };

/**
 * How the fused qkv + attention kernel (kernels/qkv_attention.wgsl) attends: the q heads one after
 * another, the lanes splitting positions (heads); a lane per head (serial); or all heads at once,
 * the lanes split between heads and positions (sliced).
 */
const fused = (attention: "heads" | "serial" | "sliced"): Record<string, boolean> => ({
  FUSED: true,
  SERIAL: attention === "serial",
  SLICED: attention === "sliced",
});

/**
 * Row-group variants of the projection kernels. One token (decode): rows per invocation on CPU
 * drivers, split-K over a subgroup or a workgroup on GPUs. A tile of tokens (batched passes): the
 * same with token tiles, which load each weight once for the tile.
 */
const VEC_PROJECTION: Variant[] = [
  // Small workgroups spread small matrices over more CPU threads; larger ones amortise per-workgroup work.
  { name: "rows1w8", consts: lanes("rows", 1, 1, 8), suits: "cpu" },
  { name: "rows2w8", consts: lanes("rows", 2, 1, 8), suits: "cpu" },
  { name: "rows4w8", consts: lanes("rows", 4, 1, 8), suits: "cpu" },
  { name: "rows2", consts: lanes("rows", 2, 1), suits: "cpu" },
  { name: "rows4", consts: lanes("rows", 4, 1), suits: "cpu" },
  { name: "rows4s", consts: lanes("shared", 4, 1), ...SHARED },
  { name: "rows4w8s", consts: lanes("shared", 4, 1, 8), ...SHARED },
  // Split-K suits GPUs, but CPU drivers measure it too: lanes reading neighbouring blocks of one row
  // beat a row per lane on f32 weights at 4096 columns (1.3-1.9x on lavapipe), not on f16.
  { name: "sg4", consts: lanes("sg", 4, 1), requires: ["subgroups"], suits: "any" },
  { name: "sg4w8", consts: lanes("sg", 4, 1, 8), requires: ["subgroups"], suits: "any" },
  { name: "wg", consts: lanes("wg", 1, 1), suits: "gpu" },
];
const MAT_PROJECTION: Variant[] = [
  { name: "rows4x4", consts: lanes("rows", 4, 4), suits: "cpu" },
  { name: "rows2x8", consts: lanes("rows", 2, 8), suits: "cpu" },
  // Larger tiles reuse each weight for more tokens; past about 48 sums a lane, registers spill
  // (rows8x8w8s and rows4x16w8s ran 3-5x slower than rows6x8w8s at llama-110m shapes).
  { name: "rows4x4w8s", consts: lanes("shared", 4, 4, 8), ...SHARED },
  { name: "rows4x8w8s", consts: lanes("shared", 4, 8, 8), ...SHARED },
  { name: "rows6x8w8s", consts: lanes("shared", 6, 8, 8), ...SHARED },
  { name: "rows4x12w8s", consts: lanes("shared", 4, 12, 8), ...SHARED },
  { name: "sg1x4", consts: lanes("sg", 1, 4), requires: ["subgroups"], suits: "gpu" },
  { name: "wg1x4", consts: lanes("wg", 1, 4), suits: "gpu" },
];

/** Where a CATS mask keeps at least this share of a range's neurons (per mille), `walk` variants read every row. */
const WALK_PERMILLE = 450;

function downVariants(tm: number, v: number[], split: number[] = [], walk = false): Variant[] {
  const suffix = tm > 1 ? `x${tm}` : "";
  // CPU variants read the activations as a uniform array (kernels/down1.wgsl): every lane reads the same one.
  const c = (wg: number, n: number, ns = 1) => ({
    WG: wg,
    V: n,
    TM: tm,
    XU: wg === 8,
    XN: UNIFORM_INPUT_VEC4S,
    NS: ns,
    ONE: ns > 1,
    WALK: false,
    TOUCH: false,
  });
  const cpu = [
    ...v.map((n): Variant => ({ name: `v${n}w8${suffix}`, consts: c(8, n), suits: "cpu" })),
    ...split.map((n): Variant => ({ name: `v${n}w8p4${suffix}`, consts: c(8, n, 4), suits: "cpu" })),
  ];
  const walking = cpu.map((w): Variant => ({ ...w, name: `${w.name}walk`, consts: { ...w.consts, WALK: true, WALK_PERMILLE } }));
  // `t`: skipped rows still load a word of their slice (TOUCH in down1.wgsl), keeping the walk one
  // stream where W_down^T is stored in column slices (f16s/f32s).
  const touching = cpu.map((w): Variant => ({ ...w, name: `${w.name}t`, consts: { ...w.consts, TOUCH: true } }));
  return [...cpu, ...(walk ? [...walking, ...touching] : []), { name: `v1w64${suffix}`, consts: c(64, 1), suits: "gpu" }];
}

export const VARIANTS: Record<OpName, Variant[]> = {
  matvec: VEC_PROJECTION,
  matmul: MAT_PROJECTION,
  gate_up_vec: VEC_PROJECTION,
  // The decode gate/up pass where CATS masks the MLP: the same kernels, tuned apart on masked
  // steps, since a row variant's workgroup pools the rows it lists for the up pass (kernels/gate_up.wgsl)
  // and a subgroup with none skips its pass over the input: rows4s pools 256 rows, rows4w8s 32.
  // Dense they are within a percent at llama2-7b-2l's 11008x4096; at 50% and 70% sparsity rows4s ran
  // 1.05-1.06x as fast (f16, 7 paired rounds), and whole CATS decode steps 1.02x.
  gate_up_cats: VEC_PROJECTION,
  gate_up_mat: MAT_PROJECTION,
  // p4: the neurons in four ranges, grid z walking them and consecutive workgroups reading
  // neighbouring slices of the same few thousand rows (ONE in down1.wgsl): a random half of the rows
  // then costs about half the dense time, where workgroups each walking all 11008 rows of the 7B
  // shape find their slices cold (probe, f16, random half: 0.68-0.74x the dense time against
  // 0.92-1.16x; with the workgroups ordered the other way round, the gain is gone). One dispatch:
  // the last workgroup of a column block adds the ranges' sums, so no step needs more dispatches.
  down_vec: downVariants(1, [1, 2, 4], [4, 8]),
  // The decode down projection once CATS masks its input: the same kernels, tuned apart on a
  // half-active input, since which slice of each row a workgroup should read depends on whether the
  // rows come in a dense walk (which the prefetcher follows) or scattered (each row a fresh miss
  // where W_down^T outgrows the caches). Longer slices (16 and 32 blocks per lane) helped scattered
  // rows in a probe but not in down1.wgsl, where they spill: 0.37-0.71x of v1w8 at 50% active.
  // `walk`: the same kernels reading every row where at least 45% of a range's neurons are active
  // (WALK in down1.wgsl). A scattered row costs about twice a row of the dense walk, so skipping
  // pays below about half active, and more where W_down^T's rows are long: whole llama2-7b-2l
  // decode at 50%, 7 interleaved rounds, read every row 1.13x as fast as skipping (1.12x against
  // 1.09x over dense), while at llama-110m skipping stayed ahead (1.28x against 1.21x).
  // `t` (touch): skipped rows still load one word of their slice, so that the walk over W_down^T in
  // column slices (f16s/f32s) stays one stream: the prefetcher keeps up and only the arithmetic and
  // most loads are skipped. Probe at llama-110m's shape (24 matrices in turn, 2026-12-07): at 50%
  // active 0.31 against 0.37-0.39 ms for the sliced dense walk and 0.53 skipping; at 30% active 0.29.
  // V = 6 (three slices a workgroup): llama-110m's 96 blocks of 8 outputs are then two whole
  // workgroups, one per core of a 2-core host, where V = 8 leaves the second workgroup a quarter
  // of clamped duplicates (24 matrices in turn, 50% active, 9 paired rounds: v6w8t 1.33-1.41x the
  // dense v2w8, v8w8t 1.13-1.19x; at 4096x11008 v8w8t stays ahead, 1.58x against 1.35x).
  down_cats: downVariants(1, [1, 2, 4, 6, 8], [4, 8], true),
  down_mat: [...downVariants(4, [1, 2]), ...downVariants(8, [1, 2]).filter((v) => v.suits === "cpu")],
  attention_vec: [
    // Lanes split the positions and combine (attention_decode.wgsl); or one invocation per head, no barrier (attention_serial.wgsl).
    { name: "w4", consts: { WG: 4, SERIAL: false }, suits: "cpu" },
    { name: "w8", consts: { WG: 8, SERIAL: false }, suits: "cpu" },
    { name: "serial", consts: { WG: 8, SERIAL: true }, suits: "cpu" },
  ],
  // Batched attention (kernels/attention.wgsl): each lane reads whole K/V rows, or the 8 lanes read
  // a share each and pass them round (on CPU drivers, where every lane's read is its own).
  attention_mat: [
    { name: "lanes", consts: { SHARED: false }, suits: "any" },
    { name: "shared8", consts: { SHARED: true }, requires: ["subgroups", "subgroups of 8"], suits: "any" },
  ],
  // One decode token's qkv projection and attention: two dispatches (matvec, then attention_vec,
  // each with its own choice), or one (qkv_attention.wgsl, a workgroup per kv head), which saves a
  // dispatch but leaves the projection only one workgroup per kv head to spread over.
  qkv_attention_vec: [
    { name: "split", consts: { FUSED: false }, suits: "any" },
    { name: "fused4w8", consts: { ...lanes("rows", 4, 1, 8), ...fused("heads") }, suits: "cpu" },
    { name: "fused2w8", consts: { ...lanes("rows", 2, 1, 8), ...fused("heads") }, suits: "cpu" },
    // Attention one lane per q head after the projection: no barrier, for short contexts on CPU drivers.
    { name: "fused4w8s", consts: { ...lanes("rows", 4, 1, 8), ...fused("serial") }, suits: "cpu" },
    { name: "fused2w8s", consts: { ...lanes("rows", 2, 1, 8), ...fused("serial") }, suits: "cpu" },
    // All q heads at once, each split over a share of the lanes: every lane busy, two barriers.
    { name: "fused4w8p", consts: { ...lanes("rows", 4, 1, 8), ...fused("sliced") }, suits: "cpu" },
    { name: "fused2w8p", consts: { ...lanes("rows", 2, 1, 8), ...fused("sliced") }, suits: "cpu" },
    // The projection's input read once per 8-lane subgroup (XS), then attention as fused4w8 or fused4w8p.
    { name: "fused4w8x", consts: { ...lanes("shared", 4, 1, 8), ...fused("heads") }, ...SHARED },
    { name: "fused4w8px", consts: { ...lanes("shared", 4, 1, 8), ...fused("sliced") }, ...SHARED },
    { name: "fused_sg4", consts: { ...lanes("sg", 4, 1, 64), ...fused("heads") }, requires: ["subgroups"], suits: "gpu" },
    { name: "fused_wg", consts: { ...lanes("wg", 1, 1, 64), ...fused("heads") }, suits: "gpu" },
  ],
  // One decode token's o_proj and MLP: three dispatches (matvec, gate_up_vec and down_vec, each with
  // its own choice), or one workgroup of one 8-lane subgroup (o_mlp.wgsl), for models small enough
  // that the dispatches cost more than the work.
  o_mlp_vec: [
    { name: "split", consts: { FUSED: false }, suits: "any" },
    { name: "fused8", consts: { FUSED: true }, requires: ["subgroups", "subgroups of 8"], suits: "cpu" },
  ],
  // One decode token's whole layer: the dispatches above (qkv_attention_vec, o_mlp_vec, each with its
  // own choice), or one workgroup of one 8-lane subgroup (layer.wgsl), for the smallest models.
  layer_vec: [
    { name: "split", consts: { FUSED: false }, suits: "any" },
    { name: "fused8", consts: { FUSED: true }, requires: ["subgroups", "subgroups of 8"], suits: "cpu" },
  ],
  argmax: [
    { name: "w1", consts: { WG: 1 }, suits: "cpu" },
    { name: "w64", consts: { WG: 64 }, suits: "gpu" },
    { name: "w256", consts: { WG: 256 }, suits: "gpu" },
  ],
};

/**
 * The starting point before any measurement: CPU drivers (lavapipe, SwiftShader) run a SIMD group
 * of lanes through a whole loop and pay for every barrier, so they get one row group per
 * invocation; GPUs get split-K across a subgroup, or across a workgroup without subgroups.
 */
const DEFAULTS: Record<KernelFlavour, Record<OpName, string>> = {
  cpu: {
    matvec: "rows4s",
    matmul: "rows6x8w8s",
    gate_up_vec: "rows4s",
    gate_up_cats: "rows4s",
    gate_up_mat: "rows6x8w8s",
    down_vec: "v1w8",
    down_cats: "v1w8",
    down_mat: "v2w8x8",
    attention_vec: "w8",
    attention_mat: "shared8",
    qkv_attention_vec: "fused4w8x",
    o_mlp_vec: "fused8",
    layer_vec: "fused8",
    argmax: "w1",
  },
  gpu: {
    matvec: "sg4",
    matmul: "sg1x4",
    gate_up_vec: "sg4",
    gate_up_cats: "sg4",
    gate_up_mat: "sg1x4",
    down_vec: "v1w64",
    down_cats: "v1w64",
    down_mat: "v1w64x4",
    attention_vec: "w8",
    attention_mat: "lanes",
    qkv_attention_vec: "split",
    o_mlp_vec: "split",
    layer_vec: "split",
    argmax: "w256",
  },
};
const NO_SUBGROUPS: Partial<Record<string, string>> = {
  sg4: "wg",
  sg1x4: "wg1x4",
  shared8: "lanes",
  rows4s: "rows4",
  rows6x8w8s: "rows4x4",
  fused4w8x: "fused4w8",
  fused8: "split",
};

export type VariantSource = "default" | "autotune" | "override";

export interface VariantChoice {
  op: OpName;
  variant: Variant;
  source: VariantSource;
}

/** Parses `op=variant,op=variant` (the --variant flags, CATS_VARIANTS), refusing unknown names with the valid ones listed. */
export function parseOverrides(text: string | undefined): Partial<Record<OpName, string>> {
  const out: Partial<Record<OpName, string>> = {};
  for (const item of (text ?? "").split(",").map((s) => s.trim())) {
    if (item === "") continue;
    const [op, name, extra] = item.split("=");
    if (!OPS.includes(op as OpName)) throw new CatsError(`variant override "${item}": unknown op "${op}" (ops: ${OPS.join(", ")})`);
    const names = VARIANTS[op as OpName].map((v) => v.name);
    if (extra !== undefined || name === undefined || !names.includes(name)) {
      throw new CatsError(`variant override "${item}": op ${op} has variants ${names.join(", ")}`);
    }
    out[op as OpName] = name;
  }
  return out;
}

/** A measured choice: the variant of `op` for one shape of its matrix (`rows x cols format`), or for every shape. */
export type TunedChoices = Record<string, string>;

export const tunedKey = (op: OpName, shape?: string): string => (shape ? `${op} ${shape}` : op);

/** Which variant of each op runs on this device: an override, else a measured choice, else the default. */
export class VariantTable {
  constructor(
    private readonly gpu: GpuContext,
    private readonly overrides: Partial<Record<OpName, string>> = {},
    private readonly tuned: TunedChoices = {},
  ) {
    for (const [op, name] of Object.entries(overrides)) {
      const v = VARIANTS[op as OpName].find((x) => x.name === name)!;
      if (!this.supported(v)) throw new CatsError(`variant override ${op}=${name}: this adapter lacks ${v.requires!.join(", ")}`);
    }
  }

  supported(v: Variant): boolean {
    const sizes = this.gpu.subgroupSizes;
    return (v.requires ?? []).every((r) => (r === "subgroups of 8" ? sizes.min === 8 && sizes.max === 8 : this.gpu.features.has(r)));
  }

  /** The variants of an op this adapter can run (all are tested). */
  candidates(op: OpName): Variant[] {
    return VARIANTS[op].filter((v) => this.supported(v));
  }

  /** The variants autotuning measures on this adapter: those that suit its kind. */
  tuneCandidates(op: OpName): Variant[] {
    return this.candidates(op).filter((v) => v.suits === "any" || v.suits === this.gpu.flavour);
  }

  choice(op: OpName, shape?: string): VariantChoice {
    const byName = (name: string) => VARIANTS[op].find((v) => v.name === name);
    const override = this.overrides[op];
    if (override) return { op, variant: byName(override)!, source: "override" };
    for (const key of [tunedKey(op, shape), tunedKey(op)]) {
      const tuned = byName(this.tuned[key] ?? "");
      if (tuned && this.supported(tuned)) return { op, variant: tuned, source: "autotune" };
    }
    let name = DEFAULTS[this.gpu.flavour][op];
    if (!this.supported(byName(name)!)) name = NO_SUBGROUPS[name] ?? name;
    return { op, variant: byName(name)!, source: "default" };
  }

  pick(op: OpName, shape?: string): Variant {
    return this.choice(op, shape).variant;
  }

  /** Every op's choice, and the measured ones per shape, for `cats info`. */
  describe(): { op: OpName; shape: string | null; variant: string; source: VariantSource }[] {
    const rows = OPS.map((op) => {
      const c = this.choice(op);
      return { op, shape: null as string | null, variant: c.variant.name, source: c.source };
    });
    for (const [key, name] of Object.entries(this.tuned)) {
      const [op, ...shape] = key.split(" ");
      if (shape.length > 0 && !this.overrides[op as OpName])
        rows.push({ op: op as OpName, shape: shape.join(" "), variant: name, source: "autotune" });
    }
    return rows;
  }
}
/**
 * How many row groups one workgroup of a lanes variant holds. With subgroups the count depends on
 * the subgroup size the driver picks; assuming the largest it may pick covers every row.
 */
export function groupsPerWorkgroup(gpu: GpuContext, consts: Record<string, number | boolean>): number {
  const wg = consts.WG as number;
  if (consts.WORKGROUP) return 1;
  if (consts.SUBGROUP) return Math.max(1, Math.floor(wg / gpu.subgroupSizes.max));
  return wg;
}
