import { CatsError } from "../errors.js";
import type { GpuContext } from "./device.js";
import { MAP_READ, Usage } from "./flags.js";

/** A range of a GPU buffer to bring back after a submission. */
export interface Readback {
  buffer: GPUBuffer;
  offset?: number;
  bytes: number;
}

const align4 = (n: number): number => Math.ceil(n / 4) * 4;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/** Below this, a wait is too short for a timer (Node's fire a millisecond or more late): poll. */
const SLEEP_ABOVE_MS = 3;

/**
 * Submits one command buffer of compute work, waits for it and reads ranges back through one
 * staging buffer it owns; every submission ends with the device's error check.
 *
 * Waiting: dawn.node resolves GPU promises by polling on the main thread with setImmediate, which
 * keeps one CPU core busy for the whole wait. On CPU drivers that core is one the GPU work itself
 * needs, so when a submission is expected to run for a few milliseconds the wait first sleeps for
 * most of that time and only then starts the poll. Expectations are learned per `kind` of work.
 */
export class Submitter {
  private staging: GPUBuffer | null = null;
  private readonly expected = new Map<string, number>();

  constructor(private readonly gpu: GpuContext) {}

  async run(what: string, encode: (encoder: GPUCommandEncoder) => void, reads: Readback[] = [], kind?: string): Promise<Uint8Array[]> {
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
    await this.sleepThroughWork(kind);
    try {
      if (total > 0) await this.staging!.mapAsync(MAP_READ, 0, total);
      else await device.queue.onSubmittedWorkDone();
    } catch (e) {
      this.gpu.check(what);
      throw new CatsError(`GPU readback failed during ${what}: ${(e as Error).message}`);
    }
    this.learn(kind, performance.now() - t0);
    const out: Uint8Array[] = [];
    if (total > 0) {
      const mapped = new Uint8Array(this.staging!.getMappedRange(0, total));
      reads.forEach((r, i) => out.push(mapped.slice(offsets[i], offsets[i] + r.bytes)));
      this.staging!.unmap();
    }
    this.gpu.check(what);
    return out;
  }

  private async sleepThroughWork(kind: string | undefined): Promise<void> {
    if (!this.gpu.pollsWhileWaiting || kind === undefined) return;
    const ms = this.expected.get(kind);
    // Timers fire late by up to a millisecond or so: sleep well short of the expected end.
    if (ms !== undefined && ms > SLEEP_ABOVE_MS) await sleep(ms * 0.8 - 1.5);
  }

  private learn(kind: string | undefined, ms: number): void {
    if (kind === undefined) return;
    const prev = this.expected.get(kind);
    // A slow outlier (a busy machine) should not make later waits oversleep: follow falls at once, rises slowly.
    this.expected.set(kind, prev === undefined || ms < prev ? ms : prev * 0.9 + ms * 0.1);
  }

  destroy(): void {
    this.staging?.destroy();
    this.staging = null;
  }
}
