/**
 * Pauses between dawn.node's polls of the GPU.
 *
 * dawn.node settles GPU promises (mapAsync, onSubmittedWorkDone) by polling Dawn from a setImmediate
 * loop on the main thread, looking up the global `setImmediate` for every poll: a core spins for the
 * whole wait (about 4,000 polls in one llama-110m decode step on lavapipe). On a CPU driver that core
 * is one the driver's threads need for the very work being waited on, and the driver's queue thread,
 * which ends the submission, queues for a core too: the promise settled 0.4-8 ms after the pass's end
 * timestamp. While a long wait is under way the global is swapped for one that first sleeps a short
 * pause (Atomics.wait blocks the thread without spinning); the event loop still turns between polls.
 */

type Immediate = (callback: (...args: unknown[]) => void, ...args: unknown[]) => unknown;
type WithImmediate = { setImmediate?: Immediate };

const cell = typeof SharedArrayBuffer === "function" ? new Int32Array(new SharedArrayBuffer(4)) : null;
let waiting = 0;
let pauseMs = Infinity;
let original: Immediate | null = null;

function pause(): void {
  try {
    Atomics.wait(cell!, 0, 0, pauseMs);
  } catch {
    // A runtime that forbids blocking this thread polls at once, as before.
  }
}

/** Runs `wait` (a promise dawn.node settles by polling) with `ms` of sleep before each poll. */
export async function withPausedPolls<T>(ms: number, wait: () => Promise<T>): Promise<T> {
  const g = globalThis as WithImmediate;
  if (cell === null || typeof g.setImmediate !== "function") return wait();
  if (waiting++ === 0) {
    const immediate = g.setImmediate;
    original = immediate;
    pauseMs = ms;
    g.setImmediate = (callback, ...args) => {
      pause();
      return immediate(callback, ...args);
    };
  } else {
    // Nested waits (two engines in one process): the shorter pause serves both.
    pauseMs = Math.min(pauseMs, ms);
  }
  try {
    return await wait();
  } finally {
    if (--waiting === 0) {
      g.setImmediate = original!;
      original = null;
      pauseMs = Infinity;
    }
  }
}
