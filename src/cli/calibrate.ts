import { notice } from "./notice.js";
import { withTuningBar } from "./tuning-bar.js";
import { basename, join } from "node:path";
import { Presets, SingleBar } from "cli-progress";
import { calibrate } from "../cats/calibrate.js";
import { modelFingerprint, sha256Hex, THRESHOLDS_FORMAT, THRESHOLDS_VERSION, type ThresholdsFile } from "../cats/thresholds.js";
import { checkOutputFile, modelInputFiles, writeFileAtomic } from "../files.js";
import { resolveModelDir } from "../model/resolve.js";
import { loadModel } from "../node.js";
import { readDataText } from "./eval.js";
import { cachedReadCeiling } from "./info.js";

export interface CalibrateFlags {
  context?: number;
  keepCr?: boolean;
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

export async function runCalibrate(flags: CalibrateFlags): Promise<void> {
  const text = await readDataText(flags.data, flags.keepCr);
  // A bad output path must fail now, not after the passes.
  const dir = resolveModelDir(flags.model);
  const out = flags.out ?? join(dir, "cats-thresholds.json");
  await checkOutputFile(flags.out ? "--out" : "thresholds file", out, [flags.data, ...(await modelInputFiles(dir))]);
  const lm = await withTuningBar((onTuneProgress) =>
    loadModel(flags.model, {
      flavour: flags.kernels,
      context: flags.context,
      variants: flags.variant,
      notice,
      onTuneProgress,
      capture: true,
      tuneBatchedOnly: true,
    }),
  );
  try {
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
    try {
      await writeFileAtomic(out, JSON.stringify(file) + "\n");
    } catch (e) {
      // Minutes of passes are not thrown away: the thresholds go to stdout, the error to stderr.
      process.stdout.write(JSON.stringify(file) + "\n");
      throw e;
    }
    // Batched passes reuse each weight across a tile of tokens, so they should beat what decoding one
    // token at a time could reach even at the adapter's full read rate.
    const prefillTokensPerS = (r.positions * passes) / (r.captureMs / 1000);
    const ceiling = cachedReadCeiling(lm.gpu);
    const decodeBound = ceiling === undefined ? null : (ceiling * 1e9) / lm.engine.weightBytesPerToken(null);
    const summary = {
      out,
      positions: r.positions,
      windows: r.windows,
      passes,
      capture_s: r.captureMs / 1000,
      quantiles_s: r.quantileMs / 1000,
      prefill_tokens_per_s: prefillTokensPerS,
      decode_bound_tokens_per_s: decodeBound,
      thresholds: file.thresholds,
    };
    if (flags.json) process.stdout.write(JSON.stringify(summary) + "\n");
    else {
      process.stdout.write(
        `wrote ${out}: ${r.positions} positions in ${r.windows} windows; GPU passes ${(r.captureMs / 1000).toFixed(1)} s, quantiles ${(r.quantileMs / 1000).toFixed(1)} s\n`,
      );
      const bound =
        decodeBound === null
          ? "run cats info for the read ceiling"
          : `dense decode at the read ceiling of ${ceiling!.toFixed(2)} GB/s: ${decodeBound.toFixed(1)} tok/s`;
      process.stdout.write(`  batched passes: ${prefillTokensPerS.toFixed(1)} tok/s over ${passes} passes (${bound})\n`);
      for (const [lv, t] of r.thresholds) process.stdout.write(`  level ${lv}: ${t.map((v) => v.toFixed(4)).join(" ")}\n`);
    }
  } finally {
    await lm.close();
  }
}
