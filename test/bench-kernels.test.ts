import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers.js";

interface Row {
  kernel: string;
  name: string;
  bytes: number;
  active: number;
  ms: number;
}

describe("bench:kernels --mlp-parts", () => {
  it("times gate/up and down alone at every level, their bytes adding up to the MLP's", () => {
    const args = ["--shapes", "", "--mlp", "64x128", "--mlp-parts", "--rounds", "1", "--json"];
    const r = spawnSync(process.execPath, [join(ROOT, "dist/bench/kernels.js"), ...args], { encoding: "utf8", timeout: 240_000 });
    expect(r.status, r.stderr).toBe(0);
    const rows = (JSON.parse(r.stdout) as { rows: Row[] }).rows;
    const levels = ["dense", "sparse 0%", "sparse 50%", "sparse 70%", "sparse 90%"];
    expect(rows.map((row) => row.name)).toEqual(levels.flatMap((l) => ["mlp", "gate_up", "down"].map((p) => `${p} 64x128 f16 ${l}`)));
    // f16 rows of 64 columns: 128 bytes each, W_gate read whole, W_up and W_down^T rows as active.
    const rowBytes = 64 * 2;
    for (const [i, level] of levels.entries()) {
      const [mlp, gateUp, down] = rows.slice(3 * i, 3 * i + 3);
      expect(gateUp.kernel, level).toMatch(/^gate_up \(/);
      expect(down.kernel, level).toMatch(/^down \(v\w+/);
      expect(new Set([mlp.active, gateUp.active, down.active]).size, level).toBe(1);
      const active = Math.round(mlp.active * 128);
      expect(gateUp.bytes, level).toBe(128 * rowBytes + active * rowBytes);
      expect(down.bytes, level).toBe(active * rowBytes);
      expect(gateUp.bytes + down.bytes, level).toBe(mlp.bytes);
      for (const row of [mlp, gateUp, down]) expect(row.ms, row.name).toBeGreaterThan(0);
    }
    // Thresholds at exact quantiles of the MLP's own activations.
    expect(rows[3 * 2].active).toBeCloseTo(0.5, 1);
    expect(rows[3 * 3].active).toBeCloseTo(0.3, 1);
    expect(rows[3 * 4].active).toBeCloseTo(0.1, 1);
  });
});
