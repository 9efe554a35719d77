import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { markdownTable, svgChart, type BenchReport } from "./report.js";

/** Writes bench.json, bench.md and bench.svg into `dir`; returns the Markdown table. */
export async function writeReport(dir: string, report: BenchReport): Promise<string> {
  await mkdir(dir, { recursive: true });
  const md = markdownTable(report);
  await writeFile(join(dir, "bench.json"), JSON.stringify(report, null, 1) + "\n");
  await writeFile(join(dir, "bench.md"), md);
  await writeFile(join(dir, "bench.svg"), svgChart(report));
  return md;
}
