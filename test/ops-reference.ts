/** float64 references for the per-op tests: the maths of each op written plainly, as ref_llama.py does. */

export const silu = (g: number): number => g / (1 + Math.exp(-g));

/** 1 / sqrt(mean(x^2) + eps): the RMSNorm scale. */
export function normScale(x: ArrayLike<number>, eps: number): number {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  return 1 / Math.sqrt(ss / x.length + eps);
}

/** y = s * (x * gain) W^T, W row-major [rows, cols]; s is the norm scale when a gain is given, else 1. */
export function project(
  w: Float32Array,
  rows: number,
  cols: number,
  x: ArrayLike<number>,
  gain: ArrayLike<number> | null,
  eps: number,
): Float64Array {
  const s = gain ? normScale(x, eps) : 1;
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let k = 0; k < cols; k++) acc += w[r * cols + k] * x[k] * (gain ? gain[k] : 1);
    y[r] = s * acc;
  }
  return y;
}

/** HF rotate_half RoPE of one head at `pos`. */
export function rope(head: ArrayLike<number>, pos: number, theta = 10000): Float64Array {
  const d = head.length;
  const half = d / 2;
  const out = new Float64Array(d);
  for (let i = 0; i < half; i++) {
    const angle = pos / theta ** ((2 * i) / d);
    const [c, s] = [Math.cos(angle), Math.sin(angle)];
    out[i] = head[i] * c - head[i + half] * s;
    out[i + half] = head[i + half] * c + head[i] * s;
  }
  return out;
}

/** Causal attention of one query over keys/values 0..last (already RoPE'd keys), scaled by 1/sqrt(d). */
export function attend(q: ArrayLike<number>, keys: ArrayLike<number>[], values: ArrayLike<number>[]): Float64Array {
  const d = q.length;
  const scores = keys.map((k) => {
    let s = 0;
    for (let i = 0; i < d; i++) s += q[i] * k[i];
    return s / Math.sqrt(d);
  });
  const m = Math.max(...scores);
  const w = scores.map((s) => Math.exp(s - m));
  const total = w.reduce((a, b) => a + b, 0);
  const out = new Float64Array(d);
  values.forEach((v, j) => {
    for (let i = 0; i < d; i++) out[i] += (w[j] / total) * v[i];
  });
  return out;
}

/**
 * CATS thresholds for a gate/up test from the sorted |a| of its neurons: dense (-1), all kept (0), none,
 * one and half kept. Thresholds sit halfway between neighbouring |a| so float rounding cannot flip a neuron.
 */
export function thresholdCases(sortedAbs: number[]): [string, number][] {
  const between = (i: number) => (sortedAbs[i - 1] + sortedAbs[i]) / 2;
  const n = sortedAbs.length;
  return [
    ["dense", -1],
    ["all", 0],
    ["none", sortedAbs[n - 1] * 2 + 1],
    ...(n > 1
      ? ([
          ["one", between(n - 1)],
          ["half", between(Math.floor(n / 2))],
        ] as [string, number][])
      : []),
  ];
}

export function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 1;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  return err / scale;
}

/**
 * Decode attention step by step in float64: each call takes one position's qkv row ([q heads, k heads,
 * v heads] x head_dim, before RoPE), caches its k (with RoPE) and v, and returns every q head's output.
 */
export class DecodeAttention {
  private readonly keys: Float64Array[][] = [];
  private readonly values: Float64Array[][] = [];

  constructor(
    private readonly heads: number,
    private readonly kvHeads: number,
    private readonly headDim: number,
  ) {}

  step(row: Float64Array): Float64Array[] {
    const pos = this.keys.length;
    const head = (i: number) => row.slice(i * this.headDim, (i + 1) * this.headDim);
    this.keys.push(Array.from({ length: this.kvHeads }, (_, j) => rope(head(this.heads + j), pos)));
    this.values.push(Array.from({ length: this.kvHeads }, (_, j) => head(this.heads + this.kvHeads + j)));
    const group = this.heads / this.kvHeads;
    return Array.from({ length: this.heads }, (_, h) => {
      const kv = Math.floor(h / group);
      return attend(
        rope(head(h), pos),
        this.keys.map((k) => k[kv]),
        this.values.map((v) => v[kv]),
      );
    });
  }
}
