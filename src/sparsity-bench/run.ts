import { CatsError } from "../errors.js";
import { quantileOfSorted } from "../cats/quantiles.js";
import type { LayerThresholds } from "../cats/thresholds.js";
import type { EnergyMeasurement, EnergyMeter } from "../energy/meter.js";
import type { LlamaEngine } from "../engine/llama.js";

const STORY = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. ";

/**
 * The benchmark's prompt: `n` tokens (BOS first when the model has one) from `text`, or from a
 * repeated short story. The CLI and the browser page use the same one.
 */
export function benchPrompt(encode: (text: string, withBos: boolean) => number[], bos: number | null, n: number, text?: string): number[] {
  const source = encode(text ?? STORY.repeat(Math.ceil(n / 8) + 1), false);
  if (source.length < n - 1) throw new CatsError(`--prompt-tokens ${n}: the text gives only ${source.length} tokens`);
  return bos === null ? source.slice(0, n) : [bos, ...source.slice(0, n - 1)];
}

/** Raw measurements of one sparsity level over all runs. No Node APIs: the browser page runs this too. */
export interface LevelSamples {
  level: LayerThresholds;
  prefillMs: number[];
  /** Latency of every decode step of every run. */
  stepMs: number[];
  /** Median step latency of each run, in run order: run r of every level ran in the same round. */
  runStepMs: number[];
  decodeMs: number[];
  decodedTokens: number;
  /** Decode-phase energy of each run, when a meter runs in the same process. */
  energy: EnergyMeasurement[];
  /** Share of neurons zeroed during decode steps, per layer, over all runs. */
  sparsityPerLayer: number[];
  sparsityOverall: number;
  /** Greedy ids of the last run. */
  ids: number[];
}

export interface BenchPlan {
  promptIds: number[];
  tokens: number;
  runs: number;
  /**
   * Greedy decode steps per submission: 1 (the default) submits and reads back every token, as
   * `cats generate` runs when it samples; more chains them, as greedy `generate` does. A chained
   * step's latency is its chunk's time over its steps.
   */
  chain?: number;
  /** Levels to compare; the dense level (0) is always first. */
  levels: LayerThresholds[];
  meter: EnergyMeter | null;
  /** Called before each measured run with the index of its level (its arm, for runArms) and its round. */
  onRun?: (arm: number, run: number) => void;
}

async function oneRun(engine: LlamaEngine, plan: Omit<BenchPlan, "levels">, s: LevelSamples): Promise<void> {
  // Level 0 is the dense engine itself, the baseline every speed-up is measured against.
  engine.setThresholds(s.level.source === "dense" ? null : s.level.thresholds);
  engine.reset();
  const t0 = performance.now();
  const first = await engine.prefill(plan.promptIds);
  const t1 = performance.now();
  await engine.takeSparsityStats(); // drop prefill's counts: the figure is about decode
  const mark = plan.meter ? await plan.meter.start() : null;
  const ids = [first.token];
  const d0 = performance.now();
  const steps: number[] = [];
  const chain = plan.chain ?? 1;
  for (let i = 1; i < plan.tokens;) {
    const n = Math.min(chain, plan.tokens - i);
    const a = performance.now();
    if (chain === 1) ids.push((await engine.decode()).token);
    else ids.push(...(await engine.decodeGreedy(n)));
    const perStep = (performance.now() - a) / n;
    for (let j = 0; j < n; j++) steps.push(perStep);
    i += n;
  }
  s.stepMs.push(...steps);
  const sortedSteps = [...steps].sort((x, y) => x - y);
  if (steps.length > 0) s.runStepMs.push(quantileOfSorted(sortedSteps, 0.5));
  s.decodeMs.push(performance.now() - d0);
  if (plan.meter && mark) s.energy.push(await plan.meter.stop(mark));
  s.prefillMs.push(t1 - t0);
  s.decodedTokens += plan.tokens - 1;
  s.ids = ids;
  const stats = await engine.takeSparsityStats();
  const n = s.decodeMs.length;
  // Running mean over runs, weighted alike (every run decodes the same number of tokens).
  s.sparsityPerLayer = stats.perLayer.map((v, i) => ((s.sparsityPerLayer[i] ?? 0) * (n - 1) + v) / n);
  s.sparsityOverall = ((s.sparsityOverall ?? 0) * (n - 1) + stats.overall) / n;
}

/** Refuses a `--chain` the engine cannot run in one submission. */
export function checkChain(chain: number, maxChain: number): void {
  if (!Number.isInteger(chain) || chain < 1 || chain > maxChain) {
    throw new CatsError(`--chain ${chain}: expected a whole number of steps per submission from 1 to ${maxChain}`);
  }
}

/** One row of a benchmark: an engine decoding at a level (a CATS level of one model, or one of several models dense). */
export interface BenchArm {
  engine: LlamaEngine;
  level: LayerThresholds;
}

/**
 * Warm-up, then `runs` rounds of prefill + greedy decode at every level, levels interleaved run by
 * run so that drift of a shared machine hits them alike. Decode is one submission per token, as
 * `cats generate` runs when it samples, or `plan.chain` greedy steps per submission, as it runs at
 * temperature 0.
 */
export async function runBench(engine: LlamaEngine, plan: BenchPlan): Promise<LevelSamples[]> {
  return runArms(
    plan.levels.map((level) => ({ engine, level })),
    plan,
  );
}

/** runBench over arms that may each have their own engine (`cats bench --compare`): the same rounds, interleaved arm by arm. */
export async function runArms(arms: BenchArm[], plan: Omit<BenchPlan, "levels">): Promise<LevelSamples[]> {
  if (plan.tokens < 2) {
    throw new CatsError(
      `--tokens ${plan.tokens}: expected at least 2 (the first token comes from the prefill; decode steps are timed from the second)`,
    );
  }
  for (const { engine } of arms) {
    checkChain(plan.chain ?? 1, engine.maxChain);
    const room = engine.contextLength - plan.promptIds.length;
    if (room < 1) {
      throw new CatsError(
        `--prompt-tokens ${plan.promptIds.length}: expected at most ${engine.contextLength - 1}, so that the model's ${engine.contextLength}-token context leaves room to decode`,
      );
    }
    if (plan.tokens > room) {
      throw new CatsError(
        `--tokens ${plan.tokens} does not fit: a ${plan.promptIds.length}-token prompt leaves ${room} positions of the model's ${engine.contextLength}-token context`,
      );
    }
  }
  const samples: LevelSamples[] = arms.map(({ level }) => ({
    level,
    prefillMs: [],
    stepMs: [],
    runStepMs: [],
    decodeMs: [],
    decodedTokens: 0,
    energy: [],
    sparsityPerLayer: [],
    sparsityOverall: 0,
    ids: [],
  }));
  for (let i = 0; i < arms.length; i++) {
    const warm: LevelSamples = {
      ...samples[i],
      prefillMs: [],
      stepMs: [],
      runStepMs: [],
      decodeMs: [],
      energy: [],
      sparsityPerLayer: [],
      decodedTokens: 0,
    };
    await oneRun(arms[i].engine, { ...plan, meter: null }, warm);
  }
  for (let r = 0; r < plan.runs; r++) {
    for (let i = 0; i < arms.length; i++) {
      plan.onRun?.(i, r);
      await oneRun(arms[i].engine, plan, samples[i]);
    }
  }
  for (const { engine } of arms) engine.setThresholds(null);
  return samples;
}
