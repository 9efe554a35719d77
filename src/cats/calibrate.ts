import { CatsError } from "../errors.js";
import type { LlamaEngine } from "../engine/llama.js";
import { bosWindows } from "../engine/windows.js";
import { quantileOfSorted, quantileSketch, sortNonNegative } from "./quantiles.js";

export interface CalibrationResult {
  /** level -> per-layer threshold (exact quantiles). */
  thresholds: Map<number, number[]>;
  /** level -> per-layer thresholds from the dense pass, before refinement. */
  denseThresholds: Map<number, number[]>;
  sketches: number[][];
  positions: number;
  windows: number;
  captureMs: number;
  quantileMs: number;
}

export interface CalibrationOptions {
  positions: number;
  levels: number[];
  sketchPoints: number;
  /**
   * Re-take each level's quantiles with the model already running at that level: masking a layer
   * shifts the activations of the layers after it, so dense quantiles undershoot the target there.
   */
  refine: boolean;
  onProgress?: (positions: number, pass: string) => void;
}

/**
 * Runs the dense model over windows cut as `cats eval` cuts them (BOS + context-1 tokens) until
 * `positions` positions are seen, collects |silu(gate)| of every position and neuron per layer, and
 * takes exact quantiles. With `refine`, each level then gets a second pass at that level's dense
 * thresholds, and its final thresholds are the quantiles of that pass. Activations come back once
 * per window, never per token.
 */
export async function calibrate(engine: LlamaEngine, streamIds: number[], o: CalibrationOptions): Promise<CalibrationResult> {
  const L = engine.config.numLayers;
  const inter = engine.config.intermediateSize;
  const windows: number[][] = [];
  let seen = 0;
  for (const full of bosWindows(streamIds, engine.config, "calibration")) {
    if (seen >= o.positions) break;
    const window = full.slice(0, o.positions - seen);
    windows.push(window);
    seen += window.length;
  }
  if (seen < o.positions) {
    throw new CatsError(`the calibration text gives only ${seen} positions, fewer than the ${o.positions} asked for (--tokens)`);
  }
  const samples = Array.from({ length: L }, () => new Float32Array(o.positions * inter));
  let captureMs = 0;
  let quantileMs = 0;
  /** One pass over all windows with the given thresholds (null: dense), activations sorted per layer. */
  const collect = async (thresholds: number[] | null, pass: string): Promise<void> => {
    const t0 = performance.now();
    engine.setThresholds(thresholds);
    let at = 0;
    for (const window of windows) {
      const acts = await engine.captureActivations(window);
      for (let l = 0; l < L; l++) samples[l].set(acts[l], at * inter);
      at += window.length;
      o.onProgress?.(at, pass);
    }
    engine.setThresholds(null);
    const t1 = performance.now();
    for (const layer of samples) sortNonNegative(layer);
    captureMs += t1 - t0;
    quantileMs += performance.now() - t1;
  };

  await collect(null, "dense");
  const denseThresholds = new Map<number, number[]>(o.levels.map((lv) => [lv, samples.map((layer) => quantileOfSorted(layer, lv))]));
  const sketches = samples.map((layer) => quantileSketch(layer, o.sketchPoints));
  const thresholds = new Map(denseThresholds);
  if (o.refine) {
    for (const lv of o.levels) {
      await collect(denseThresholds.get(lv)!, `level ${lv}`);
      thresholds.set(
        lv,
        samples.map((layer) => quantileOfSorted(layer, lv)),
      );
    }
  }
  return { thresholds, denseThresholds, sketches, positions: seen, windows: windows.length, captureMs, quantileMs };
}
