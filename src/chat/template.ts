import { Template } from "@huggingface/jinja";
import { CatsError } from "../errors.js";
import { quoted, shown } from "../model/describe.js";

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
  const field = `${file}: field "chat_template"`;
  if (typeof t === "string") {
    // transformers has no names for a single template; "default" is what it would pick from a list.
    if (name !== undefined && name !== "default") throw new CatsError(`${field}: has one template, no ${quoted(name)}`);
    return t;
  }
  const expected = `${field}: expected a string or a list of {name, template}`;
  if (!Array.isArray(t)) throw new CatsError(`${expected}, got ${shown(t)}`);
  const named = new Map<string, string>();
  t.forEach((e: unknown, i) => {
    if (typeof e !== "object" || e === null || typeof (e as Json).name !== "string" || typeof (e as Json).template !== "string")
      throw new CatsError(`${expected}, entry ${i} is ${shown(e)}`);
    // transformers turns the list into a dict, so a repeated name means its last entry.
    named.set((e as Json).name as string, (e as Json).template as string);
  });
  const want = name ?? "default";
  const found = named.get(want);
  if (found === undefined) {
    const names = [...named.keys()].map(quoted).join(", ") || "none";
    throw new CatsError(`${field}: no template named ${quoted(want)} (has ${names})`);
  }
  return found;
}

/** tokenizer_config.json's special tokens are strings or AddedToken objects; templates get the text. */
export function specialTokenText(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null && typeof (value as Json).content === "string") return (value as Json).content as string;
  return null;
}

export interface RenderOptions {
  addGenerationPrompt: boolean;
  /** Null when the tokenizer sets none: the template then sees the name undefined, as in transformers. */
  bosToken: string | null;
  eosToken: string | null;
  /** Other special tokens (unk_token, pad_token, ...) some templates name; null ones stay undefined. */
  specialTokens?: Record<string, string | null>;
  /** Where the template came from, for error messages (e.g. `tokenizer_config.json: field "chat_template"`). */
  origin?: string;
}

const EQ = "__cats_python_eq";
const NE = "__cats_python_ne";

/**
 * Python's `==` on the values @huggingface/jinja hands to a context function (a runtime value's
 * `.value`: primitives, arrays of runtime values, Maps of runtime values). Numbers and booleans
 * compare by number (True == 1); everything else only within its own kind.
 */
function pythonEquals(a: unknown, b: unknown): boolean {
  const numeric = (x: unknown) => typeof x === "number" || typeof x === "boolean";
  if (numeric(a) && numeric(b)) return Number(a) === Number(b);
  const inner = (x: unknown) => (x as { value: unknown }).value;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => pythonEquals(inner(x), inner(b[i])));
  if (a instanceof Map && b instanceof Map)
    return a.size === b.size && [...a].every(([k, v]) => b.has(k) && pythonEquals(inner(v), inner(b.get(k))));
  return a === b;
}

/**
 * @huggingface/jinja evaluates `==` and `!=` with JavaScript's loose equality, so `"" == false`,
 * `" " == 0` and `"1" == true` hold and two equal lists differ. Jinja2 uses Python's `==`. This is
 * visible in real templates: Llama 2's `system_message != false` drops an empty or whitespace-only
 * system prompt that transformers renders. The interpreter dispatches on each node's `type` string,
 * so every comparison node becomes a call of a context function with Python's semantics; its
 * operands are evaluated exactly as before.
 */
function withPythonEquality(node: unknown): unknown {
  if (typeof node !== "object" || node === null) return node;
  const n = node as Json;
  for (const key of Object.keys(n)) {
    const v = n[key];
    n[key] = Array.isArray(v) ? v.map(withPythonEquality) : withPythonEquality(v);
  }
  const op = (n.operator as { value?: unknown } | undefined)?.value;
  if (n.type !== "BinaryExpression" || (op !== "==" && op !== "!=")) return n;
  return { type: "CallExpression", callee: { type: "Identifier", value: op === "==" ? EQ : NE }, args: [n.left, n.right] };
}

const compiled = new Map<string, Template>();
const CACHE_SIZE = 16;

function compile(source: string, origin: string): Template {
  let t = compiled.get(source);
  if (t) return t;
  try {
    // Jinja2's lexer first turns every \r\n and \r of the source into \n (its newline_sequence);
    // @huggingface/jinja keeps them, and its trim_blocks then misses the newline after a tag.
    t = new Template(source.replace(/\r\n?/g, "\n"));
  } catch (e) {
    throw new CatsError(`${origin} does not parse: ${messageOf(e)}`);
  }
  t.parsed = withPythonEquality(t.parsed) as Template["parsed"];
  if (compiled.size >= CACHE_SIZE) compiled.delete(compiled.keys().next().value as string);
  compiled.set(source, t);
  return t;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Renders a conversation as transformers' apply_chat_template(messages, add_generation_prompt,
 * tokenize=False) does. @huggingface/jinja already lexes with jinja2's trim_blocks and lstrip_blocks
 * and drops one trailing newline of the source (keep_trailing_newline off), as transformers'
 * environment does; its tojson matches transformers' (no HTML escaping, non-ASCII kept).
 */
export function renderChat(template: string, messages: ChatMessage[], o: RenderOptions): string {
  const origin = o.origin ?? "chat template";
  const t = compile(template, origin);
  // transformers passes special_tokens_map, which holds only the tokens that are set, then these.
  const context: Json = {};
  for (const [k, v] of Object.entries(o.specialTokens ?? {})) if (typeof v === "string") context[k] = v;
  for (const [k, v] of [
    ["bos_token", o.bosToken],
    ["eos_token", o.eosToken],
  ] as const) {
    if (v === null) delete context[k];
    else context[k] = v;
  }
  Object.assign(context, {
    messages,
    tools: null,
    documents: null,
    add_generation_prompt: o.addGenerationPrompt,
    [EQ]: (a: unknown, b: unknown) => pythonEquals(a, b),
    [NE]: (a: unknown, b: unknown) => !pythonEquals(a, b),
  });
  try {
    return t.render(context);
  } catch (e) {
    // The library's own raise_exception throws a plain Error with the template's message (and
    // refuses to be redefined), so refusals and renderer failures read alike.
    throw new CatsError(`${origin}: ${messageOf(e)}`);
  }
}
