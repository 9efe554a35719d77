import { describe, expect, it } from "vitest";
import { buildReport, markdownTable, type ReportContext } from "../src/sparsity-bench/report.js";
import { runBench, type LevelSamples } from "../src/sparsity-bench/run.js";
import type { LlamaEngine } from "../src/engine/llama.js";

/** One level's samples from its runs' step latencies (run r of every level ran in round r). */
function samples(level: number, runs: number[][]): LevelSamples {
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];
  return {
    level: { level, source: level === 0 ? "dense" : "exact", thresholds: [] },
    prefillMs: runs.map(() => 10),
    stepMs: runs.flat(),
    runStepMs: runs.map(median),
    decodeMs: runs.map((r) => r.reduce((a, b) => a + b, 0)),
    decodedTokens: runs.flat().length,
    energy: [],
    sparsityPerLayer: [level],
    sparsityOverall: level,
    ids: [1, 2, 3],
  };
}

const context = (weightBytes: number[]): ReportContext => ({
  runtime: "test",
  modelName: "m",
  synthetic: true,
  adapter: "a",
  kernels: "cpu",
  promptTokens: 4,
  tokens: 4,
  runs: 5,
  meter: null,
  unavailable: [],
  weightBytes,
});

describe("cats bench report", () => {
  it("pairs each level's run with the dense run of its round, so the machine's slow spells cancel", () => {
    // Rounds 3 and 4 ran 3x slow. The sparse level is as fast as dense in rounds 0-1 and 1.5x
    // faster in rounds 2-4: paired by round, 1.5x. Pooled medians compare dense's fast rounds with
    // sparse's middle one (10 ms against 10 ms) and read 1.0x.
    const dense = samples(0, [[10], [10], [10], [30], [30]]);
    const sparse = samples(0.5, [[10], [10], [10 / 1.5], [20], [20]]);
    const r = buildReport([dense, sparse], context([150, 100]));
    const [d, s] = r.levels;
    expect(d.speedup_vs_dense).toBe(1);
    expect(s.speedup_vs_dense).toBeCloseTo(1.5, 12);
    expect(s.speedup_quartiles).toEqual({ p25: 1, p75: 1.5 });
    expect(s.ideal_speedup).toBeCloseTo(1.5, 12);
    expect(s.ideal_saving_kept).toBeCloseTo(1, 12);
    // The latency column stays the pooled median over every step of every run.
    expect(s.decode_ms_per_token.median).toBe(10);
    expect(markdownTable(r)).toContain("| 1.50x [1.00-1.50] (1.50x) | 100% |");
  });

  it("gives the quartiles of the per-round ratios, and half the ideal saving when half the time is saved", () => {
    const dense = samples(0, [[10], [10], [10], [10]]);
    // Ratios 1.0, 1.1, 1.2, 1.3 in rounds 0..3: median 1.15.
    const sparse = samples(0.5, [[10], [10 / 1.1], [10 / 1.2], [10 / 1.3]]);
    const [, s] = buildReport([dense, sparse], context([100, 50])).levels;
    expect(s.speedup_vs_dense).toBeCloseTo(1.15, 9);
    expect(s.speedup_quartiles.p25).toBeLessThan(s.speedup_vs_dense);
    expect(s.speedup_quartiles.p75).toBeGreaterThan(s.speedup_vs_dense);
    expect(s.ideal_saving_kept).toBeCloseTo((1 - 1 / 1.15) / 0.5, 9);
  });

  it("gives the median run's tokens/s, so one stalled run does not contradict the level's ms/token and speed-up", () => {
    // Five runs of 4 steps of 10 ms; one run stalled on a step of 400 ms.
    const runs = [
      [10, 10, 10, 10],
      [10, 10, 10, 10],
      [10, 10, 10, 400],
      [10, 10, 10, 10],
      [10, 10, 10, 10],
    ];
    const [d] = buildReport([samples(0, runs)], context([100])).levels;
    expect(d.decode_ms_per_token.median).toBe(10);
    expect(d.decode_tokens_per_s).toBeCloseTo(100, 9);
  });

  it("refuses a run with no decode step to time, in one line, before touching the engine", async () => {
    const plan = { promptIds: [1, 2], tokens: 1, runs: 1, levels: [], meter: null };
    await expect(runBench({} as LlamaEngine, plan)).rejects.toThrow(
      /^--tokens 1: expected at least 2 \(the first token comes from the prefill; decode steps are timed from the second\)$/,
    );
  });
});
