import { execFile } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MODELS, reference, ROOT, tempDir } from "./helpers.js";

function benchChrome(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(ROOT, "dist/bench/chrome.js"), ...args],
      { cwd: ROOT, timeout: 280_000, maxBuffer: 64 << 20 },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("headless Chromium", () => {
  it("runs the engine in a real browser and decodes reference.json's greedy ids", async () => {
    const ref = reference("stories260K");
    const out = tempDir("cats-chrome-");
    const r = await benchChrome([
      "--model",
      join(MODELS, "stories260K"),
      "--prompt",
      ref.prompt,
      "--tokens",
      "32",
      "--runs",
      "1",
      "--json",
      "--out",
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.runtime).toMatch(/^Chromium \d+/);
    expect(report.prompt_tokens).toBe(ref.prompt_ids.length);
    expect(report.levels[0].greedy_ids).toEqual(ref.greedy_new_ids);
    expect(report.levels[0].energy.source).toBe("estimate");
    expect(report.energy_meter.constants).toMatchObject({ utilisation: "system" });
  }, 300_000);
});
