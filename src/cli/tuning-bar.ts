import { Presets, SingleBar } from "cli-progress";
import type { TuneProgress } from "../gpu/autotune.js";

/**
 * A first-use tuning run's progress on stderr (drawn only on a terminal): on a CPU adapter a 7B-shaped
 * model measures for minutes, which should not look like a hang.
 */
class TuningBar {
  private bar: SingleBar | null = null;

  show(p: TuneProgress): void {
    const payload = { case: `${p.op} ${p.shape}` };
    // A run starting again (the driver-threads comparison loads the model a second way) restarts the bar.
    if (this.bar === null || p.done === 0) {
      this.bar?.stop();
      this.bar = new SingleBar(
        { format: "tuning [{bar}] {value}/{total} kernel cases | {case}", stream: process.stderr },
        Presets.shades_classic,
      );
      this.bar.start(p.total, p.done, payload);
    } else this.bar.update(p.done, payload);
  }

  stop(): void {
    this.bar?.update(this.bar.getTotal(), { case: "done" });
    this.bar?.stop();
    this.bar = null;
  }
}

/** Runs a model load with a tuning progress bar on stderr, stopped however the load ends. */
export async function withTuningBar<T>(load: (onTuneProgress: (p: TuneProgress) => void) => Promise<T>): Promise<T> {
  const bar = new TuningBar();
  try {
    return await load((p) => bar.show(p));
  } finally {
    bar.stop();
  }
}
