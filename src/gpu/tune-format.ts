import type { TuneRecord } from "./autotune.js";

/** The autotuning cache as stored (a JSON file in Node, a localStorage item in a browser). */
const FORMAT = "cats-autotune";
const VERSION = 1;

interface TuneFile {
  format: typeof FORMAT;
  version: typeof VERSION;
  entries: Record<string, TuneRecord>;
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

/** The entries of a stored cache; throws an Error saying what is wrong with it. */
export function parseTuneCache(text: string): Record<string, TuneRecord> {
  const f = JSON.parse(text) as Partial<TuneFile>;
  if (f.format !== FORMAT || f.version !== VERSION || typeof f.entries !== "object" || f.entries === null)
    throw new Error(`not a ${FORMAT} v${VERSION} file`);
  for (const [key, record] of Object.entries(f.entries)) {
    if (!isRecord(record)) throw new Error(`entry "${key.slice(0, 40)}..." is malformed`);
  }
  return f.entries;
}

export function serializeTuneCache(entries: Record<string, TuneRecord>): string {
  const file: TuneFile = { format: FORMAT, version: VERSION, entries };
  return JSON.stringify(file, null, 1) + "\n";
}
