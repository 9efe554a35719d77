import { CatsError } from "../errors.js";
import type { Checkpoint } from "../model/checkpoint.js";
import { quoted } from "../model/describe.js";
import { quantileOfSorted } from "./quantiles.js";

export const THRESHOLDS_FORMAT = "cats-thresholds";
export const THRESHOLDS_VERSION = 1;

/** What `cats calibrate` writes: per-layer CATS thresholds of one model, and how they were made. */
export interface ThresholdsFile {
  format: typeof THRESHOLDS_FORMAT;
  version: number;
  model: { fingerprint: string; name: string; layers: number; intermediate_size: number; synthetic: boolean };
  calibration: {
    data: string;
    data_sha256: string;
    tokens: number;
    windows: number;
    windowing: string;
    seconds: number;
  };
  quantile_method: string;
  /** Levels whose thresholds are exact quantiles of all calibration activations. */
  exact_levels: number[];
  /** level (as written by String(level)) -> one threshold per layer. */
  thresholds: Record<string, number[]>;
  /** The same levels' quantiles of the dense model alone (equal to `thresholds` without refinement). */
  dense_thresholds?: Record<string, number[]>;
  /** Per layer, the quantiles at i / (points - 1): any other level is interpolated from these. */
  sketch: { points: number; per_layer: number[][] };
}

export interface LayerThresholds {
  level: number;
  thresholds: number[];
  /** exact: calibrated level; sketch: interpolated from the sketch; dense: level 0, nothing zeroed. */
  source: "exact" | "sketch" | "dense";
}

export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Identifies a model by its config.json and its safetensors headers (names, dtypes, shapes, offsets); an
 * ONNX model's "header" is model.onnx's size and sha256 and its external data files' sizes and end digests.
 */
export async function modelFingerprint(ckpt: Checkpoint): Promise<string> {
  return "sha256:" + (await sha256Hex([ckpt.configText, ...ckpt.headers.map((h) => h.headerText)].join("\n")));
}

function bad(file: string, field: string, expected: string): never {
  throw new CatsError(`${file}: field "${field}": expected ${expected}`);
}

/** n finite numbers >= 0: a threshold compares with |SiLU(gate)|, so a negative one is meaningless. */
const isThresholdList = (v: unknown, n: number): v is number[] =>
  Array.isArray(v) && v.length === n && v.every((x) => typeof x === "number" && Number.isFinite(x) && x >= 0);

const nonDecreasing = (v: readonly number[]): boolean => v.every((x, i) => i === 0 || x >= v[i - 1]);

/** Validates a parsed thresholds file and checks that it was made for this model. */
export async function checkThresholdsFile(raw: unknown, file: string, ckpt: Checkpoint): Promise<ThresholdsFile> {
  if (typeof raw !== "object" || raw === null) bad(file, "format", `a JSON object with format "${THRESHOLDS_FORMAT}"`);
  const t = raw as Partial<ThresholdsFile>;
  if (t.format !== THRESHOLDS_FORMAT) bad(file, "format", `"${THRESHOLDS_FORMAT}", got ${JSON.stringify(t.format)}`);
  if (t.version !== THRESHOLDS_VERSION) bad(file, "version", `${THRESHOLDS_VERSION}, got ${JSON.stringify(t.version)}`);
  const fp = await modelFingerprint(ckpt);
  if (t.model?.fingerprint !== fp) {
    throw new CatsError(
      `${file}: field "model.fingerprint": made for model ${JSON.stringify(t.model?.name)} (${t.model?.fingerprint}), but ${ckpt.files.location} is ${fp}; calibrate this model with cats calibrate`,
    );
  }
  const L = ckpt.config.numLayers;
  if (typeof t.thresholds !== "object" || t.thresholds === null || Array.isArray(t.thresholds))
    bad(file, "thresholds", "an object of level -> per-layer thresholds");
  const levels: [number, number[]][] = [];
  for (const [key, values] of Object.entries(t.thresholds)) {
    const level = Number(key);
    if (key.trim() === "" || !Number.isFinite(level) || level <= 0 || level >= 1)
      bad(file, `thresholds.${quoted(key).slice(1, -1)}`, "a level key in (0, 1)");
    if (!isThresholdList(values, L)) bad(file, `thresholds.${key}`, `${L} finite numbers >= 0 (one per layer)`);
    levels.push([level, values]);
  }
  levels.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < levels.length; i++) {
    const layer = levels[i][1].findIndex((v, l) => v < levels[i - 1][1][l]);
    if (layer >= 0) {
      bad(
        file,
        `thresholds.${levels[i][0]}`,
        `thresholds at least those of level ${levels[i - 1][0]} (a higher level zeroes more), but layer ${layer} has ${levels[i][1][layer]} < ${levels[i - 1][1][layer]}`,
      );
    }
  }
  const sk = t.sketch;
  if (
    !sk ||
    typeof sk.points !== "number" ||
    !Number.isInteger(sk.points) ||
    sk.points < 2 ||
    sk.points > 1_000_000 ||
    !Array.isArray(sk.per_layer) ||
    sk.per_layer.length !== L ||
    !sk.per_layer.every((q) => isThresholdList(q, sk.points))
  ) {
    bad(file, "sketch", `{ points >= 2, per_layer: ${L} lists of points quantiles >= 0 }`);
  }
  const unsorted = sk.per_layer.findIndex((q) => !nonDecreasing(q));
  if (unsorted >= 0) bad(file, `sketch.per_layer.${unsorted}`, "non-decreasing quantiles");
  return t as ThresholdsFile;
}

/** Per-layer thresholds for a target sparsity: an exact calibrated level, else derived from the sketch. */
export function thresholdsForLevel(t: ThresholdsFile, level: number, file: string): LayerThresholds {
  if (!Number.isFinite(level) || level < 0 || level >= 1) throw new CatsError(`--sparsity: expected a level in [0, 1), got ${level}`);
  if (level === 0) return { level, thresholds: t.sketch.per_layer.map(() => 0), source: "dense" };
  const exact = Object.keys(t.thresholds).find((k) => Math.abs(Number(k) - level) < 1e-9);
  if (exact !== undefined) return { level, thresholds: t.thresholds[exact], source: "exact" };
  if (t.sketch.points < 2) throw new CatsError(`${file}: level ${level} is not calibrated and there is no sketch to derive it from`);
  return { level, thresholds: t.sketch.per_layer.map((q) => quantileOfSorted(q, level)), source: "sketch" };
}

/** How far measured sparsity may miss the requested level before the user is told. */
export const SPARSITY_TOLERANCE = 0.05;

/**
 * A line for the user when the measured share of zeroed activations misses the level by more than
 * 5 points: thresholds from another text, another level, or an edited file.
 */
export function sparsityMiss(level: LayerThresholds, measured: number, file: string): string | null {
  if (level.source === "dense" || !Number.isFinite(measured) || Math.abs(measured - level.level) <= SPARSITY_TOLERANCE) return null;
  return `warning: sparsity ${(level.level * 100).toFixed(0)}% was requested but ${(measured * 100).toFixed(1)}% of MLP activations were zeroed (thresholds from ${file}, ${level.source}); they may not fit this level or this text`;
}
