import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll } from "vitest";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const SHARED = resolve(ROOT, "../shared");
export const MODELS = join(SHARED, "models");
export const DATA = join(SHARED, "data");

export interface Reference {
  prompt: string;
  prompt_ids: number[];
  logits_first_positions: { position: number; input_id: number; top5_ids: number[]; top5_logits: number[] }[];
  logits_last_prompt_position: { position: number; top5_ids: number[]; top5_logits: number[] };
  logits_full_first_position: number[];
  greedy_new_ids: number[];
  greedy_new_text: string;
  perplexity: Record<string, { ppl: number; predicted_tokens: number; windows: number }>;
}

export function reference(model: string): Reference {
  return JSON.parse(readFileSync(join(MODELS, model, "reference.json"), "utf8")) as Reference;
}

/** Ids of the k largest values, ties to the lower id (numpy's stable argsort of -x). */
export function topK(values: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: values.length }, (_, i) => i)
    .sort((a, b) => values[b] - values[a] || a - b)
    .slice(0, k);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Builds a safetensors file from a header object and a data section. */
export function safetensorsBytes(header: unknown, data: Uint8Array, headerLengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Runs the built CLI without blocking the test worker; `errors` is stderr's non-empty lines. */
export function cats(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ status: number | null; stdout: string; errors: string[] }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(ROOT, "bin/cats.js"), ...args],
      { cwd: ROOT, encoding: "utf8", env: { ...process.env, CATS_MODELS: MODELS, ...env }, timeout: 290_000, maxBuffer: 64 << 20 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") return reject(error);
        // Every line counts: the launcher filters Dawn's adapter warnings, so stderr holds only cats' lines.
        const errors = stderr.split("\n").filter((l) => l.trim() !== "");
        resolve({ status: error ? (error.code as number) : 0, stdout, errors });
      },
    );
  });
}

const tempDirs: string[] = [];
// Registered when a test file imports this module, so each file removes the directories it made:
// a suite run makes about two hundred (model copies, outputs), which would otherwise pile up in /tmp.
afterAll(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temporary directory, removed after the test file that asked for it has run. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** A copy of stories260K in a fresh temporary directory, changed by `patch`. */
export function copyModel(patch: (dir: string) => void = () => {}): string {
  const dir = tempDir("cats-model-");
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
    copyFileSync(join(MODELS, "stories260K", f), join(dir, f));
  patch(dir);
  return dir;
}

/** A safetensors file split into its parts, for tests that mutate one. */
export interface SafetensorsParts {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  data: Uint8Array;
}

export function splitSafetensors(bytes: Uint8Array): SafetensorsParts {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))), data: bytes.slice(8 + n) };
}

/** stories260K with Zephyr's chat template: not an instruct model, but it renders and runs like one. */
export function chatModelCopy(): string {
  const zephyr = JSON.parse(readFileSync(join(DATA, "chat_templates", "zephyr.json"), "utf8"));
  return copyModel((d) => {
    const cfg = JSON.parse(readFileSync(join(d, "tokenizer_config.json"), "utf8"));
    writeFileSync(join(d, "tokenizer_config.json"), JSON.stringify({ ...cfg, chat_template: zephyr.chat_template }));
  });
}

/** `cats calibrate` of stories260K on two windows at levels 0.5 and 0.9: a real thresholds file in a few seconds. */
export function smallCalibrationArgs(out: string): string[] {
  return [
    "calibrate",
    "--model",
    join(MODELS, "stories260K"),
    "--data",
    join(DATA, "tinystories_calib.txt"),
    "--tokens",
    "1022",
    "--levels",
    "0.5,0.9",
    "--out",
    out,
  ];
}
