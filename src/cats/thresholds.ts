import { CatsError } from "../errors.js";
import type { Checkpoint } from "../model/checkpoint.js";
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

/** Identifies a model by its config.json and its safetensors headers (names, dtypes, shapes, offsets). */
export async function modelFingerprint(ckpt: Checkpoint): Promise<string> {
  return "sha256:" + (await sha256Hex([ckpt.configText, ...ckpt.headers.map((h) => h.headerText)].join("\n")));
}

function bad(file: string, field: string, expected: string): never {
  throw new CatsError(`${file}: field "${field}": expected ${expected}`);
}

const isNumberList = (v: unknown, n: number): v is number[] =>
  Array.isArray(v) && v.length === n && v.every((x) => typeof x === "number" && Number.isFinite(x));

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
  if (typeof t.thresholds !== "object" || t.thresholds === null) bad(file, "thresholds", "an object of level -> per-layer thresholds");
  for (const [level, values] of Object.entries(t.thresholds)) {
    if (!isNumberList(values, L)) bad(file, `thresholds.${level}`, `${L} finite numbers (one per layer)`);
  }
  const sk = t.sketch;
  if (
    !sk ||
    typeof sk.points !== "number" ||
    sk.points < 2 ||
    !Array.isArray(sk.per_layer) ||
    sk.per_layer.length !== L ||
    !sk.per_layer.every((q) => isNumberList(q, sk.points))
  ) {
    bad(file, "sketch", `{ points >= 2, per_layer: ${L} lists of points quantiles }`);
  }
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
