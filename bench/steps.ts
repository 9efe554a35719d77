/**
 * `npm run bench:steps`: where a decode token's time goes. After a prompt, times every dispatch of
 * one decode token (each repeated in one submission, so the figure is its time in a warm loop,
 * dispatch cost included), dense and at each CATS level, levels interleaved in every round.
 * Prints per op, summed over the layers, the median microseconds per token and, for sparse
 * levels, the time saved against dense; and the dispatches per token and per layer.
 * `--in-sequence` times each step inside whole tokens instead (a timestamped pass per step, levels
 * alternated token by token, rounds x calls tokens a level): a step repeated alone keeps its weights
 * in a CPU's caches, which a token's other weights evict, so the warm loop flatters what reads
 * scattered rows (llama-110m's CATS down projection: faster alone, slower than dense in a token).
 *   node dist/bench/steps.js [--model DIR] [--thresholds FILE --sparsity 0.5,0.7] [--rounds R] [--calls N] [--in-sequence] [--json]
 */
import { Command } from "commander";
import { kernelFlavour, positiveInt, sparsityLevels } from "../src/cli/args.js";
import { readThresholdsFile } from "../src/cli/sparsity.js";
import { checkThresholdsFile, thresholdsForLevel } from "../src/cats/thresholds.js";
import { encodeSteps } from "../src/engine/ops.js";
import { PairedTimer } from "../src/gpu/roofline.js";
import { CatsError } from "../src/errors.js";
import { loadModel } from "../src/node.js";
import { median } from "./stats.js";

const opts = new Command("bench-steps")
  .option("--model <dir>", "model directory or name")
  .option("--thresholds <file>", "CATS thresholds (cats calibrate)")
  .option("--sparsity <list>", "CATS levels to time besides dense", sparsityLevels)
  .option("--rounds <r>", "rounds, every level timed in each", positiveInt, 5)
  .option("--calls <n>", "calls of a step per timed submission", positiveInt, 20)
  .option("--kernels <flavour>", "cpu or gpu kernel variants", kernelFlavour)
  .option("--in-sequence", "time each step inside whole tokens, a timestamped pass per step (needs timestamp-query)")
  .option("--json", "print JSON")
  .parse()
  .opts<{
    model?: string;
    thresholds?: string;
    sparsity?: number[];
    rounds: number;
    calls: number;
    kernels?: string;
    inSequence?: boolean;
    json?: boolean;
  }>();

const wanted = (opts.sparsity ?? []).filter((k) => k > 0);
if (wanted.length > 0 && !opts.thresholds) {
  console.error("cats: bench:steps: --sparsity needs --thresholds FILE (from cats calibrate)");
  process.exit(2);
}
/** A bad model or thresholds file is one line, as the cats commands print it. */
async function orExit<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (!(e instanceof CatsError)) throw e;
    console.error(`cats: bench:steps: ${e.message}`);
    process.exit(1);
  }
}
// Dense steps with W_up in row blocks, CATS steps with it in rows, as cats bench measures them (UpLayout).
const lm = await orExit(() => loadModel(opts.model, { flavour: opts.kernels, upLayout: opts.thresholds ? "both" : "blocks" }));
const engine = lm.engine;
const levels = await orExit(async () => {
  const file = opts.thresholds
    ? await checkThresholdsFile(await readThresholdsFile(opts.thresholds), opts.thresholds, lm.checkpoint)
    : null;
  return [
    { label: "dense", thresholds: null as number[] | null },
    ...wanted.map((k) => ({ label: `${Math.round(k * 100)}%`, thresholds: thresholdsForLevel(file!, k, opts.thresholds!).thresholds })),
  ];
});
const promptIds = lm.tokenizer.encode("Once upon a time, there was a little girl named Lily. She loved to play outside");
await engine.prefill(promptIds);

// argmax advances the decode state, so it is left out of the repeated calls (it is one small dispatch).
// A CATS step may run its own list (its own down projection variant), so each level takes the list
// the engine runs once its thresholds are set.
const stepsNow = () => engine.decodeSteps.filter((s) => s.name !== "argmax");
const steps = stepsNow();
const opOf = (name: string) => name.replace(/^layer \d+ /, "");
// In sequence the token's argmax is timed too (its own pass).
const ops = [...new Set([...steps.map((s) => opOf(s.name)), ...(opts.inSequence ? ["argmax"] : [])])];
const layers = engine.config.numLayers;
const perLayer = steps.filter((s) => s.name.startsWith("layer 0 ")).length;
const timer = new PairedTimer(engine.gpu);
const samples = new Map<string, number[]>();
const add = (key: string, v: number) => samples.set(key, [...(samples.get(key) ?? []), v]);
if (opts.inSequence) {
  await orExit(async () => {
    for (let t = 0; t < opts.rounds * opts.calls; t++) {
      for (const level of levels) {
        engine.setThresholds(level.thresholds);
        if (engine.position + 1 >= engine.contextLength) {
          engine.reset();
          await engine.prefill(promptIds);
        }
        const timed = await engine.decodeTimed();
        const perOp = new Map<string, number>();
        for (const s of timed.steps) perOp.set(opOf(s.name), (perOp.get(opOf(s.name)) ?? 0) + s.ms * 1000);
        for (const [op, us] of perOp) add(`${level.label} ${op}`, us);
        add(
          `${level.label} token`,
          timed.steps.reduce((a, s) => a + s.ms * 1000, 0),
        );
      }
    }
  });
}
for (let r = 0; r < (opts.inSequence ? 0 : opts.rounds); r++) {
  for (const level of levels) {
    engine.setThresholds(level.thresholds);
    const levelSteps = stepsNow();
    // Untimed: the first submission after a change pays for it.
    await timer.time({ name: "warm-up", bytes: 0, encode: (pass) => encodeSteps(pass, levelSteps, 1) }, 1);
    const perOp = new Map<string, number>();
    for (const s of levelSteps) {
      const ms = await timer.time({ name: s.name, bytes: 0, encode: (pass) => encodeSteps(pass, [s], 1) }, opts.calls);
      perOp.set(opOf(s.name), (perOp.get(opOf(s.name)) ?? 0) + ms * 1000);
    }
    for (const [op, us] of perOp) add(`${level.label} ${op}`, us);
    const whole = await timer.time(
      { name: "token", bytes: 0, encode: (pass) => encodeSteps(pass, levelSteps, 1) },
      Math.max(2, Math.ceil(opts.calls / 4)),
    );
    add(`${level.label} token`, whole * 1000);
  }
}
timer.destroy();
engine.setThresholds(null);

const us = (label: string, op: string) => median(samples.get(`${label} ${op}`)!);
const rows = [...ops, "token"].map((op) => ({
  op,
  us: Object.fromEntries(levels.map((l) => [l.label, us(l.label, op)])),
}));
const a = lm.gpu.adapter;
if (opts.json) {
  console.log(
    JSON.stringify(
      { model: lm.dir, adapter: a.description || a.device, dispatchesPerToken: steps.length + 1, dispatchesPerLayer: perLayer, rows },
      null,
      2,
    ),
  );
} else {
  console.log(
    `model ${lm.dir}${lm.checkpoint.config.synthetic ? " (SYNTHETIC)" : ""}; adapter ${a.description || a.device}; ${lm.gpu.flavour} kernels; ` +
      `${steps.length + 1} dispatches per token (${perLayer} per layer x ${layers} + ${steps.length + 1 - perLayer * layers}); ` +
      (opts.inSequence
        ? `in sequence: medians of ${opts.rounds * opts.calls} tokens a level, a timestamped pass per step, levels alternated token by token`
        : `medians of ${opts.rounds} rounds`),
  );
  const head = levels.map((l, i) => (i === 0 ? "dense µs/token (share)" : `${l.label} µs/token (saved vs dense)`));
  console.log(`| op | ${head.join(" | ")} |\n|---|${levels.map(() => "---|").join("")}`);
  const total = us("dense", "token");
  for (const r of rows) {
    const cells = levels.map((l, i) => {
      const v = r.us[l.label];
      if (i === 0) return `${v.toFixed(0)} (${r.op === "token" ? "all" : `${((100 * v) / total).toFixed(0)}%`})`;
      return `${v.toFixed(0)} (${(r.us.dense - v).toFixed(0)})`;
    });
    const whole = opts.inSequence ? "whole token (its passes summed)" : "whole token (steps in sequence)";
    console.log(`| ${r.op === "token" ? whole : r.op} | ${cells.join(" | ")} |`);
  }
}
await lm.close();
process.exit(0);
