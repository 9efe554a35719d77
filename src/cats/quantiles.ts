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
