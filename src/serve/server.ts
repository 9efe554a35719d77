import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";
import type { CatsModel, GeneratedPiece, GenerationResult, GenerateOptions } from "../api/model.js";
import type { EnergyMeter } from "../energy/meter.js";
import { CatsError } from "../errors.js";
import { errorBody, finishReason, parseChat, parseCompletion, RequestError, type ParsedRequest } from "./openai.js";

export interface ServeOptions {
  model: CatsModel;
  host?: string;
  port?: number;
  /** Requests admitted at once, running or waiting; more get 429 (default 64). */
  queueLimit?: number;
  /** When set, every /v1 request needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  meter?: EnergyMeter | null;
  /** Largest request body in bytes (default 1 MiB). */
  bodyLimit?: number;
  log?: (line: string) => void;
}

export interface RunningServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/** Counters for /metrics, in Prometheus' text format. */
class Metrics {
  requests = new Map<string, number>();
  promptTokens = 0;
  completionTokens = 0;
  decodeSeconds = 0;
  joules = 0;
  lastTokensPerSecond = 0;

  count(endpoint: string, status: number): void {
    const key = `endpoint="${endpoint}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  render(queue: number, running: number, energySource: string): string {
    const lines = [
      "# HELP cats_requests_total HTTP requests by endpoint and status.",
      "# TYPE cats_requests_total counter",
      ...[...this.requests].map(([k, v]) => `cats_requests_total{${k}} ${v}`),
      "# HELP cats_prompt_tokens_total Prompt tokens of completed generations.",
      "# TYPE cats_prompt_tokens_total counter",
      `cats_prompt_tokens_total ${this.promptTokens}`,
      "# HELP cats_completion_tokens_total Generated tokens.",
      "# TYPE cats_completion_tokens_total counter",
      `cats_completion_tokens_total ${this.completionTokens}`,
      "# HELP cats_decode_tokens_per_second Decode speed of the last generation.",
      "# TYPE cats_decode_tokens_per_second gauge",
      `cats_decode_tokens_per_second ${this.lastTokensPerSecond}`,
      "# HELP cats_queue_depth Generation requests admitted and not finished (running or waiting).",
      "# TYPE cats_queue_depth gauge",
      `cats_queue_depth ${queue}`,
      "# HELP cats_running Generation requests running now (0 or 1: one GPU).",
      "# TYPE cats_running gauge",
      `cats_running ${running}`,
      "# HELP cats_energy_joules_total Energy of the generations, by meter source (estimate = Green Algorithms model).",
      "# TYPE cats_energy_joules_total counter",
      `cats_energy_joules_total{source="${energySource}"} ${this.joules}`,
    ];
    return lines.join("\n") + "\n";
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new RequestError(`the request body exceeds ${limit} bytes`, null, 413);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text);
  } catch {
    throw new RequestError("the request body is not valid JSON");
  }
}

/**
 * An OpenAI-compatible HTTP server over one model. One GPU, so generations run one at a time in
 * arrival order (the model's own queue); at most `queueLimit` are admitted, later ones get 429.
 * Each streams as soon as it runs; a client that disconnects aborts its generation.
 */
export async function serve(o: ServeOptions): Promise<RunningServer> {
  const model = o.model;
  const queueLimit = o.queueLimit ?? 64;
  const bodyLimit = o.bodyLimit ?? 1 << 20;
  const metrics = new Metrics();
  const created = Math.floor(Date.now() / 1000);
  let admitted = 0;
  let running = 0;

  const modelList = () => ({ object: "list", data: [{ id: model.name, object: "model", created, owned_by: "cats" }] });

  async function generation(kind: "completion" | "chat", res: ServerResponse, body: unknown): Promise<number> {
    const parsed: ParsedRequest & { prompt?: string; messages?: { role: string; content: string }[] } =
      kind === "completion" ? parseCompletion(body, model.contextLength) : parseChat(body, model.contextLength);
    if (parsed.model !== undefined && parsed.model !== model.name) {
      throw new RequestError(
        `model '${parsed.model}' is not served here (this server serves '${model.name}')`,
        "model",
        404,
        "model_not_found",
      );
    }
    if ((parsed.options.sparsity ?? 0) > 0 && !model.hasThresholds) {
      throw new RequestError("'cats_sparsity' above 0 needs the server started with --thresholds", "cats_sparsity");
    }
    if (admitted >= queueLimit) throw new RequestError(`the queue is full (${queueLimit} requests); retry later`, null, 429, "queue_full");
    const abort = new AbortController();
    let finished = false;
    res.on("close", () => {
      if (!finished) abort.abort();
    });
    let mark: Promise<Awaited<ReturnType<EnergyMeter["start"]>>> | null = null;
    const options: GenerateOptions = {
      ...parsed.options,
      signal: abort.signal,
      onStart: () => {
        running++;
        mark = o.meter ? o.meter.start() : null;
      },
    };
    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID()}`;
    const object = kind === "chat" ? "chat.completion" : "text_completion";
    admitted++;
    let wasRunning = false;
    try {
      const pieces = kind === "chat" ? model.chat(parsed.messages!, options) : model.generate(parsed.prompt!, options);
      const result = await streamOrCollect(pieces);
      wasRunning = true;
      const measured = mark && o.meter ? await o.meter.stop(await mark) : null;
      metrics.promptTokens += result.promptTokens;
      metrics.completionTokens += result.ids.length;
      if (result.decodeMsPerToken) metrics.lastTokensPerSecond = 1000 / result.decodeMsPerToken;
      if (measured) metrics.joules += measured.joules;
      const usage = {
        prompt_tokens: result.promptTokens,
        completion_tokens: result.ids.length,
        total_tokens: result.promptTokens + result.ids.length,
        // cats extension: the energy of this generation and where the figure comes from.
        cats_energy_joules: measured ? measured.joules : null,
        cats_energy_source: o.meter ? o.meter.source : null,
        cats_sparsity: result.sparsity ? result.sparsity.measured : 0,
      };
      if (abort.signal.aborted) return 499;
      if (parsed.stream) {
        const last =
          kind === "chat"
            ? {
                id,
                object: "chat.completion.chunk",
                created: now(),
                model: model.name,
                choices: [{ index: 0, delta: {}, finish_reason: finishReason(result.stopReason) }],
              }
            : {
                id,
                object,
                created: now(),
                model: model.name,
                choices: [{ index: 0, text: "", logprobs: null, finish_reason: finishReason(result.stopReason) }],
              };
        sse(res, last);
        if (parsed.includeUsage) sse(res, { id, object: last.object, created: now(), model: model.name, choices: [], usage });
        res.write("data: [DONE]\n\n");
        res.end();
      } else {
        const choice =
          kind === "chat"
            ? {
                index: 0,
                message: { role: "assistant", content: result.text },
                finish_reason: finishReason(result.stopReason),
                logprobs: null,
              }
            : { index: 0, text: result.text, logprobs: null, finish_reason: finishReason(result.stopReason) };
        sendJson(res, 200, { id, object, created: now(), model: model.name, choices: [choice], usage });
      }
      return 200;
    } finally {
      finished = true;
      admitted--;
      if (wasRunning || mark) running = Math.max(0, running - 1);
    }

    async function streamOrCollect(pieces: AsyncGenerator<GeneratedPiece, GenerationResult>): Promise<GenerationResult> {
      let first = true;
      for (;;) {
        const r = await pieces.next();
        if (r.done) return r.value;
        if (!parsed.stream || abort.signal.aborted) continue;
        if (first) {
          res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" });
          if (kind === "chat")
            sse(res, {
              id,
              object: "chat.completion.chunk",
              created: now(),
              model: model.name,
              choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }],
            });
          first = false;
        }
        if (r.value.text === "") continue;
        sse(
          res,
          kind === "chat"
            ? {
                id,
                object: "chat.completion.chunk",
                created: now(),
                model: model.name,
                choices: [{ index: 0, delta: { content: r.value.text }, finish_reason: null }],
              }
            : {
                id,
                object,
                created: now(),
                model: model.name,
                choices: [{ index: 0, text: r.value.text, logprobs: null, finish_reason: null }],
              },
        );
      }
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<[string, number]> {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/health") {
      sendJson(res, 200, { status: "ok", model: model.name, queue: admitted });
      return [path, 200];
    }
    if (path === "/metrics") {
      const text = metrics.render(admitted, running, o.meter ? o.meter.source : "none");
      res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4" });
      res.end(text);
      return [path, 200];
    }
    if (!path.startsWith("/v1/")) throw new RequestError(`no route ${path}`, null, 404, "not_found");
    if (o.apiKey !== undefined && req.headers.authorization !== `Bearer ${o.apiKey}`) {
      throw new RequestError("a valid API key is required (Authorization: Bearer ...)", null, 401, "invalid_api_key");
    }
    if (path === "/v1/models" && req.method === "GET") {
      sendJson(res, 200, modelList());
      return [path, 200];
    }
    const kind = path === "/v1/completions" ? "completion" : path === "/v1/chat/completions" ? "chat" : null;
    if (kind === null) throw new RequestError(`no route ${req.method} ${path}`, null, 404, "not_found");
    if (req.method !== "POST") throw new RequestError(`${path} takes POST`, null, 405, "method_not_allowed");
    return [path, await generation(kind, res, await readBody(req, bodyLimit))];
  }

  const server = createServer((req, res) => {
    route(req, res).then(
      ([path, status]) => metrics.count(path, status),
      (e: unknown) => {
        const path = (req.url ?? "/").split("?")[0];
        const err =
          e instanceof RequestError
            ? e
            : e instanceof CatsError
              ? new RequestError(
                  e.message,
                  null,
                  /context|does not fit|too long/.test(e.message) ? 400 : 500,
                  /context/.test(e.message) ? "context_length_exceeded" : null,
                )
              : new RequestError(`internal error: ${(e as Error)?.message ?? String(e)}`, null, 500);
        metrics.count(path, err.status);
        if (err.status >= 500) o.log?.(`cats serve: ${err.message}`);
        if (res.headersSent) {
          // Mid-stream: the status line is gone; say so in the stream and end it.
          if (!res.writableEnded) {
            sse(res, errorBody(err));
            res.end();
          }
        } else sendJson(res, err.status, errorBody(err));
      },
    );
  });
  server.on("clientError", (_e, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(new CatsError(`cannot listen on ${o.host ?? "127.0.0.1"}:${o.port ?? 8080} (${e.code ?? e.message})`)),
    );
    server.listen(o.port ?? 8080, o.host ?? "127.0.0.1", () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    server,
    url: `http://${host}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function sse(res: ServerResponse, body: unknown): void {
  res.write(`data: ${JSON.stringify(body)}\n\n`);
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}
