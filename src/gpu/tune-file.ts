import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { TuneRecord, TuneStore } from "./autotune.js";

const FORMAT = "cats-autotune";
const VERSION = 1;

interface TuneFile {
  format: typeof FORMAT;
  version: typeof VERSION;
  entries: Record<string, TuneRecord>;
}

/** $CATS_CACHE_DIR, else $XDG_CACHE_HOME/cats, else ~/.cache/cats. */
export function cacheDir(): string {
  return process.env.CATS_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "cats");
}

function isRecord(v: unknown): v is TuneRecord {
  if (typeof v !== "object" || v === null) return false;
  const r = v as Partial<TuneRecord>;
  const choicesOk = typeof r.choices === "object" && r.choices !== null && Object.values(r.choices).every((c) => typeof c === "string");
  const ceilingOk = r.readCeilingGBs === undefined || (typeof r.readCeilingGBs === "number" && Number.isFinite(r.readCeilingGBs));
  const threadsOk =
    r.driverThreads === undefined ||
    (typeof r.driverThreads === "object" &&
      r.driverThreads !== null &&
      Object.values(r.driverThreads).every((t) => t === null || Number.isInteger(t)));
  return choicesOk && ceilingOk && threadsOk;
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
      const f = JSON.parse(text) as Partial<TuneFile>;
      if (f.format !== FORMAT || f.version !== VERSION || typeof f.entries !== "object" || f.entries === null)
        throw new Error(`not a ${FORMAT} v${VERSION} file`);
      for (const [key, record] of Object.entries(f.entries)) {
        if (!isRecord(record)) throw new Error(`entry "${key.slice(0, 40)}..." is malformed`);
      }
      this.entries = f.entries;
    } catch (e) {
      this.warn(`${path}: ignoring the kernel tuning cache (${(e as Error).message}); measuring again`);
    }
  }

  load(key: string): TuneRecord | undefined {
    return this.entries[key];
  }

  async save(key: string, record: TuneRecord): Promise<void> {
    this.entries[key] = record;
    const file: TuneFile = { format: FORMAT, version: VERSION, entries: this.entries };
    try {
      mkdirSync(join(this.path, ".."), { recursive: true });
      const tmp = `${this.path}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(file, null, 1) + "\n");
      renameSync(tmp, this.path);
    } catch (e) {
      this.warn(`${this.path}: cannot save the kernel tuning (${(e as Error).message}); it will be measured again next time`);
    }
  }
}
