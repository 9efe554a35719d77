import { floatToHalf, halfToFloat } from "../model/dtype.js";
import type { QuantLinear } from "../model/gptq.js";

const f = Math.fround;

/** torch.round / numpy.rint: halves to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Round-to-nearest group quantization of W [rows, cols] (HF orientation), in float32 with
 * AutoGPTQ's arithmetic (`Quantizer.find_params` and `quantize`), which is what GPTQ gives for a
 * diagonal Hessian: per row and group of `group` input columns,
 *   xmin = min(min(x), 0), xmax = max(max(x), 0); sym: xmax = max(|xmin|, xmax), xmin = -xmax if xmin < 0;
 *   an all-zero group gets [-1, 1]; scale = (xmax - xmin) / maxq;
 *   zero = sym ? (maxq + 1) / 2 : round(-xmin / scale);  q = clamp(round(x / scale) + zero, 0, maxq).
 * The codes come from the float32 scale; the stored (and dequantizing) scale is its float16, as
 * AutoGPTQ's pack() stores it.
 */
export function quantizeRtn(w: Float32Array, rows: number, cols: number, bits: 4 | 8, group: number | null, sym: boolean): QuantLinear {
  const maxq = (1 << bits) - 1;
  const g = group ?? cols;
  const groups = Math.ceil(cols / g);
  const codes = new Uint8Array(rows * cols);
  const zeros = new Uint16Array(rows * groups);
  const scales = new Float32Array(rows * groups);
  for (let o = 0; o < rows; o++) {
    for (let gi = 0; gi < groups; gi++) {
      const start = o * cols + gi * g;
      const end = o * cols + Math.min(cols, (gi + 1) * g);
      let xmin = 0;
      let xmax = 0;
      for (let i = start; i < end; i++) {
        xmin = Math.min(xmin, w[i]);
        xmax = Math.max(xmax, w[i]);
      }
      if (sym) {
        xmax = Math.max(Math.abs(xmin), xmax);
        if (xmin < 0) xmin = -xmax;
      }
      if (xmin === 0 && xmax === 0) {
        xmin = -1;
        xmax = 1;
      }
      const scale = f(f(xmax - xmin) / maxq);
      const zero = sym ? (maxq + 1) / 2 : roundHalfEven(f(-xmin / scale));
      for (let i = start; i < end; i++) {
        codes[i] = Math.min(maxq, Math.max(0, roundHalfEven(f(w[i] / scale)) + zero));
      }
      zeros[o * groups + gi] = zero;
      scales[o * groups + gi] = halfToFloat(floatToHalf(scale));
    }
  }
  return { bits, rows, cols, group: g, groups, codes, zeros, scales };
}
