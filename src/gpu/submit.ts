import { CatsError } from "../errors.js";
import type { GpuContext } from "./device.js";
import { MAP_READ, Usage } from "./flags.js";
import { withPausedPolls } from "./poll.js";

/** A range of a GPU buffer to bring back after a submission. */
export interface Readback {
  buffer: GPUBuffer;
  offset?: number;
  bytes: number;
}

const align4 = (n: number): number => Math.ceil(n / 4) * 4;
/**
 * Waits expected to be shorter than this poll flat out, as dawn.node does: a pause between polls
 * would be a large share of them (stories260K decodes a token in about 0.3 ms).
 */
const PAUSE_ABOVE_MS = 2;
/** The pause between polls, as a share of the expected wait and at most a millisecond: a late wake-up costs at most 2%. */
const PAUSE_SHARE = 0.02;
const MAX_PAUSE_MS = 1;

/**
 * Submits one command buffer of compute work, waits for it and reads ranges back through one
 * staging buffer it owns; every submission ends with the device's error check.
 *
 * Waiting: dawn.node settles GPU promises by polling on the main thread with setImmediate, which
 * keeps one CPU core busy for the whole wait. On CPU drivers that core is one the GPU work itself
 * needs, so where a submission is expected to run for a few milliseconds each poll is preceded by a
 * short sleep (poll.ts). Expectations are learned per `kind` of work.
 */
export class Submitter {
  private staging: GPUBuffer | null = null;
  private readonly expected = new Map<string, number>();

  constructor(private readonly gpu: GpuContext) {}

  /**
   * `kind` names the work for learning how long its waits run, per one of its `units` (decode
   * steps, tokens of a pass, calls of a timed kernel), so that a chain of 32 steps knows its wait
   * from single steps.
   */
  async run(
    what: string,
    encode: (encoder: GPUCommandEncoder) => void,
    reads: Readback[] = [],
    kind?: string,
    units = 1,
  ): Promise<Uint8Array[]> {
    const device = this.gpu.device;
    const encoder = device.createCommandEncoder();
    encode(encoder);
    const offsets: number[] = [];
    let total = 0;
    for (const r of reads) {
      offsets.push(total);
      total += align4(r.bytes);
    }
    if (total > 0) {
      if (!this.staging || this.staging.size < total) {
        this.staging?.destroy();
        this.staging = device.createBuffer({ label: "readback", size: Math.max(total, 256), usage: MAP_READ | Usage.COPY_DST });
      }
      reads.forEach((r, i) => encoder.copyBufferToBuffer(r.buffer, r.offset ?? 0, this.staging!, offsets[i], align4(r.bytes)));
    }
    const t0 = performance.now();
    device.queue.submit([encoder.finish()]);
    const wait = (): Promise<void> => (total > 0 ? this.staging!.mapAsync(MAP_READ, 0, total) : device.queue.onSubmittedWorkDone());
    const pause = this.pauseFor(kind, units);
    try {
      await (pause === null ? wait() : withPausedPolls(pause, wait));
    } catch (e) {
      this.gpu.check(what);
      throw new CatsError(`GPU readback failed during ${what}: ${(e as Error).message}`);
    }
    this.learn(kind, (performance.now() - t0) / units);
    const out: Uint8Array[] = [];
    if (total > 0) {
      const mapped = new Uint8Array(this.staging!.getMappedRange(0, total));
      reads.forEach((r, i) => out.push(mapped.slice(offsets[i], offsets[i] + r.bytes)));
      this.staging!.unmap();
    }
    this.gpu.check(what);
    return out;
  }

  /** Milliseconds to sleep before each poll of a wait for `units` of `kind`, or null to poll flat out. */
  private pauseFor(kind: string | undefined, units: number): number | null {
    if (!this.gpu.pollsWhileWaiting || kind === undefined) return null;
    const perUnit = this.expected.get(kind);
    if (perUnit === undefined) return null;
    const ms = perUnit * units;
    return ms > PAUSE_ABOVE_MS ? Math.min(MAX_PAUSE_MS, ms * PAUSE_SHARE) : null;
  }

  /** Learns milliseconds per unit of `kind`. */
  private learn(kind: string | undefined, ms: number): void {
    if (kind === undefined) return;
    const prev = this.expected.get(kind);
    // A slow outlier (a busy machine) should not lengthen later pauses: follow falls at once, rises slowly.
    this.expected.set(kind, prev === undefined || ms < prev ? ms : prev * 0.9 + ms * 0.1);
  }

  destroy(): void {
    this.staging?.destroy();
    this.staging = null;
  }
}
