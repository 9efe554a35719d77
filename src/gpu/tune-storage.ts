import type { TuneRecord, TuneStore } from "./autotune.js";
import { parseTuneCache, serializeTuneCache } from "./tune-format.js";

/**
 * The autotuning cache of a browser page in localStorage, the same format as the Node file. An
 * unreadable item is reported through `warn` and replaced by the next measurement; a full or
 * disabled storage only means measuring again next time.
 */
export class LocalStorageTuneStore implements TuneStore {
  private entries: Record<string, TuneRecord> = {};

  constructor(
    private readonly storage: Storage,
    readonly item = "cats-autotune",
    private readonly warn: (message: string) => void = () => {},
  ) {
    const text = storage.getItem(item);
    if (text === null) return;
    try {
      this.entries = parseTuneCache(text);
    } catch (e) {
      this.warn(`localStorage "${item}": ignoring the kernel tuning cache (${(e as Error).message}); measuring again`);
    }
  }

  load(key: string): TuneRecord | undefined {
    return this.entries[key];
  }

  async save(key: string, record: TuneRecord): Promise<void> {
    this.entries[key] = record;
    try {
      this.storage.setItem(this.item, serializeTuneCache(this.entries));
    } catch (e) {
      this.warn(`localStorage "${this.item}": cannot save the kernel tuning (${(e as Error).message})`);
    }
  }
}
