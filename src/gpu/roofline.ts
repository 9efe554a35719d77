import type { GpuContext } from "./device.js";
import { Usage } from "./flags.js";
import type { BoundKernel, KernelCache } from "./kernel.js";
import { Submitter } from "./submit.js";
import { quantileOfSorted } from "../cats/quantiles.js";

/** Something to time: `encode` records one call; `bytes` is what one call reads. */
export interface Timed {
  name: string;
  bytes: number;
  encode: (pass: GPUComputePassEncoder, call: number) => void;
}

export interface PairedResult {
  name: string;
  bytes: number;
  /** Median over rounds. */
  ms: number;
  gbPerS: number;
  /** The case's GB/s over the reference's, measured back to back in each round: median, p25, p75. */
  share: { median: number; p25: number; p75: number };
  /** Fastest call over all rounds: on a shared machine noise only ever slows a call down. */
  bestMs: number;
  /** Milliseconds per call in each round, in round order (for pairing cases with one another). */
  roundMs: number[];
}

const MIN_SUBMISSION_MS = 20;

/**
 * Times cases against a reference on a shared, noisy machine: every round times the reference and
 * then each case right after it, so slow phases of the machine hit both; a case's share of the
 * reference is the median over rounds of the per-round ratio. Each timing is one submission of
 * enough calls to last about 20 ms.
 */
export class PairedTimer {
  private readonly submitter: Submitter;
  private readonly calls = new Map<string, number>();

  constructor(gpu: GpuContext) {
    this.submitter = new Submitter(gpu);
  }

  /** Milliseconds per call of `t`, over `calls` calls in one submission. */
  async time(t: Timed, calls: number): Promise<number> {
    const t0 = performance.now();
    await this.submitter.run(
      `timing ${t.name}`,
      (encoder) => {
        const pass = encoder.beginComputePass();
        for (let i = 0; i < calls; i++) t.encode(pass, i);
        pass.end();
      },
      [],
      t.name,
      calls,
    );
    return (performance.now() - t0) / calls;
  }

  private async callsFor(t: Timed): Promise<number> {
    let calls = this.calls.get(t.name);
    if (calls === undefined) {
      await this.time(t, 1);
      const ms = await this.time(t, 2);
      calls = Math.max(2, Math.ceil(MIN_SUBMISSION_MS / Math.max(ms, 0.01)));
      this.calls.set(t.name, calls);
    }
    return calls;
  }

  async paired(reference: Timed, cases: Timed[], rounds: number): Promise<{ reference: PairedResult; cases: PairedResult[] }> {
    const refMs: number[] = [];
    const caseMs = cases.map(() => [] as number[]);
    const ratios = cases.map(() => [] as number[]);
    const refCalls = await this.callsFor(reference);
    for (const c of cases) await this.callsFor(c);
    for (let r = 0; r < rounds; r++) {
      for (const [i, c] of cases.entries()) {
        const a = await this.time(reference, refCalls);
        const b = await this.time(c, this.calls.get(c.name)!);
        refMs.push(a);
        caseMs[i].push(b);
        ratios[i].push(c.bytes / b / (reference.bytes / a));
      }
    }
    const result = (t: Timed, ms: number[], share: number[]): PairedResult => {
      const sorted = [...share].sort((x, y) => x - y);
      const m = quantileOfSorted(
        [...ms].sort((x, y) => x - y),
        0.5,
      );
      return {
        name: t.name,
        bytes: t.bytes,
        bestMs: Math.min(...ms),
        roundMs: [...ms],
        ms: m,
        gbPerS: t.bytes / m / 1e6,
        share: { median: quantileOfSorted(sorted, 0.5), p25: quantileOfSorted(sorted, 0.25), p75: quantileOfSorted(sorted, 0.75) },
      };
    };
    return {
      reference: result(
        reference,
        refMs,
        refMs.map(() => 1),
      ),
      cases: cases.map((c, i) => result(c, caseMs[i], ratios[i])),
    };
  }

  destroy(): void {
    this.submitter.destroy();
  }
}

/** Streaming-read shapes tried for the ceiling: lanes per workgroup, vec4s per lane, loads per step. */
const STREAM_SHAPES: [number, number, number][] = [
  [8, 1024, 1],
  [64, 256, 1],
  [256, 64, 1],
  [8, 1024, 8],
  [8, 4096, 8],
  [8, 16384, 8],
];

/**
 * The adapter's read ceiling: a pure streaming-read kernel over a buffer much larger than any CPU
 * cache (the binding limit, at most 256 MiB), in the best of a few shapes. Returns the fastest
 * shape as a Timed, ready to pair kernels against.
 */
export async function readCeiling(
  gpu: GpuContext,
  kernels: KernelCache,
  rounds = 5,
): Promise<{ timed: Timed; gbPerS: number; shape: string; destroy: () => void }> {
  const device = gpu.device;
  const chunk = 256 * 1024 * 16;
  const bytes = Math.floor(Math.min(device.limits.maxStorageBufferBindingSize, 256 << 20) / chunk) * chunk;
  const buffer = device.createBuffer({ label: "read ceiling", size: bytes, usage: Usage.STORAGE });
  const sink = device.createBuffer({ label: "read ceiling sink", size: 16, usage: Usage.STORAGE });
  const timer = new PairedTimer(gpu);
  const candidates = STREAM_SHAPES.map(([wg, per, u]) => {
    const bound: BoundKernel = kernels
      .get({ file: "stream_read", consts: { WG: wg, PER: per, U: u } })
      .bind({ A: buffer, sink }, "read ceiling");
    const groups = bytes / 16 / (wg * per);
    const max = device.limits.maxComputeWorkgroupsPerDimension;
    const grid: [number, number, number] = [Math.min(groups, max), Math.ceil(groups / max), 1];
    return {
      name: `stream read, ${wg} lanes x ${per} vec4${u > 1 ? `, ${u} a step` : ""}`,
      bytes,
      encode: (pass: GPUComputePassEncoder) => bound.encode(pass, grid),
    } satisfies Timed;
  });
  const [first, ...rest] = candidates;
  const { reference, cases } = await timer.paired(first, rest, rounds);
  const all = [reference, ...cases];
  const best = all.reduce((a, b) => (b.gbPerS > a.gbPerS ? b : a));
  timer.destroy();
  return {
    timed: candidates[all.indexOf(best)],
    gbPerS: best.gbPerS,
    shape: best.name,
    destroy: () => {
      buffer.destroy();
      sink.destroy();
    },
  };
}
