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

const dir = join(DATA, "chat_templates");
const families = readdirSync(dir).filter((f) => f.endsWith(".json"));

describe("chat templates render byte for byte as transformers renders them (Python jinja2)", () => {
  it("covers the seven families of ../shared/data/chat_templates", () => expect(families).toHaveLength(7));
  for (const f of families) {
    const d = JSON.parse(readFileSync(join(dir, f), "utf8"));
    for (const c of d.cases as TemplateCase[]) {
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

describe("chat_template in tokenizer_config.json", () => {
  it("is a string, or a named list with a default", () => {
    expect(chatTemplateFrom({ chat_template: "{{ x }}" }, "t.json")).toBe("{{ x }}");
    const list = {
      chat_template: [
        { name: "default", template: "A" },
        { name: "tool_use", template: "B" },
      ],
    };
    expect(chatTemplateFrom(list, "t.json")).toBe("A");
    expect(chatTemplateFrom(list, "t.json", "tool_use")).toBe("B");
    expect(() => chatTemplateFrom(list, "t.json", "rag")).toThrow(
      /t\.json: field "chat_template": no template named "rag" \(has "default", "tool_use"\)/,
    );
    expect(() => chatTemplateFrom({ chat_template: 7 }, "t.json")).toThrow(/expected a string or a list of \{name, template\}/);
    expect(chatTemplateFrom({}, "t.json")).toBeNull();
  });
  it("special tokens come as strings or AddedToken objects", () => {
    expect(specialTokenText("<s>")).toBe("<s>");
    expect(specialTokenText({ content: "<s>", lstrip: false })).toBe("<s>");
    expect(specialTokenText(null)).toBeNull();
  });
  it("a template that does not parse is one clear error", () => {
    expect(() => renderChat("{% for %}", [], { addGenerationPrompt: true, bosToken: null, eosToken: null })).toThrow(
      /chat template does not parse/,
    );
  });
});
