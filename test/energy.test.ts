import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { estimateEnergy, openEstimate, parseMeminfoUsedGb, parseProcStat, DEFAULT_ESTIMATE } from "../src/energy/estimate.js";
import type { EnergyMeter, MeterUnavailable } from "../src/energy/meter.js";
import { openNvml, parseEnergyQuery } from "../src/energy/nvml.js";
import { counterDelta, openRapl, type PowercapFs } from "../src/energy/rapl.js";
import { chooseMeter } from "../src/energy/select.js";
import { ROOT, tempDir } from "./helpers.js";

const FIXTURES = join(ROOT, "test/fixtures");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");
const isMeter = (m: EnergyMeter | MeterUnavailable): m is EnergyMeter => "start" in m;

function powercapCopy(): string {
  const dir = tempDir("cats-powercap-");
  cpSync(join(FIXTURES, "powercap-xeon"), dir, { recursive: true });
  return dir;
}
const setCounter = (root: string, domain: string, uj: number) => writeFileSync(join(root, domain, "energy_uj"), `${uj}\n`);

describe("RAPL meter on a powercap tree", () => {
  it("sums package and DRAM domains, not core, and handles a counter that wraps", async () => {
    const root = powercapCopy();
    const meter = await openRapl(root);
    if (!isMeter(meter)) throw new Error(meter.reason);
    expect(meter.source).toBe("rapl");
    expect(meter.description).toBe(`RAPL package-0 + dram-0 + package-1 + dram-1 via ${root}`);
    const mark = await meter.start();
    // package-0 wraps: 262140000000 -> max 262143328850 -> 1670000 (3.32885 J + 1.67 J).
    setCounter(root, "intel-rapl:0", 1_670_000);
    setCounter(root, "intel-rapl:0:0", 900_000_000); // core: inside package-0, must not be added
    setCounter(root, "intel-rapl:0:1", 7_500_000);
    setCounter(root, "intel-rapl:1", 10_000_000);
    setCounter(root, "intel-rapl:1:0", 9_250_000);
    const m = await meter.stop(mark);
    expect(m.domains["package-0"]).toBeCloseTo(4.99885, 9);
    expect(m.domains["dram-0"]).toBeCloseTo(2.5, 9);
    expect(m.domains["package-1"]).toBeCloseTo(3, 9);
    expect(m.domains["dram-1"]).toBeCloseTo(0.25, 9);
    expect(m.domains.core).toBeUndefined();
    expect(m.joules).toBeCloseTo(4.99885 + 2.5 + 3 + 0.25, 9);
  });

  it("computes counter deltas across one wrap", () => {
    expect(counterDelta(100, 250, 1000)).toBe(150);
    expect(counterDelta(900, 50, 1000)).toBe(150);
  });

  it("reports unreadable counters instead of ignoring them", async () => {
    const root = powercapCopy();
    const denied: PowercapFs = {
      readdir: (d) => readdir(d),
      async readText(f) {
        if (f.endsWith("energy_uj")) throw Object.assign(new Error(`EACCES: permission denied, open '${f}'`), { code: "EACCES", path: f });
        return readFile(f, "utf8");
      },
    };
    const m = await openRapl(root, denied);
    expect(isMeter(m)).toBe(false);
    expect((m as MeterUnavailable).reason).toMatch(/intel-rapl:0\/energy_uj: permission denied \(energy_uj is root-only/);
  });

  it("reports a machine without powercap", async () => {
    const m = await openRapl("/nonexistent/powercap");
    expect((m as MeterUnavailable).reason).toMatch(/not present/);
  });

  it("reports a corrupt counter", async () => {
    const root = powercapCopy();
    writeFileSync(join(root, "intel-rapl:1", "energy_uj"), "garbage\n");
    expect(((await openRapl(root)) as MeterUnavailable).reason).toMatch(
      /intel-rapl:1\/energy_uj: expected a whole number of microjoules, got "garbage"/,
    );
  });
});

describe("NVML meter through nvidia-smi", () => {
  it("turns the recorded total-energy counters into joules", async () => {
    const outputs = [fixture("nvidia-smi/h100-before.txt"), fixture("nvidia-smi/h100-before.txt"), fixture("nvidia-smi/h100-after.txt")];
    const calls: string[][] = [];
    const meter = await openNvml(async (cmd, args) => {
      calls.push([cmd, ...args]);
      return outputs.shift()!;
    });
    if (!isMeter(meter)) throw new Error(meter.reason);
    expect(meter.description).toMatch(/gpu0 \(NVIDIA H100 80GB HBM3\)/);
    const m = await meter.stop(await meter.start());
    expect(m.joules).toBeCloseTo(52.5, 9);
    expect(m.domains).toEqual({ gpu0: 52.5 });
    expect(calls[0]).toEqual(["nvidia-smi", "--query-gpu=index,name,total_energy_consumption", "--format=csv,noheader,nounits"]);
  });

  it("says why a GPU without the counter cannot be metered", async () => {
    const m = await openNvml(async () => fixture("nvidia-smi/k80-unsupported.txt"));
    expect((m as MeterUnavailable).reason).toMatch(/GPU 0 reports total_energy_consumption "\[N\/A\]"/);
    expect(() => parseEnergyQuery("")).toThrow(/listed no GPUs/);
  });

  it("says when there is no driver", async () => {
    const m = await openNvml(async () => {
      throw Object.assign(new Error("spawn nvidia-smi ENOENT"), { code: "ENOENT" });
    });
    expect((m as MeterUnavailable).reason).toBe("nvidia-smi not found (no NVIDIA driver)");
  });
});

describe("Green Algorithms estimate", () => {
  const c = { ...DEFAULT_ESTIMATE, cores: 4, wattsPerCore: 10, wattsPerGb: 0.3725, pue: 1.5 };

  it("applies (cores x W/core x utilisation + GB x W/GB) x PUE", () => {
    // 2 s wall, 4 CPU-seconds on 4 cores = 50% utilisation; 8 GB.
    const m = estimateEnergy(c, 2, 4, 8);
    expect(m.domains.cpu).toBeCloseTo(4 * 10 * 0.5 * 2 * 1.5, 9);
    expect(m.domains.memory).toBeCloseTo(8 * 0.3725 * 2 * 1.5, 9);
    expect(m.joules).toBeCloseTo(60 + 8.94, 9);
  });

  it("labels itself an estimate and prints its constants", () => {
    const meter = openEstimate({ cores: 4, wattsPerCore: 10 });
    expect(meter.source).toBe("estimate");
    expect(meter.description).toMatch(/^ESTIMATE/);
    expect(meter.constants).toMatchObject({ cores: 4, watts_per_core: 10, watts_per_gb: 0.3725, pue: 1 });
  });

  it("reads host memory in use from /proc/meminfo", () => {
    expect(parseMeminfoUsedGb("MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   20000000 kB\n")).toBeCloseTo(4096e-3, 9);
  });

  it("reads system utilisation from /proc/stat", async () => {
    expect(parseProcStat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n")).toEqual({ busy: 150, total: 1000 });
    const stats = ["cpu  100 0 0 900 0 0 0 0 0 0\n", "cpu  300 0 0 900 0 0 0 0 0 0\n"];
    const meter = openEstimate(
      { cores: 2, wattsPerCore: 10, memoryGb: 0, utilisation: "system" },
      {
        processCpuSeconds: () => 0,
        residentGb: () => 0,
        procStat: async () => stats.shift()!,
        usedMemoryGb: async () => 0,
      },
    );
    const mark = await meter.start();
    const m = await meter.stop(mark);
    // 2 CPU-seconds of busy jiffies; utilisation is capped at 1 over the short wall time.
    expect(m.domains.cpu).toBeCloseTo(2 * 10 * 1 * m.seconds, 6);
  });

  it("is what chooseMeter falls back to here, with the reasons the others were not used", async () => {
    const choice = await chooseMeter({
      powercapRoot: "/nonexistent/powercap",
      nvidiaAdapter: true,
      run: async () => fixture("nvidia-smi/k80-unsupported.txt"),
    });
    expect(choice.meter.source).toBe("estimate");
    expect(choice.unavailable.map((u) => u.source)).toEqual(["nvml", "rapl"]);
  });

  it("prefers RAPL over the estimate for work on the CPU", async () => {
    const choice = await chooseMeter({ powercapRoot: powercapCopy() });
    expect(choice.meter.source).toBe("rapl");
  });
});
