import type { GpuContext } from "./device.js";
import { Usage } from "./flags.js";
import type { KernelCache } from "./kernel.js";
import { PairedTimer, type Timed } from "./roofline.js";
import { tunedKey, VariantTable, type OpName, type TunedChoices } from "./variants.js";

/**
 * Where measured choices live between runs: a JSON file in Node, localStorage in a browser. Keyed
 * by what makes a measurement valid: the adapter, its driver and the kernels' source.
 */
export interface TuneStore {
  load(key: string): TuneRecord | undefined;
  save(key: string, record: TuneRecord): Promise<void>;
}

export interface TuneRecord {
  /** op + matrix shape -> variant name */
  choices: TunedChoices;
  /** The adapter's streaming read rate, GB/s (bench:kernels, cats info). */
  readCeilingGBs?: number;
  /** Per model shape, the CPU driver worker threads that decode fastest (null: the driver's default). */
  driverThreads?: Record<string, number | null>;
}

/** Where a tuning run stands as it starts a case: cases measured so far, of those it measures. */
export interface TuneProgress {
  done: number;
  total: number;
  op: OpName;
  shape: string;
}

/** One op at one shape to tune: how to build its steps with a forced variant, and what one call reads. */
export interface TuneCase {
  op: OpName;
  shape: string;
  bytes: number;
  /** Builds the op's dispatches with `table` deciding the variant; returns an encoder of call number `call` of a timing. */
  build: (table: VariantTable) => (pass: GPUComputePassEncoder, call: number) => void;
  /** Paired rounds for this case, where it needs more than tune()'s default. */
  rounds?: number;
}

/** A stable string for the adapter, its driver and the kernels: a measurement is valid while these hold. */
export function tuneKey(gpu: GpuContext, kernelsHash: string): string {
  const a = gpu.adapter;
  const threads = gpu.driverThreads === null ? "driver threads: default" : `driver threads: ${gpu.driverThreads}`;
  return [a.vendor, a.architecture, a.device, a.description, gpu.flavour, [...gpu.features].sort().join("+"), threads, kernelsHash].join(
    " | ",
  );
}

/** FNV-1a over the kernel sources: the tuning cache is redone whenever a kernel changes. */
export function hashSources(sources: string[]): string {
  let h = 0x811c9dc5;
  for (const s of sources) {
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return h.toString(16).padStart(8, "0");
}

/** How many of a screen's leaders are timed again against each other before one is kept. */
const FINALISTS = 3;
/** Only leaders within this share of the screen's best speed-up meet again; a clear winner is kept. */
const FINAL_MARGIN = 0.9;

/**
 * The candidates of a screen that meet again, best first: `score` is each one's median speed-up over
 * the first, timed back to back in every round, so a slow spell of the machine hits both sides of a
 * ratio (medians of raw times taken minutes apart drift with the machine: a slow spell in two rounds
 * of three once made a variant 7x faster lose; the single fastest call favours erratic variants: at
 * 11008x4096 the down projection's v1w8 had calls as fast as v2w8's, yet took 3.3x as long over 25
 * paired rounds). Ties go to the faster best call. The best of many noisy medians is biased towards a
 * lucky variant, so every leader within FINAL_MARGIN of the best is timed again.
 */
export function screenLeaders(score: number[], bestMs: number[]): number[] {
  const ranked = score.map((_, i) => i).sort((a, b) => score[b] - score[a] || bestMs[a] - bestMs[b]);
  return ranked.filter((i) => score[i] >= FINAL_MARGIN * score[ranked[0]]).slice(0, FINALISTS);
}

/** Which finalist wins, given the others' median speed-ups over the first (index 0): the first unless another is faster. */
export function finalWinner(sharesOverFirst: number[]): number {
  let pick = 0;
  let best = 1;
  sharesOverFirst.forEach((s, j) => {
    if (s > best) [pick, best] = [j + 1, s];
  });
  return pick;
}

/**
 * Measures every variant that suits this adapter for each case, each against the first in paired
 * rounds, then the (up to three) leaders within 10% of the highest median speed-up over it against
 * each other again, and keeps the one that wins that final. Cases already in `known` (or listed
 * twice) are skipped; a case that runs other ops too runs them with the choices made before it.
 * `onCase` hears of each case as it starts, with how far the run has come.
 */
export async function tune(
  gpu: GpuContext,
  cases: TuneCase[],
  known: TunedChoices,
  rounds = 3,
  onCase?: (c: TuneCase, progress: TuneProgress) => void,
): Promise<TunedChoices> {
  const out: TunedChoices = { ...known };
  const keys = new Set(Object.keys(known));
  const todo = cases.filter((c) => {
    const key = tunedKey(c.op, c.shape);
    const measured = keys.has(key) || new VariantTable(gpu).tuneCandidates(c.op).length < 2;
    keys.add(key);
    return !measured;
  });
  const timer = new PairedTimer(gpu);
  try {
    for (const [done, c] of todo.entries()) {
      const key = tunedKey(c.op, c.shape);
      const candidates = new VariantTable(gpu).tuneCandidates(c.op);
      onCase?.(c, { done, total: todo.length, op: c.op, shape: c.shape });
      const timed: Timed[] = candidates.map((v) => {
        // Earlier choices stand for the other ops a case runs (a composite case's parts).
        const encode = c.build(new VariantTable(gpu, { [c.op]: v.name }, out));
        return { name: `${c.op} ${c.shape} ${v.name}`, bytes: c.bytes, encode: (pass, call) => encode(pass, call) };
      });
      const [first, ...rest] = timed;
      const r = await timer.paired(first, rest, c.rounds ?? rounds);
      const finalists = screenLeaders(
        [1, ...r.cases.map((x) => x.share.median)],
        [r.reference, ...r.cases].map((x) => x.bestMs),
      );
      let pick = finalists[0];
      if (finalists.length > 1) {
        const [lead, ...others] = finalists.map((i) => timed[i]);
        const f = await timer.paired(lead, others, c.rounds ?? rounds);
        pick = finalists[finalWinner(f.cases.map((x) => x.share.median))];
      }
      out[key] = candidates[pick].name;
    }
  } finally {
    timer.destroy();
  }
  return out;
}

/** A fixed 32-bit hash of i (murmur3's finaliser): neighbouring i get unrelated values. */
function hash32(i: number): number {
  let h = Math.imul(i ^ (i >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Scratch buffers for tuning: filled with a pattern that is never zero, so nothing is skipped as
 * inactive; or, with `active` < 1, zero at that fraction of the entries scattered at random (a
 * fixed hash), as CATS leaves a decode step's activations. Not a multiplicative (Weyl) sequence:
 * its kept entries come almost evenly spaced, a pattern the hardware prefetcher follows and CATS
 * masks do not have (at 11008x4096 it made the down projection's half-active case look 1.5x faster).
 * `seed` gives another pattern.
 */
export function scratchBuffer(gpu: GpuContext, floats: number, label: string, active = 1, seed = 0): GPUBuffer {
  const values = new Float32Array(Math.max(floats, 16384));
  for (let i = 0; i < values.length; i++) {
    const kept = hash32(i + 1 + seed * values.length) < active * 2 ** 32;
    values[i] = kept ? 0.25 + ((i * 7919) % 97) / 200 : 0;
  }
  const b = gpu.device.createBuffer({
    label,
    size: values.byteLength,
    usage: Usage.STORAGE | Usage.UNIFORM | Usage.COPY_DST | Usage.COPY_SRC,
  });
  gpu.device.queue.writeBuffer(b, 0, values);
  return b;
}

export type { KernelCache };
