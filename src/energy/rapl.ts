import { readdir, readFile } from "node:fs/promises";

/** The two file-system calls the meter makes; tests substitute failures the kernel would give a non-root user. */
export interface PowercapFs {
  readdir(dir: string): Promise<string[]>;
  readText(file: string): Promise<string>;
}

const nodeFs: PowercapFs = { readdir: (d) => readdir(d), readText: (f) => readFile(f, "utf8") };
import { join } from "node:path";
import { counterMeter } from "./counter.js";
import type { EnergyMeter, MeterUnavailable } from "./meter.js";

export const POWERCAP_ROOT = "/sys/class/powercap";

interface RaplDomain {
  name: string;
  energyFile: string;
  /** The counter wraps to 0 after this many microjoules. */
  maxRangeUj: number;
}

async function readNumber(fs: PowercapFs, file: string): Promise<number> {
  const text = (await fs.readText(file)).trim();
  const v = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(v)) throw new Error(`${file}: expected a whole number of microjoules, got "${text}"`);
  return v;
}

function describeError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === "EACCES" || err.code === "EPERM")
    return `${err.path ?? "file"}: permission denied (energy_uj is root-only on most kernels; run as root or add a udev rule)`;
  return err.message ?? String(e);
}

/**
 * The package domains (intel-rapl:N) and their DRAM subdomains (intel-rapl:N:M named "dram").
 * Core/uncore subdomains are inside the package figure, so they are not added again.
 */
async function findDomains(fs: PowercapFs, root: string): Promise<RaplDomain[]> {
  const entries = (await fs.readdir(root)).filter((e) => /^intel-rapl:\d+(:\d+)?$/.test(e)).sort();
  const domains: RaplDomain[] = [];
  for (const entry of entries) {
    const dir = join(root, entry);
    const name = (await fs.readText(join(dir, "name"))).trim();
    const isPackage = /^intel-rapl:\d+$/.test(entry);
    if (!isPackage && name !== "dram") continue;
    const energyFile = join(dir, "energy_uj");
    domains.push({
      name: isPackage ? name : `${name}-${entry.split(":")[1]}`,
      energyFile,
      maxRangeUj: await readNumber(fs, join(dir, "max_energy_range_uj")),
    });
  }
  return domains;
}

/** Counter difference with one wrap-around allowed: the counter restarts at 0 after max_energy_range_uj. */
export function counterDelta(start: number, end: number, maxRange: number): number {
  return end >= start ? end - start : maxRange - start + end;
}

/** A RAPL meter over `root`, or the reason there is none (no powercap tree, unreadable counters). */
export async function openRapl(root = POWERCAP_ROOT, fs: PowercapFs = nodeFs): Promise<EnergyMeter | MeterUnavailable> {
  let domains: RaplDomain[];
  try {
    domains = await findDomains(fs, root);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOENT") return { source: "rapl", reason: `${root} not present (no RAPL on this machine or in this VM)` };
    return { source: "rapl", reason: describeError(e) };
  }
  if (domains.length === 0) return { source: "rapl", reason: `${root} has no intel-rapl package domains` };
  try {
    await Promise.all(domains.map((d) => readNumber(fs, d.energyFile)));
  } catch (e) {
    return { source: "rapl", reason: describeError(e) };
  }
  const byName = new Map(domains.map((d) => [d.name, d]));
  const read = async () =>
    Object.fromEntries(await Promise.all(domains.map(async (d) => [d.name, await readNumber(fs, d.energyFile)] as const)));
  return counterMeter(
    "rapl",
    `RAPL ${domains.map((d) => d.name).join(" + ")} via ${root}`,
    read,
    (name, start, end) => counterDelta(start, end, byName.get(name)!.maxRangeUj) / 1e6,
  );
}
