import { Template } from "@huggingface/jinja";
import { CatsError } from "../errors.js";
import { quoted } from "../model/describe.js";

/** One message of a conversation, as chat templates read them. */
export interface ChatMessage {
  role: string;
  content: string;
}

type Json = Record<string, unknown>;

/**
 * The chat template of a tokenizer_config.json: a string, or a list of { name, template } (the one
 * named `name`, else "default"). Null when the model has none.
 */
export function chatTemplateFrom(tokenizerConfig: Json, file: string, name?: string): string | null {
  const t = tokenizerConfig.chat_template;
  if (t === undefined || t === null) return null;
  if (typeof t === "string") {
    if (name !== undefined && name !== "default")
      throw new CatsError(`${file}: field "chat_template": has one template, no ${quoted(name)}`);
    return t;
  }
  const valid =
    Array.isArray(t) &&
    t.every((e) => typeof e === "object" && e !== null && typeof (e as Json).name === "string" && typeof (e as Json).template === "string");
  if (!valid) throw new CatsError(`${file}: field "chat_template": expected a string or a list of {name, template}`);
  const list = t as { name: string; template: string }[];
  const want = name ?? "default";
  const found = list.find((e) => e.name === want);
  if (!found)
    throw new CatsError(
      `${file}: field "chat_template": no template named ${quoted(want)} (has ${list.map((e) => quoted(e.name)).join(", ")})`,
    );
  return found.template;
}

/** tokenizer_config.json's special tokens are strings or AddedToken objects; templates get the text. */
export function specialTokenText(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null && typeof (value as Json).content === "string") return (value as Json).content as string;
  return null;
}

const compiled = new Map<string, Template>();

function compile(source: string): Template {
  let t = compiled.get(source);
  if (!t) {
    try {
      t = new Template(source);
    } catch (e) {
      throw new CatsError(`chat template does not parse: ${(e as Error).message}`);
    }
    compiled.set(source, t);
  }
  return t;
}

export interface RenderOptions {
  addGenerationPrompt: boolean;
  bosToken: string | null;
  eosToken: string | null;
  /** Other special tokens (unk_token, pad_token, ...) some templates name. */
  specialTokens?: Record<string, string | null>;
}

/**
 * Renders a conversation as transformers' apply_chat_template(messages, add_generation_prompt,
 * tokenize=False) does: @huggingface/jinja follows jinja2 with trim_blocks and lstrip_blocks, and
 * defines raise_exception itself; an exception the template raises becomes a CatsError with its
 * message.
 */
export function renderChat(template: string, messages: ChatMessage[], o: RenderOptions): string {
  const t = compile(template);
  const context: Json = {
    ...(o.specialTokens ?? {}),
    messages,
    add_generation_prompt: o.addGenerationPrompt,
    bos_token: o.bosToken,
    eos_token: o.eosToken,
  };
  try {
    return t.render(context);
  } catch (e) {
    throw new CatsError(`chat template: ${(e as Error).message}`);
  }
}
