import { CatsError } from "../errors.js";
import { quoted, shown } from "../model/describe.js";

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** Python's truthiness, which is what transformers applies to tokenizer_config.json flags ("false" is true). */
export function pythonTruthy(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObject(v)) return Object.keys(v).length > 0;
  return true;
}

/**
 * A regular expression that can backtrack catastrophically: a group repeated without bound whose
 * body itself repeats or alternates, as in `(a|aa)+` or `(a+)*`. The tokenizer library runs
 * pre-tokenizer patterns with JavaScript's backtracking engine, where such a pattern on a long run
 * of one letter never returns. The real tokenizers' patterns (GPT-2, Llama 3, Qwen) have none.
 */
export function backtrackingRisk(pattern: string): boolean {
  const open: { risky: boolean }[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") {
      i++;
      continue;
    }
    if (c === "[") {
      // Skip a character class: quantifiers and bars inside are literal.
      for (i++; i < pattern.length && pattern[i] !== "]"; i++) if (pattern[i] === "\\") i++;
      continue;
    }
    if (c === "(") {
      open.push({ risky: false });
      continue;
    }
    const top = open[open.length - 1];
    if (c === "|" || c === "+" || c === "*" || (c === "{" && /^\{\d*,\}/.test(pattern.slice(i)))) {
      if (top) top.risky = true;
    }
    if (c === ")") {
      const group = open.pop();
      const next = pattern.slice(i + 1);
      const unbounded = /^(\+|\*|\{\d*,\})/.test(next);
      if (group?.risky && unbounded) return true;
      // A group's repetition makes its parent repeat too.
      const parent = open[open.length - 1];
      if (parent && (group?.risky || unbounded)) parent.risky = true;
    }
  }
  return false;
}

/** Every {"Regex": ...} pattern in a pre-tokenizer or normalizer tree. */
function regexPatterns(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) node.forEach((n) => regexPatterns(n, out));
  else if (isObject(node)) {
    for (const [k, v] of Object.entries(node)) {
      if (k === "Regex" && typeof v === "string") out.push(v);
      else regexPatterns(v, out);
    }
  }
  return out;
}

/**
 * Checks tokenizer.json for what the tokenizer library needs and what the model can take: a
 * vocabulary of the model's type, every id it can produce (vocab, added tokens, special ids) below
 * config.json's vocab_size (the embedding kernel would otherwise read another token's row), and
 * no pre-tokenizer pattern that could hang.
 */
export function validateTokenizer(
  json: unknown,
  tokConfig: Json,
  vocabSize: number,
  specialIds: number[],
  file: string,
  configFile: string,
): void {
  function fail(field: string, expected: string, got: unknown): never {
    throw new CatsError(`${file}: field "${field}": expected ${expected}, got ${shown(got)}`);
  }
  if (!isObject(json)) throw new CatsError(`${file}: expected a JSON object`);
  const model = json.model;
  if (!isObject(model)) fail("model", "an object describing the tokenizer model", model);
  const type = model.type;
  const vocab = model.vocab;
  function tooBig(id: number, what: string): never {
    throw new CatsError(`${file}: ${what} has id ${id}, but config.json's vocab_size is ${vocabSize} (ids must be < vocab_size)`);
  }
  if (type === "Unigram") {
    if (!Array.isArray(vocab) || vocab.length === 0) fail("model.vocab", "a non-empty list of [piece, score]", vocab);
    if (vocab.length > vocabSize) tooBig(vocab.length - 1, "model.vocab");
  } else {
    if (!isObject(vocab) || Object.keys(vocab).length === 0) fail("model.vocab", "a non-empty object of token -> id", vocab);
    for (const [token, id] of Object.entries(vocab)) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0) fail(`model.vocab.${quoted(token).slice(1, -1)}`, "a token id", id);
      if (id >= vocabSize) tooBig(id, `token ${quoted(token)} in model.vocab`);
    }
  }
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) fail("added_tokens", "a list", added);
  for (const t of added) {
    const id = isObject(t) ? t.id : undefined;
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) fail("added_tokens", "entries with an integer id", t);
    if (id >= vocabSize) tooBig(id, `added token ${quoted(String((t as Json).content ?? ""))}`);
  }
  const decoderIds = isObject(tokConfig.added_tokens_decoder) ? Object.keys(tokConfig.added_tokens_decoder).map(Number) : [];
  for (const id of decoderIds) if (Number.isInteger(id) && id >= vocabSize) tooBig(id, "tokenizer_config.json added_tokens_decoder");
  for (const id of specialIds) {
    if (id >= vocabSize) throw new CatsError(`${configFile}: special token id ${id} (bos/eos) is not below vocab_size ${vocabSize}`);
  }
  for (const pattern of [...regexPatterns(json.pre_tokenizer), ...regexPatterns(json.normalizer)]) {
    if (backtrackingRisk(pattern)) {
      throw new CatsError(
        `${file}: pre-tokenizer pattern ${quoted(pattern)} repeats a group that itself repeats or alternates, which can take forever on some inputs; refused`,
      );
    }
  }
}
