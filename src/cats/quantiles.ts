/**
 * Quantiles of sorted samples with numpy's default (linear) interpolation:
 * q -> s[floor(h)] + (h - floor(h)) * (s[floor(h) + 1] - s[floor(h)]), h = (n - 1) q.
 */
export function quantileOfSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) throw new RangeError("quantile of no samples");
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/** Evenly spaced quantiles 0, 1/(points-1), ..., 1 of sorted samples: a sketch to derive any level from. */
export function quantileSketch(sorted: ArrayLike<number>, points: number): number[] {
  return Array.from({ length: points }, (_, i) => quantileOfSorted(sorted, i / (points - 1)));
}

/**
 * Sorts non-negative float32 values in place, ascending: as uint32 bit patterns they order the
 * same, so an LSD radix sort over three 11-bit digits does it in linear time (calibration sorts
 * millions of |silu(gate)| per layer). Anything else (a negative value, NaN) falls back to sort().
 */
export function sortNonNegative(values: Float32Array): Float32Array {
  const keys = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < keys.length; i++) {
    if (keys[i] > 0x7f800000) return values.sort();
  }
  let src: Uint32Array = keys;
  let dst: Uint32Array = new Uint32Array(keys.length);
  const counts = new Uint32Array(2048);
  for (let shift = 0; shift < 32; shift += 11) {
    counts.fill(0);
    for (let i = 0; i < src.length; i++) counts[(src[i] >>> shift) & 2047]++;
    let sum = 0;
    for (let d = 0; d < 2048; d++) {
      const c = counts[d];
      counts[d] = sum;
      sum += c;
    }
    for (let i = 0; i < src.length; i++) dst[counts[(src[i] >>> shift) & 2047]++] = src[i];
    [src, dst] = [dst, src];
  }
  if (src !== keys) keys.set(src);
  return values;
}
