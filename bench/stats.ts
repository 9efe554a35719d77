import { quantileOfSorted } from "../src/cats/quantiles.js";

/** Order statistics for benchmark samples (linear interpolation, as numpy's default). */
export function quantile(values: number[], q: number): number {
  return values.length === 0
    ? NaN
    : quantileOfSorted(
        [...values].sort((a, b) => a - b),
        q,
      );
}

export const median = (values: number[]): number => quantile(values, 0.5);
