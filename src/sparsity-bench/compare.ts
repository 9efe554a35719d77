import {
  figureCells,
  fmt,
  meterAndCeilingLines,
  reportHeader,
  rowFigures,
  type ReportContext,
  type ReportHeader,
  type RowFigures,
} from "./report.js";
import type { LevelSamples } from "./run.js";

/** One model of `cats bench --compare`: its weights and its dense decoding against the first model's. */
export interface ModelReport extends Omit<RowFigures, "speedup" | "greedy_agreement"> {
  model: string;
  synthetic: boolean;
  /** How the weights are stored (describeWeightFormat and the row-block layout). */
  weights: string;
  speedup_vs_first: number;
  greedy_agreement_with_first: number;
  perplexity: number | null;
  greedy_ids: number[];
}

/**
 * `cats bench --compare`: several checkpoints of one tokenizer (f16 against its q8 and q4
 * quantizations, say) decoding the same prompt dense, run by run in turn, so that the speed-ups of
 * fewer weight bytes are paired by round as CATS levels are.
 */
export interface CompareReport extends ReportHeader {
  tool: "cats bench --compare";
  models: ModelReport[];
}

export interface CompareModel {
  name: string;
  synthetic: boolean;
  weights: string;
  weightBytesPerToken: number;
  perplexity: number | null;
}

export function buildCompareReport(
  samples: LevelSamples[],
  models: CompareModel[],
  ctx: Omit<ReportContext, "modelName" | "weightFormat" | "synthetic" | "weightBytes" | "perplexity" | "hostEnergy">,
): CompareReport {
  const bytes = models.map((m) => m.weightBytesPerToken);
  return {
    tool: "cats bench --compare",
    ...reportHeader(ctx),
    models: models.map((m, i): ModelReport => {
      const { speedup, greedy_agreement, ...figures } = rowFigures(samples, i, bytes, ctx);
      return {
        model: m.name,
        synthetic: m.synthetic,
        weights: m.weights,
        ...figures,
        speedup_vs_first: speedup,
        greedy_agreement_with_first: greedy_agreement,
        perplexity: m.perplexity,
        greedy_ids: samples[i].ids,
      };
    }),
  };
}

export function compareMarkdown(r: CompareReport): string {
  const synthetic = r.models.some((m) => m.synthetic);
  const head = [
    `**cats bench --compare** — ${r.runtime}, ${r.adapter}, ${r.kernels} kernels; dense decoding of each model, ` +
      `${r.prompt_tokens}-token prompt, ${r.tokens} greedy tokens (${r.steps_per_submission === 1 ? "one submission per token" : `${r.steps_per_submission} steps chained per submission`}), ${r.runs} runs per model, models interleaved; medians; speed-up over the first model paired by round (median of per-round ratios, quartiles in brackets; ideal: its weight bytes over this model's).` +
      (synthetic ? " SYNTHETIC models measure speed and energy only: their agreement and perplexity mean nothing." : ""),
    ...meterAndCeilingLines(r),
    "",
    "| model | weights | prefill tok/s | decode ms/tok (p10-p90) | decode tok/s | MB/token | GB/s | J/token | tok/J | speed-up [quartiles] (ideal) | perplexity | same as first |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  const rows = r.models.map((m) =>
    [
      `${m.model}${m.synthetic ? " (SYNTHETIC)" : ""}`,
      m.weights,
      ...figureCells(m, m.speedup_vs_first),
      fmt(m.perplexity, 3),
      `${fmt(m.greedy_agreement_with_first * 100, 0)}%`,
    ].join(" | "),
  );
  return [...head, ...rows.map((x) => `| ${x} |`)].join("\n") + "\n";
}
