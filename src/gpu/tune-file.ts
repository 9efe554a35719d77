import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { TuneRecord, TuneStore } from "./autotune.js";
import { parseTuneCache, serializeTuneCache } from "./tune-format.js";

/** $CATS_CACHE_DIR, else $XDG_CACHE_HOME/cats, else ~/.cache/cats. */
export function cacheDir(): string {
  return process.env.CATS_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "cats");
}

/**
 * The autotuning results in one JSON file. A file that cannot be read as one is reported through
 * `warn` and ignored: the kernels are measured again and the file rewritten. Writes go to a
 * temporary file renamed over the old one, so a crash never leaves half a file.
 */
export class TuneFileStore implements TuneStore {
  private entries: Record<string, TuneRecord> = {};

  constructor(
    readonly path: string = join(cacheDir(), "autotune.json"),
    private readonly warn: (message: string) => void = () => {},
  ) {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch {
      return; // no cache yet
    }
    try {
      this.entries = parseTuneCache(text);
    } catch (e) {
      this.warn(`${path}: ignoring the kernel tuning cache (${(e as Error).message}); measuring again`);
    }
  }

  load(key: string): TuneRecord | undefined {
    return this.entries[key];
  }

  async save(key: string, record: TuneRecord): Promise<void> {
    this.entries[key] = record;
    try {
      mkdirSync(join(this.path, ".."), { recursive: true });
      const tmp = `${this.path}.${process.pid}.tmp`;
      writeFileSync(tmp, serializeTuneCache(this.entries));
      renameSync(tmp, this.path);
    } catch (e) {
      this.warn(`${this.path}: cannot save the kernel tuning (${(e as Error).message}); it will be measured again next time`);
    }
  }
}
