import { InvalidArgumentError } from "commander";
import { parseOverrides } from "../gpu/variants.js";

/** Option parsers that reject bad values with a message naming what was expected. */
export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n <= 0)
    throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

/**
 * `cats bench --tokens`: the first token comes from the prefill, so a run times decode steps only from
 * the second on, and a figure needs at least one.
 */
export function benchTokens(value: string): number {
  const n = positiveInt(value);
  if (n < 2)
    throw new InvalidArgumentError(
      `expected at least 2 (the first token comes from the prefill; decode steps are timed from the second), got "${value}"`,
    );
  return n;
}

/** A comma-separated list of model directories or names (cats bench --compare). */
export function modelList(value: string): string[] {
  const items = value.split(",").map((s) => s.trim());
  if (items.some((s) => s === ""))
    throw new InvalidArgumentError(`expected model directories or names separated by commas, got "${value}"`);
  return items;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError(`expected a non-negative integer, got "${value}"`);
  return n;
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`expected a number >= 0, got "${value}"`);
  return n;
}

export function probability(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0 || n > 1)
    throw new InvalidArgumentError(`expected a number in (0, 1], got "${value}"`);
  return n;
}

export function integer(value: string): number {
  const n = Number(value);
  if (!/^\s*-?\d+\s*$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`expected an integer, got "${value}"`);
  return n;
}

export function kernelFlavour(value: string): "cpu" | "gpu" {
  if (value !== "cpu" && value !== "gpu") throw new InvalidArgumentError(`expected "cpu" or "gpu", got "${value}"`);
  return value;
}

/** One sparsity level in [0, 1), or in (0, 1) where the dense level makes no sense (calibration). */
function level(value: string, what: string, allowZero: boolean): number {
  const n = Number(value.trim());
  if (value.trim() === "" || !Number.isFinite(n) || n < 0 || n >= 1 || (!allowZero && n === 0)) {
    throw new InvalidArgumentError(`expected ${what} in ${allowZero ? "[0, 1)" : "(0, 1)"}, got "${value}"`);
  }
  return n;
}

/** --sparsity K (generate, eval): one level, 0 = dense. */
export function sparsityLevel(value: string): number {
  return level(value, "a sparsity level", true);
}

/** --sparsity K,K,... (bench): the levels to compare, dense always first. */
export function sparsityLevels(value: string): number[] {
  return [...new Set([0, ...value.split(",").map((v) => level(v, "comma-separated sparsity levels", true))])].sort((a, b) => a - b);
}

/** --levels K,K,... (calibrate): the levels with exact thresholds. */
export function calibrationLevels(value: string): number[] {
  return [...new Set(value.split(",").map((v) => level(v, "comma-separated levels", false)))].sort((a, b) => a - b);
}

/** --variant op=name,...: checked against the variant table here, so a typo is a bad flag. */
export function variantOverrides(value: string): string {
  try {
    parseOverrides(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return value;
}

/** A power usage effectiveness: facility power over IT power, so at least 1 (and no data centre reaches 10). */
export function pue(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 1 || n > 10)
    throw new InvalidArgumentError(`expected a PUE in [1, 10], got "${value}"`);
  return n;
}

/** Watts drawn per busy core: above 0, and below what any CPU core draws (1 kW). */
export function wattsPerCore(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0 || n > 1000)
    throw new InvalidArgumentError(`expected watts per core in (0, 1000], got "${value}"`);
  return n;
}

/** A TCP port; 0 asks the system for a free one. */
export function port(value: string): number {
  const n = nonNegativeInt(value);
  if (n > 65535) throw new InvalidArgumentError(`expected a port in [0, 65535], got "${value}"`);
  return n;
}

/** --group: a positive multiple of 8 (whole blocks of 8 codes), or "row". */
export function quantGroup(value: string): number | "row" {
  if (value === "row") return "row";
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0 || n % 8 !== 0)
    throw new InvalidArgumentError(`expected a positive multiple of 8 or "row", got "${value}"`);
  return n;
}

export function quantBits(value: string): 4 | 8 {
  if (value !== "4" && value !== "8") throw new InvalidArgumentError(`expected 8 or 4, got "${value}"`);
  return Number(value) as 4 | 8;
}
