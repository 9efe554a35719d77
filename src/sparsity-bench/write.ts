import { join } from "node:path";
import { writeFileAtomic } from "../files.js";
import { markdownTable, svgChart, type BenchReport } from "./report.js";

/** Writes bench.json, bench.md and bench.svg into `dir` (which must exist), each whole or not at all. */
export async function writeReport(dir: string, report: BenchReport): Promise<void> {
  await writeFileAtomic(join(dir, "bench.json"), JSON.stringify(report, null, 1) + "\n");
  await writeFileAtomic(join(dir, "bench.md"), markdownTable(report));
  await writeFileAtomic(join(dir, "bench.svg"), svgChart(report));
}
