import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { chatTemplateFrom, renderChat, specialTokenText, type ChatMessage } from "../src/chat/template.js";
import { CatsError } from "../src/errors.js";
import { DATA } from "./helpers.js";

interface TemplateCase {
  id: string;
  messages: ChatMessage[];
  add_generation_prompt: boolean;
  expected?: string;
  expected_error?: string;
}

interface TemplateFile {
  family: string;
  chat_template: string;
  bos_token: string | null;
  eos_token: string | null;
  special_tokens: Record<string, string | null>;
  cases: TemplateCase[];
}

const dir = join(DATA, "chat_templates");
const families: TemplateFile[] = readdirSync(dir)
  .filter((f) => f.endsWith(".json"))
  .sort()
  .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as TemplateFile);

const LLAMA2 = families.find((f) => f.family === "llama2")!;

function rendered(template: string, messages: ChatMessage[], tokens: Record<string, string | null> = {}): string {
  return renderChat(template, messages, {
    addGenerationPrompt: true,
    bosToken: tokens.bos_token ?? null,
    eosToken: tokens.eos_token ?? null,
    specialTokens: tokens,
  });
}

describe("chat templates render byte for byte as transformers renders them (Python jinja2)", () => {
  it("covers the seven families and 29 cases (2 of them errors) of ../shared/data/chat_templates", () => {
    expect(families.map((f) => f.family)).toEqual(["gemma", "llama2", "llama3", "llama3.1", "mistral", "qwen2.5", "zephyr"]);
    const cases = families.flatMap((f) => f.cases);
    expect(cases).toHaveLength(29);
    expect(cases.filter((c) => c.expected === undefined)).toHaveLength(2);
  });
  for (const d of families) {
    for (const c of d.cases) {
      it(`${d.family}: ${c.id}`, () => {
        const render = () =>
          renderChat(d.chat_template, c.messages, {
            addGenerationPrompt: c.add_generation_prompt,
            bosToken: d.bos_token,
            eosToken: d.eos_token,
            specialTokens: d.special_tokens,
          });
        if (c.expected !== undefined) expect(render()).toBe(c.expected);
        else {
          expect(render).toThrow(CatsError);
          expect(render).toThrow(c.expected_error!);
        }
      });
    }
  }
});

// Expectations below were rendered with jinja2 3.1.6 in transformers' environment, as the data files were.
describe("where @huggingface/jinja alone differs from jinja2", () => {
  it("== and != are Python's: an empty or blank system prompt is still a system prompt for Llama 2", () => {
    const tokens = { bos_token: "<s>", eos_token: "</s>" };
    const sys = (content: string): ChatMessage[] => [
      { role: "system", content },
      { role: "user", content: "Hi" },
    ];
    expect(rendered(LLAMA2.chat_template, sys(""), tokens)).toBe("<s>[INST] <<SYS>>\n\n<</SYS>>\n\nHi [/INST]");
    expect(rendered(LLAMA2.chat_template, sys(" \n"), tokens)).toBe("<s>[INST] <<SYS>>\n \n\n<</SYS>>\n\nHi [/INST]");
    const pairs =
      "[['', false], [' ', 0], ['1', true], ['1', 1], [0, false], [1, true], [1, 1.0], [[1, 'a'], [1, 'a']]," +
      " [{'k': [1]}, {'k': [1]}], [[], false], [none, false], [[1], [2]], [none, none], ['a', 'a']]";
    const t = `{% for p in ${pairs} %}{% if p[0] == p[1] %}Y{% else %}N{% endif %}{% if p[0] != p[1] %}y{% else %}n{% endif %}{% endfor %}`;
    expect(rendered(t, [])).toBe("NyNyNyNyYnYnYnYnYnNyNyNyYnYn");
  });
  it("\\r\\n and \\r in the template's source are newlines, so trim_blocks removes them", () => {
    expect(rendered("a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n", [])).toBe("a\nb\nc");
    expect(rendered("a\r{% if true %}\rb{% endif %}\r", [])).toBe("a\nb");
  });
  it("a special token that is not set is undefined, not none; tools and documents are none", () => {
    const t =
      "{% if bos_token is defined %}D{% else %}U{% endif %}{% if unk_token is defined %}D{% else %}U{% endif %}" +
      "{% if pad_token is defined %}D{% endif %}{% if tools is none %}N{% endif %}{% if documents is none %}N{% endif %}[{{ bos_token }}]";
    expect(rendered(t, [], { bos_token: null, eos_token: "</s>", unk_token: null, pad_token: "<pad>" })).toBe("UUDNN[]");
  });
  it("bosToken and eosToken win over the same names in specialTokens", () => {
    const out = renderChat("{{ bos_token }}|{{ eos_token is defined }}", [], {
      addGenerationPrompt: false,
      bosToken: "<b>",
      eosToken: null,
      specialTokens: { bos_token: "<x>", eos_token: "</x>" },
    });
    expect(out).toBe("<b>|false");
  });
});

describe("template errors", () => {
  const opts = { addGenerationPrompt: true, bosToken: null, eosToken: null };
  it("raise_exception becomes a CatsError carrying the template's message and where the template came from", () => {
    const render = () => renderChat("{{ raise_exception('Roles must alternate') }}", [], { ...opts, origin: "t.json: chat_template" });
    expect(render).toThrow(CatsError);
    expect(render).toThrow("t.json: chat_template: Roles must alternate");
  });
  it("a template that does not parse is one CatsError naming it", () => {
    expect(() => renderChat("{% for %}", [], opts)).toThrow(CatsError);
    expect(() => renderChat("{% for %}", [], opts)).toThrow(/^chat template does not parse: /);
    expect(() => renderChat("{% if x %}", [], { ...opts, origin: 'm/tokenizer_config.json: field "chat_template"' })).toThrow(
      /^m\/tokenizer_config\.json: field "chat_template" does not parse: /,
    );
  });
  it("a compiled template is reused and renders the same again", () => {
    const t = "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}";
    const m: ChatMessage[] = [{ role: "user", content: "x" }];
    expect(rendered(t, m)).toBe("x");
    expect(rendered(t, m)).toBe("x");
  });
});

describe("chat_template in tokenizer_config.json", () => {
  it("is a string", () => {
    expect(chatTemplateFrom({ chat_template: "{{ x }}" }, "t.json")).toBe("{{ x }}");
    expect(chatTemplateFrom({ chat_template: "{{ x }}" }, "t.json", "default")).toBe("{{ x }}");
    expect(() => chatTemplateFrom({ chat_template: "{{ x }}" }, "t.json", "tool_use")).toThrow(
      /t\.json: field "chat_template": has one template, no "tool_use"/,
    );
  });
  it("is a named list: the one asked for, else the default", () => {
    const list = {
      chat_template: [
        { name: "default", template: "A" },
        { name: "tool_use", template: "B" },
      ],
    };
    expect(chatTemplateFrom(list, "t.json")).toBe("A");
    expect(chatTemplateFrom(list, "t.json", "tool_use")).toBe("B");
    expect(() => chatTemplateFrom(list, "t.json", "rag")).toThrow(CatsError);
    expect(() => chatTemplateFrom(list, "t.json", "rag")).toThrow(
      /t\.json: field "chat_template": no template named "rag" \(has "default", "tool_use"\)/,
    );
    expect(() => chatTemplateFrom({ chat_template: [{ name: "rag", template: "R" }] }, "t.json")).toThrow(
      /no template named "default" \(has "rag"\)/,
    );
  });
  it("refuses other types, naming the file and the field", () => {
    const bad = (v: unknown) => () => chatTemplateFrom({ chat_template: v }, "m/tokenizer_config.json");
    expect(bad(7)).toThrow(CatsError);
    expect(bad(7)).toThrow('m/tokenizer_config.json: field "chat_template": expected a string or a list of {name, template}, got 7');
    expect(bad({ default: "A" })).toThrow(/expected a string or a list of \{name, template\}, got an object/);
    expect(bad([{ name: "default", template: "A" }, { name: "x" }])).toThrow(
      /expected a string or a list of \{name, template\}, entry 1 is/,
    );
  });
  it("is null when the model has none", () => {
    expect(chatTemplateFrom({}, "t.json")).toBeNull();
    expect(chatTemplateFrom({ chat_template: null }, "t.json")).toBeNull();
  });
  it("special tokens come as strings or AddedToken objects", () => {
    expect(specialTokenText("<s>")).toBe("<s>");
    expect(specialTokenText({ __type: "AddedToken", content: "<s>", lstrip: false, normalized: true })).toBe("<s>");
    expect(specialTokenText(null)).toBeNull();
    expect(specialTokenText(undefined)).toBeNull();
    expect(specialTokenText({ lstrip: false })).toBeNull();
  });
});
