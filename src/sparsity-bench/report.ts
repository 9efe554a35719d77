import type { EnergyMeter, MeterUnavailable } from "../energy/meter.js";
import { quantileOfSorted } from "../cats/quantiles.js";
import type { LevelSamples } from "./run.js";

/** A row's energy: per decoded token, from the meter that measured it. */
export type EnergyFigures = {
  source: string;
  joules_per_token: number;
  tokens_per_joule: number;
  domains_joules: Record<string, number>;
} | null;

export interface LevelReport extends Omit<RowFigures, "speedup" | "greedy_agreement"> {
  sparsity_target: number;
  thresholds_from: string;
  measured_sparsity: { overall: number; per_layer: number[] };
  /**
   * Dense decode time over this level's, paired by round: in each round the dense run and this
   * level's run decode back to back, so the ratio of their median steps cancels the slow and fast
   * spells of a shared machine that the pooled medians of the ms/token column keep. The median over
   * rounds, with its quartiles.
   */
  speedup_vs_dense: number;
  /**
   * The time saved per token as a share of the ideal saving from bytes, (1 - 1/speedup) / (1 - 1/ideal):
   * 1 when time falls with the bytes read; null for dense and where the level reads as much as dense.
   */
  ideal_saving_kept: number | null;
  greedy_agreement_with_dense: number;
  perplexity: number | null;
  /** Greedy ids of the last run (the prompt's continuation). */
  greedy_ids: number[];
}

export interface BenchReport {
  tool: "cats bench";
  runtime: string;
  model: { name: string; synthetic: boolean; note: string | null; weights: string | null };
  adapter: string;
  kernels: string;
  /** The adapter's streaming-read ceiling (`cats info`, cached), for the GB/s column; null where none is cached. */
  read_ceiling_gb_per_s: number | null;
  prompt_tokens: number;
  tokens: number;
  runs: number;
  /** Greedy decode steps per submission (1: every token submitted and read back on its own). */
  steps_per_submission: number;
  energy_meter: {
    source: string;
    description: string;
    constants: Record<string, number | string> | null;
    unavailable: MeterUnavailable[];
  } | null;
  levels: LevelReport[];
}

const sortedCopy = (v: number[]) => [...v].sort((a, b) => a - b);
const median = (v: number[]) => quantileOfSorted(sortedCopy(v), 0.5);

/** Per-round ratios of the dense run's median step to the level's (see LevelReport.speedup_vs_dense); runBench times every round at every level. */
function pairedSpeedup(dense: LevelSamples, level: LevelSamples): { median: number; p25: number; p75: number } {
  const n = Math.min(dense.runStepMs.length, level.runStepMs.length);
  const ratios = sortedCopy(Array.from({ length: n }, (_, r) => dense.runStepMs[r] / level.runStepMs[r]));
  return { median: quantileOfSorted(ratios, 0.5), p25: quantileOfSorted(ratios, 0.25), p75: quantileOfSorted(ratios, 0.75) };
}

export interface ReportContext {
  runtime: string;
  modelName: string;
  /** How the weights are stored (describeWeightFormat), where the runtime knows it. */
  weightFormat?: string;
  synthetic: boolean;
  adapter: string;
  kernels: string;
  promptTokens: number;
  tokens: number;
  runs: number;
  /** Greedy decode steps per submission (BenchPlan.chain); 1 where omitted. */
  chain?: number;
  meter: EnergyMeter | null;
  unavailable: MeterUnavailable[];
  /** The read ceiling measured on this adapter, where one is cached. */
  readCeilingGBs?: number;
  /** Weight bytes one decode step reads at each level (same order as the samples; [0] is dense). */
  weightBytes: number[];
  perplexity?: Map<number, number>;
  /** Host energy for runtimes where the meter cannot bracket each run (the browser): apportioned by decode time. */
  hostEnergy?: { source: string; description: string; joules: number };
}

/** What every benchmark row reports, whatever it compares (sparsity levels, or models). */
export interface RowFigures {
  prefill_tokens_per_s: number;
  decode_ms_per_token: { median: number; p10: number; p90: number };
  decode_tokens_per_s: number;
  weight_bytes_per_token: number;
  effective_gb_per_s: number;
  energy: EnergyFigures;
  /** This row's paired speed over the first row's (see LevelReport.speedup_vs_dense). */
  speedup: number;
  speedup_quartiles: { p25: number; p75: number };
  /** The first row's weight bytes per token over this row's. */
  ideal_speedup: number;
  /** Share of the first row's greedy ids this row reproduced. */
  greedy_agreement: number;
}

/** The figures of row `index` of `samples`, row 0 being the baseline (ctx: promptTokens, meter, hostEnergy). */
export function rowFigures(
  samples: LevelSamples[],
  index: number,
  weightBytes: number[],
  ctx: Pick<ReportContext, "promptTokens" | "meter" | "hostEnergy">,
): RowFigures {
  const s = samples[index];
  const first = samples[0];
  const totalDecodeMs = samples.reduce((a, x) => a + x.decodeMs.reduce((p, q) => p + q, 0), 0);
  const steps = sortedCopy(s.stepMs);
  const med = quantileOfSorted(steps, 0.5);
  const bytes = weightBytes[index];
  const decodeMs = s.decodeMs.reduce((a, b) => a + b, 0);
  let energy: RowFigures["energy"] = null;
  if (s.energy.length > 0 && ctx.meter) {
    const joules = s.energy.reduce((a, e) => a + e.joules, 0);
    const domains: Record<string, number> = {};
    for (const e of s.energy) for (const [k, v] of Object.entries(e.domains)) domains[k] = (domains[k] ?? 0) + v;
    energy = {
      source: ctx.meter.source,
      joules_per_token: joules / s.decodedTokens,
      tokens_per_joule: s.decodedTokens / joules,
      domains_joules: domains,
    };
  } else if (ctx.hostEnergy) {
    const joules = ctx.hostEnergy.joules * (decodeMs / totalDecodeMs);
    energy = {
      source: ctx.hostEnergy.source,
      joules_per_token: joules / s.decodedTokens,
      tokens_per_joule: s.decodedTokens / joules,
      domains_joules: {},
    };
  }
  const speedup = index === 0 ? { median: 1, p25: 1, p75: 1 } : pairedSpeedup(first, s);
  let same = 0;
  first.ids.forEach((id, i) => (same += s.ids[i] === id ? 1 : 0));
  return {
    prefill_tokens_per_s: ctx.promptTokens / (median(s.prefillMs) / 1000),
    decode_ms_per_token: { median: med, p10: quantileOfSorted(steps, 0.1), p90: quantileOfSorted(steps, 0.9) },
    // The median run, as every other speed here: over the runs' summed time, one stalled run of a
    // shared machine made a level's tokens/s contradict its ms/token and its speed-up.
    decode_tokens_per_s: s.decodedTokens / s.decodeMs.length / (median(s.decodeMs) / 1000),
    weight_bytes_per_token: bytes,
    effective_gb_per_s: bytes / med / 1e6,
    energy,
    speedup: speedup.median,
    speedup_quartiles: { p25: speedup.p25, p75: speedup.p75 },
    ideal_speedup: weightBytes[0] / bytes,
    greedy_agreement: first.ids.length > 0 ? same / first.ids.length : 1,
  };
}

/** The report's energy_meter block: the meter that bracketed each run, or the browser's host meter. */
export function meterSummary(ctx: Pick<ReportContext, "meter" | "unavailable" | "hostEnergy">): BenchReport["energy_meter"] {
  if (ctx.meter) {
    return {
      source: ctx.meter.source,
      description: ctx.meter.description,
      constants: ctx.meter.constants ?? null,
      unavailable: ctx.unavailable,
    };
  }
  if (ctx.hostEnergy) {
    return {
      source: ctx.hostEnergy.source,
      description: `${ctx.hostEnergy.description}; host meter around the page's benchmark loop (warm-up included), shared among levels by decode time`,
      constants: null,
      unavailable: ctx.unavailable,
    };
  }
  return null;
}

/** Where and how a benchmark ran, as every bench report opens. */
export type ReportHeader = Pick<
  BenchReport,
  | "runtime"
  | "adapter"
  | "kernels"
  | "read_ceiling_gb_per_s"
  | "prompt_tokens"
  | "tokens"
  | "runs"
  | "steps_per_submission"
  | "energy_meter"
>;

export function reportHeader(ctx: Omit<ReportContext, "modelName" | "synthetic" | "weightBytes">): ReportHeader {
  return {
    runtime: ctx.runtime,
    adapter: ctx.adapter,
    kernels: ctx.kernels,
    read_ceiling_gb_per_s: ctx.readCeilingGBs ?? null,
    prompt_tokens: ctx.promptTokens,
    tokens: ctx.tokens,
    runs: ctx.runs,
    steps_per_submission: ctx.chain ?? 1,
    energy_meter: meterSummary(ctx),
  };
}

export function buildReport(samples: LevelSamples[], ctx: ReportContext): BenchReport {
  const denseBytes = ctx.weightBytes[0];
  const levels = samples.map((s, index): LevelReport => {
    const f = rowFigures(samples, index, ctx.weightBytes, ctx);
    const bytes = f.weight_bytes_per_token;
    return {
      sparsity_target: s.level.level,
      thresholds_from: s.level.source,
      prefill_tokens_per_s: f.prefill_tokens_per_s,
      decode_ms_per_token: f.decode_ms_per_token,
      decode_tokens_per_s: f.decode_tokens_per_s,
      weight_bytes_per_token: bytes,
      effective_gb_per_s: f.effective_gb_per_s,
      energy: f.energy,
      measured_sparsity: { overall: s.sparsityOverall, per_layer: s.sparsityPerLayer },
      speedup_vs_dense: f.speedup,
      speedup_quartiles: f.speedup_quartiles,
      ideal_speedup: f.ideal_speedup,
      ideal_saving_kept: index === 0 || bytes >= denseBytes ? null : (1 - 1 / f.speedup) / (1 - bytes / denseBytes),
      greedy_agreement_with_dense: f.greedy_agreement,
      perplexity: ctx.perplexity?.get(s.level.level) ?? null,
      greedy_ids: s.ids,
    };
  });
  return {
    tool: "cats bench",
    model: {
      name: ctx.modelName,
      synthetic: ctx.synthetic,
      note: ctx.synthetic ? "SYNTHETIC checkpoint of a real shape: speed and energy only, perplexity and agreement are meaningless" : null,
      weights: ctx.weightFormat ?? null,
    },
    ...reportHeader(ctx),
    levels,
  };
}

export const fmt = (v: number | null | undefined, d: number) => (v === null || v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(d));

/** The table header's lines on the energy meter and the read ceiling, shared by every bench table. */
export function meterAndCeilingLines(r: Pick<BenchReport, "energy_meter" | "read_ceiling_gb_per_s">): string[] {
  return [
    r.energy_meter
      ? `Energy: ${r.energy_meter.source} — ${r.energy_meter.description}${r.energy_meter.constants ? `; constants ${JSON.stringify(r.energy_meter.constants)}` : ""}`
      : "Energy: not measured",
    r.read_ceiling_gb_per_s === null
      ? "GB/s: weight bytes read per second of decoding (no read ceiling cached for this adapter: run cats info)."
      : `GB/s: weight bytes read per second of decoding; this adapter's read ceiling is ${fmt(r.read_ceiling_gb_per_s, 2)} GB/s (cats info).`,
  ];
}

/**
 * A row's shared table cells, from prefill tok/s to the speed-up over the first row (`speedup`,
 * with its quartiles and the ideal), in the order of both bench tables' columns.
 */
export function figureCells(f: Omit<RowFigures, "speedup" | "greedy_agreement">, speedup: number): string[] {
  return [
    fmt(f.prefill_tokens_per_s, 0),
    `${fmt(f.decode_ms_per_token.median, 3)} (${fmt(f.decode_ms_per_token.p10, 3)}-${fmt(f.decode_ms_per_token.p90, 3)})`,
    fmt(f.decode_tokens_per_s, 1),
    fmt(f.weight_bytes_per_token / 1e6, 2),
    fmt(f.effective_gb_per_s, 2),
    f.energy ? fmt(f.energy.joules_per_token, 4) : "-",
    f.energy ? fmt(f.energy.tokens_per_joule, 1) : "-",
    `${fmt(speedup, 2)}x [${fmt(f.speedup_quartiles.p25, 2)}-${fmt(f.speedup_quartiles.p75, 2)}] (${fmt(f.ideal_speedup, 2)}x)`,
  ];
}

export function markdownTable(r: BenchReport): string {
  const head = [
    `**cats bench** — ${r.model.name}${r.model.synthetic ? " (SYNTHETIC: speed and energy only)" : ""}${r.model.weights ? ` (${r.model.weights})` : ""}, ${r.runtime}, ${r.adapter}, ${r.kernels} kernels; ` +
      `${r.prompt_tokens}-token prompt, ${r.tokens} greedy tokens (${r.steps_per_submission === 1 ? "one submission per token" : `${r.steps_per_submission} steps chained per submission`}), ${r.runs} runs per level, levels interleaved; medians; speed-up paired by round (median of per-round ratios, quartiles in brackets).`,
    ...meterAndCeilingLines(r),
    "",
    "| sparsity | measured | prefill tok/s | decode ms/tok (p10-p90) | decode tok/s | MB/token | GB/s | J/token | tok/J | speed-up [quartiles] (ideal) | ideal saving kept | perplexity | same as dense |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  const rows = r.levels.map((l) =>
    [
      `${fmt(l.sparsity_target * 100, 0)}%`,
      `${fmt(l.measured_sparsity.overall * 100, 1)}%`,
      ...figureCells(l, l.speedup_vs_dense),
      l.ideal_saving_kept === null ? "-" : `${fmt(l.ideal_saving_kept * 100, 0)}%`,
      fmt(l.perplexity, 3),
      `${fmt(l.greedy_agreement_with_dense * 100, 0)}%`,
    ].join(" | "),
  );
  return [...head, ...rows.map((x) => `| ${x} |`)].join("\n") + "\n";
}

/** Two panels, tokens/s and tokens/J against sparsity, as a standalone SVG. */
export function svgChart(r: BenchReport): string {
  const W = 360;
  const H = 240;
  const pad = { l: 56, r: 16, t: 36, b: 40 };
  const panel = (x0: number, title: string, values: (number | null)[]): string => {
    const pts = r.levels
      .map((l, i) => ({ x: l.sparsity_target, y: values[i] }))
      .filter((p): p is { x: number; y: number } => p.y !== null && Number.isFinite(p.y));
    const ymax = Math.max(1e-9, ...pts.map((p) => p.y)) * 1.15;
    const sx = (x: number) => x0 + pad.l + x * (W - pad.l - pad.r);
    const sy = (y: number) => pad.t + (1 - y / ymax) * (H - pad.t - pad.b);
    const line = pts.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(" ");
    const ticks = [0, 0.25, 0.5, 0.75, 1]
      .map((t) => `<text x="${sx(t).toFixed(1)}" y="${H - pad.b + 16}" text-anchor="middle">${t * 100}%</text>`)
      .join("");
    const yt = [0, 0.5, 1]
      .map((t) => `<text x="${x0 + pad.l - 6}" y="${(sy(t * ymax) + 4).toFixed(1)}" text-anchor="end">${(t * ymax).toPrecision(3)}</text>`)
      .join("");
    const dots = pts.map((p) => `<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3.5"/>`).join("");
    return (
      `<g><text x="${x0 + W / 2}" y="20" text-anchor="middle" font-weight="bold">${title}</text>` +
      `<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(1)}" y2="${sy(0)}" stroke="#888"/><line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(0)}" y2="${pad.t}" stroke="#888"/>` +
      `${ticks}${yt}<text x="${x0 + W / 2}" y="${H - 6}" text-anchor="middle">target sparsity</text>` +
      `<path d="${line}" fill="none" stroke="#1f77b4" stroke-width="2"/><g fill="#1f77b4">${dots}</g></g>`
    );
  };
  const energyLabel = r.energy_meter ? `tokens per joule (${r.energy_meter.source})` : "tokens per joule (not measured)";
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H + 20}" font-family="sans-serif" font-size="11">` +
    `<rect width="100%" height="100%" fill="white"/>` +
    panel(
      0,
      "decode tokens/s",
      r.levels.map((l) => l.decode_tokens_per_s),
    ) +
    panel(
      W,
      energyLabel,
      r.levels.map((l) => l.energy?.tokens_per_joule ?? null),
    ) +
    `<text x="${W}" y="${H + 14}" text-anchor="middle" fill="#555">${r.model.name}${r.model.synthetic ? " (synthetic)" : ""} — ${r.runtime}, ${r.kernels} kernels</text></svg>\n`
  );
}

/** Weight bytes per decode step at each level: dense for the dense level, else from the measured active fraction. */
export function levelWeightBytes(samples: LevelSamples[], bytesPerToken: (activeFraction: number[] | null) => number): number[] {
  return samples.map((s) => (s.level.source === "dense" ? bytesPerToken(null) : bytesPerToken(s.sparsityPerLayer.map((z) => 1 - z))));
}
