import { notice } from "./notice.js";
import { access, constants, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Presets, SingleBar } from "cli-progress";
import { calibrate } from "../cats/calibrate.js";
import { modelFingerprint, sha256Hex, THRESHOLDS_FORMAT, THRESHOLDS_VERSION, type ThresholdsFile } from "../cats/thresholds.js";
import { CatsError } from "../errors.js";
import { loadModel } from "../node.js";
import { readText } from "./eval.js";

export interface CalibrateFlags {
  model?: string;
  data: string;
  tokens: number;
  levels: number[];
  out?: string;
  refine: boolean;
  kernels?: string;
  variant?: string;
  json?: boolean;
}

export const SKETCH_POINTS = 1001;

async function writable(dir: string): Promise<boolean> {
  try {
    await access(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export async function runCalibrate(flags: CalibrateFlags): Promise<void> {
  const text = await readText(flags.data);
  const lm = await loadModel(flags.model, { flavour: flags.kernels, variants: flags.variant, notice, capture: true });
  try {
    const out = flags.out ?? join(lm.dir, "cats-thresholds.json");
    if (!(await writable(dirname(out)))) {
      throw new CatsError(`${dirname(out)} is not writable; pass --out FILE for the thresholds`);
    }
    const ids = lm.tokenizer.encode(text.trim(), false);
    const passes = 1 + (flags.refine ? flags.levels.length : 0);
    const bar = new SingleBar(
      { format: "calibrate [{bar}] {value}/{total} positions | {pass} | {eta}s left", stream: process.stderr },
      Presets.shades_classic,
    );
    bar.start(flags.tokens * passes, 0, { pass: "dense" });
    let done = 0;
    let lastPass = "dense";
    const r = await calibrate(lm.engine, ids, {
      positions: flags.tokens,
      levels: flags.levels,
      sketchPoints: SKETCH_POINTS,
      refine: flags.refine,
      onProgress: (n, pass) => {
        if (pass !== lastPass) done += flags.tokens;
        lastPass = pass;
        bar.update(done + n, { pass });
      },
    });
    bar.stop();
    const c = lm.checkpoint.config;
    const file: ThresholdsFile = {
      format: THRESHOLDS_FORMAT,
      version: THRESHOLDS_VERSION,
      model: {
        fingerprint: await modelFingerprint(lm.checkpoint),
        name: basename(lm.dir),
        layers: c.numLayers,
        intermediate_size: c.intermediateSize,
        synthetic: c.synthetic,
      },
      calibration: {
        data: basename(flags.data),
        data_sha256: await sha256Hex(new TextEncoder().encode(text)),
        tokens: r.positions,
        windows: r.windows,
        windowing: `text stripped and encoded without BOS, cut into chunks of ${lm.engine.contextLength - 1} tokens, each run as BOS + chunk; every position counts, until ${r.positions}`,
        seconds: Math.round((r.captureMs + r.quantileMs) / 10) / 100,
      },
      quantile_method: flags.refine
        ? "exact quantile of |silu(gate)| over all positions and neurons of a layer (numpy linear interpolation), taken with the model already running at that level (earlier layers masked at the level's dense-pass thresholds); the sketch and dense_thresholds are from the dense pass"
        : "exact quantile of |silu(gate)| over all positions and neurons of a layer of the dense model (numpy linear interpolation)",
      exact_levels: flags.levels,
      thresholds: Object.fromEntries([...r.thresholds].map(([lv, t]) => [String(lv), t])),
      dense_thresholds: Object.fromEntries([...r.denseThresholds].map(([lv, t]) => [String(lv), t])),
      sketch: { points: SKETCH_POINTS, per_layer: r.sketches },
    };
    await writeFile(out, JSON.stringify(file) + "\n");
    const summary = {
      out,
      positions: r.positions,
      windows: r.windows,
      capture_s: r.captureMs / 1000,
      quantiles_s: r.quantileMs / 1000,
      thresholds: file.thresholds,
    };
    if (flags.json) process.stdout.write(JSON.stringify(summary) + "\n");
    else {
      process.stdout.write(
        `wrote ${out}: ${r.positions} positions in ${r.windows} windows; GPU passes ${(r.captureMs / 1000).toFixed(1)} s, quantiles ${(r.quantileMs / 1000).toFixed(1)} s\n`,
      );
      for (const [lv, t] of r.thresholds) process.stdout.write(`  level ${lv}: ${t.map((v) => v.toFixed(4)).join(" ")}\n`);
    }
  } finally {
    await lm.close();
  }
}
