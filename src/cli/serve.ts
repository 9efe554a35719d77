import { chooseMeter } from "../energy/select.js";
import { DEFAULT_MODEL } from "../model/resolve.js";
import { loadModel } from "../index.js";
import { serve } from "../serve/server.js";
import { notice } from "./notice.js";
import { wantsSparsity, type SparsityFlags } from "./sparsity.js";

export interface ServeFlags extends SparsityFlags {
  model?: string;
  host: string;
  port: number;
  apiKey?: string;
  queue: number;
  context?: number;
  kernels?: "cpu" | "gpu";
  variant?: string;
}

/** `cats serve`: the OpenAI-compatible server until SIGINT or SIGTERM. */
export async function runServe(flags: ServeFlags): Promise<void> {
  wantsSparsity(flags);
  const model = await loadModel(flags.model ?? DEFAULT_MODEL, {
    thresholds: flags.thresholds,
    sparsity: flags.sparsity,
    kernels: flags.kernels,
    variants: flags.variant,
    context: flags.context,
    notice,
  });
  const nvidia = /nvidia/i.test(`${model.gpu.adapter.vendor} ${model.gpu.adapter.description}`);
  const { meter } = await chooseMeter({ nvidiaAdapter: nvidia });
  const running = await serve({
    model,
    host: flags.host,
    port: flags.port,
    apiKey: flags.apiKey,
    queueLimit: flags.queue,
    meter,
    log: notice,
  });
  notice(
    `serving ${model.name} on ${running.url}/v1 (energy: ${meter.source}${meter.source === "estimate" ? ", an ESTIMATE" : ""}); Ctrl-C stops`,
  );
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await running.close();
  await model.dispose();
}
