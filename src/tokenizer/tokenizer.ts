import { Tokenizer } from "@huggingface/tokenizers";
import { CatsError } from "../errors.js";
import type { ModelFiles } from "../model/checkpoint.js";
import type { LlamaConfig } from "../model/config.js";
import { parseJson } from "../model/json.js";
import { pythonTruthy, validateTokenizer } from "./validate.js";

/** The model's tokenizer.json through @huggingface/tokenizers, with BOS added as tokenizer_config.json says. */
export class TextTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    readonly bosId: number | null,
    readonly addBos: boolean,
  ) {}

  static async load(files: ModelFiles, config: LlamaConfig): Promise<TextTokenizer> {
    const parse = async (name: string): Promise<Record<string, unknown>> => {
      const text = await files.readText(name);
      const json = parseJson(text, (where) => {
        throw new CatsError(`${files.pathOf(name)}: not valid JSON${where}`);
      });
      if (typeof json !== "object" || json === null || Array.isArray(json))
        throw new CatsError(`${files.pathOf(name)}: expected a JSON object`);
      return json as Record<string, unknown>;
    };
    if (!(await files.exists("tokenizer.json"))) throw new CatsError(`${files.location}: no tokenizer.json`);
    const json = await parse("tokenizer.json");
    const tokConfig = (await files.exists("tokenizer_config.json")) ? await parse("tokenizer_config.json") : {};
    const specialIds = [...(config.bosTokenId === null ? [] : [config.bosTokenId]), ...config.eosTokenIds];
    validateTokenizer(json, tokConfig, config.vocabSize, specialIds, files.pathOf("tokenizer.json"), files.pathOf("config.json"));
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json, tokConfig);
    } catch (e) {
      throw new CatsError(`${files.pathOf("tokenizer.json")}: cannot build tokenizer (${(e as Error).message})`);
    }
    // Llama tokenizers add BOS unless the config says otherwise, read with Python's truthiness as
    // transformers does ("false" and 1 both mean true there).
    const addBos = tokConfig.add_bos_token === undefined ? true : pythonTruthy(tokConfig.add_bos_token);
    return new TextTokenizer(tokenizer, config.bosTokenId, addBos && config.bosTokenId !== null);
  }

  /** Ids of `text`, with BOS in front when the model wants it and `withBos` is set. */
  encode(text: string, withBos = true): number[] {
    const ids = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    return withBos && this.addBos && this.bosId !== null ? [this.bosId, ...ids] : ids;
  }

  decode(ids: readonly number[]): string {
    return this.tokenizer.decode([...ids], { skip_special_tokens: true });
  }
}
