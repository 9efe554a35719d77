import type { ChatMessage, GenerateOptions } from "../api/model.js";

/**
 * The parts of OpenAI's completions and chat-completions requests that cats implements, validated
 * field by field: a field of the wrong type is a 400 naming it; fields cats does not know are
 * ignored, as OpenAI-compatible servers do, because clients send many.
 */

export class RequestError extends Error {
  constructor(
    message: string,
    readonly param: string | null = null,
    readonly status = 400,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

function optionalNumber(body: Json, field: string, min: number, max: number): number | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max)
    throw new RequestError(`'${field}' must be a number in [${min}, ${max}]`, field);
  return v;
}

function optionalInt(body: Json, field: string, min: number, max: number): number | undefined {
  const v = optionalNumber(body, field, min, max);
  if (v !== undefined && !Number.isInteger(v)) throw new RequestError(`'${field}' must be an integer`, field);
  return v;
}

function stopList(body: Json): string[] | undefined {
  const v = body.stop;
  if (v === undefined || v === null) return undefined;
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || !list.every((s) => typeof s === "string"))
    throw new RequestError("'stop' must be a string or a list of up to 4 strings", "stop");
  return list as string[];
}

export interface ParsedRequest {
  options: GenerateOptions;
  stream: boolean;
  includeUsage: boolean;
  model: string | undefined;
}

/** The sampling fields both endpoints share. OpenAI's defaults: temperature 1, top_p 1, 16 tokens for completions. */
function common(body: Json, defaultMaxTokens: number, maxTokensLimit: number): ParsedRequest {
  if (body.model !== undefined && typeof body.model !== "string") throw new RequestError("'model' must be a string", "model");
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean")
    throw new RequestError("'stream' must be a boolean", "stream");
  const so = body.stream_options;
  if (so !== undefined && so !== null && (typeof so !== "object" || Array.isArray(so)))
    throw new RequestError("'stream_options' must be an object", "stream_options");
  const n = optionalInt(body, "n", 1, 1);
  void n;
  const maxTokens =
    optionalInt(body, "max_completion_tokens", 1, maxTokensLimit) ?? optionalInt(body, "max_tokens", 1, maxTokensLimit) ?? defaultMaxTokens;
  return {
    options: {
      maxTokens,
      temperature: optionalNumber(body, "temperature", 0, 2) ?? 1,
      topP: optionalNumber(body, "top_p", Number.MIN_VALUE, 1) ?? 1,
      seed: optionalInt(body, "seed", -(2 ** 53), 2 ** 53),
      stop: stopList(body),
      // The cats extension: the CATS sparsity level of this request.
      sparsity: optionalNumber(body, "cats_sparsity", 0, 0.999),
    },
    stream: body.stream === true,
    includeUsage: so !== undefined && so !== null && (so as Json).include_usage === true,
    model: body.model as string | undefined,
  };
}

export function parseCompletion(body: unknown, maxTokensLimit: number): ParsedRequest & { prompt: string } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new RequestError("the request body must be a JSON object");
  const b = body as Json;
  let prompt = b.prompt;
  // OpenAI accepts a list of prompts; cats answers one prompt per request.
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === "string") prompt = prompt[0];
  if (typeof prompt !== "string") throw new RequestError("'prompt' must be a string (one prompt per request)", "prompt");
  return { ...common(b, Math.min(16, maxTokensLimit), maxTokensLimit), prompt };
}

export function parseChat(body: unknown, maxTokensLimit: number): ParsedRequest & { messages: ChatMessage[] } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new RequestError("the request body must be a JSON object");
  const b = body as Json;
  const raw = b.messages;
  if (!Array.isArray(raw) || raw.length === 0) throw new RequestError("'messages' must be a non-empty list", "messages");
  const messages = raw.map((m, i): ChatMessage => {
    if (typeof m !== "object" || m === null) throw new RequestError(`'messages[${i}]' must be an object`, `messages[${i}]`);
    const { role, content } = m as Json;
    if (typeof role !== "string") throw new RequestError(`'messages[${i}].role' must be a string`, `messages[${i}].role`);
    // Content may be a string or a list of text parts.
    if (typeof content === "string") return { role, content };
    if (
      Array.isArray(content) &&
      content.every((p) => typeof p === "object" && p !== null && (p as Json).type === "text" && typeof (p as Json).text === "string")
    )
      return { role, content: content.map((p) => (p as Json).text as string).join("") };
    throw new RequestError(`'messages[${i}].content' must be a string or a list of text parts`, `messages[${i}].content`);
  });
  return { ...common(b, maxTokensLimit, maxTokensLimit), messages };
}

/** OpenAI's finish_reason for a cats stop reason. */
export function finishReason(stop: string): "stop" | "length" {
  return stop === "eos" || stop === "stop" || stop === "aborted" ? "stop" : "length";
}

export function errorBody(e: RequestError): Json {
  return {
    error: { message: e.message, type: e.status === 429 ? "rate_limit_error" : "invalid_request_error", param: e.param, code: e.code },
  };
}
