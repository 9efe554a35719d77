import { chooseMeter } from "../energy/select.js";
import { openModel, type ModelFlags } from "./model-flags.js";
import { serve } from "../serve/server.js";
import { notice } from "./notice.js";

export interface ServeFlags extends ModelFlags {
  host: string;
  port: number;
  apiKey?: string;
  queue: number;
}

/** `cats serve`: the OpenAI-compatible server until SIGINT or SIGTERM. */
export async function runServe(flags: ServeFlags): Promise<void> {
  const model = await openModel(flags);
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
