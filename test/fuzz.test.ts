import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fc, it } from "@fast-check/vitest";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { copyModel, MODELS, ROOT, smallCalibrationArgs, tempDir } from "./helpers.js";

/**
 * Property-based mutation of real inputs: the stories260K safetensors file, its config.json, and
 * a thresholds file made by cats calibrate. Whatever the mutation, cats must answer the way the
 * brief asks: exit 0 (the mutation left a valid file), or 1 or 2 with exactly one stderr line
 * starting "cats:"; never a signal, a hang or a stack trace. Seeded, so a failure reproduces.
 */

/** CATS_FUZZ_SEED and CATS_FUZZ_SCALE widen a campaign by hand; the suite runs the fixed seed. */
const SEED = Number(process.env.CATS_FUZZ_SEED ?? 20261123);
const SCALE = Number(process.env.CATS_FUZZ_SCALE ?? 1);
/** Mutations per property run, run concurrently (each is a separate cats process). */
const BATCH = 6;
const CASE_TIMEOUT_MS = 60_000;

interface Outcome {
  status: number | null;
  signal: string | null;
  stderr: string[];
}

function runCats(args: string[]): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(ROOT, "bin/cats.js"), ...args],
      { cwd: ROOT, encoding: "utf8", env: { ...process.env, CATS_MODELS: MODELS }, timeout: CASE_TIMEOUT_MS, maxBuffer: 64 << 20 },
      (error, _stdout, stderr) => {
        const status = error ? (typeof error.code === "number" ? error.code : null) : 0;
        resolve({ status, signal: error?.signal ?? null, stderr: stderr.split("\n").filter((l) => l.trim() !== "") });
      },
    );
  });
}

const tally = { cases: 0, exit0: 0, exit1: 0, exit2: 0 };

function expectCleanOutcome(o: Outcome, what: string): void {
  tally.cases++;
  expect(o.signal, `${what}: killed by ${o.signal} (timeout or crash)`).toBeNull();
  expect([0, 1, 2], `${what}: exit ${o.status}\n${o.stderr.join("\n")}`).toContain(o.status);
  if (o.status === 0) {
    tally.exit0++;
    // A valid file may still earn a warning; every line is cats' own.
    for (const l of o.stderr) expect(l, what).toMatch(/^cats: /);
    return;
  }
  tally[o.status === 1 ? "exit1" : "exit2"]++;
  expect(o.stderr, `${what}: stderr`).toHaveLength(1);
  expect(o.stderr[0], what).toMatch(/^cats: /);
  expect(o.stderr[0], what).not.toMatch(/\bat .*\.js:\d+|unexpected error/);
}

/** A JSON value worth putting where a field was: wrong types, extremes, deep nesting. */
const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(-1, 0, 1, 2 ** 53, 2 ** 64, 1e308, -1e308, 0.5, "NaN", "", null, [], {}, [0, 0], [2 ** 40, 2 ** 41], "\u001b[2J"),
);

type Json = Record<string, unknown>;

/** Sets (or deletes) a value at a path of object keys and array indices picked by `picks`. */
function mutateAt(root: unknown, picks: number[], value: unknown, remove: boolean): unknown {
  const copy = structuredClone(root);
  let node = copy as Json | unknown[];
  for (let d = 0; d < picks.length; d++) {
    const keys = Array.isArray(node) ? node.map((_, i) => i) : Object.keys(node);
    if (keys.length === 0) break;
    const key = keys[picks[d] % keys.length] as keyof typeof node;
    const child = (node as Json)[key as string];
    const last = d === picks.length - 1 || typeof child !== "object" || child === null;
    if (last) {
      if (remove && !Array.isArray(node)) delete (node as Json)[key as string];
      else (node as Json)[key as string] = value;
      break;
    }
    node = child as Json;
  }
  return copy;
}

const jsonMutation = fc.record({
  picks: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
  value: hostileJson,
  remove: fc.boolean(),
});

/** Byte-level damage: a flipped byte, a cut, bytes appended, or a JSON-level change of the header. */
const safetensorsMutation = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat({ max: 3000 }), byte: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("append" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant("header" as const), m: jsonMutation }),
  fc.record({ kind: fc.constant("length" as const), delta: fc.integer({ min: -64, max: 64 }) }),
);

type SafetensorsMutation = typeof safetensorsMutation extends fc.Arbitrary<infer T> ? T : never;

function applySafetensors(bytes: Buffer, m: SafetensorsMutation): Buffer {
  const out = Buffer.from(bytes);
  switch (m.kind) {
    case "flip":
      out[m.at % out.length] = m.byte;
      return out;
    case "cut":
      return out.subarray(0, m.at % out.length);
    case "append":
      return Buffer.concat([out, Buffer.from(m.bytes)]);
    case "length":
      out.writeBigUInt64LE(BigInt(Math.max(0, Number(out.readBigUInt64LE(0)) + m.delta)), 0);
      return out;
    case "header": {
      const n = Number(out.readBigUInt64LE(0));
      const header = JSON.parse(out.subarray(8, 8 + n).toString("utf8"));
      const text = Buffer.from(JSON.stringify(mutateAt(header, m.m.picks, m.m.value, m.m.remove)));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(text.length), 0);
      return Buffer.concat([len, text, out.subarray(8 + n)]);
    }
  }
}

describe("fuzz: mutated real inputs get exit 0, or 1/2 with one cats: line", () => {
  const safetensors = readFileSync(join(MODELS, "stories260K", "model.safetensors"));
  const config = JSON.parse(readFileSync(join(MODELS, "stories260K", "config.json"), "utf8"));
  let thresholds: unknown;
  beforeAll(async () => {
    const out = join(tempDir("cats-fuzz-"), "T.json");
    const r = await runCats(smallCalibrationArgs(out));
    expect(r.status, r.stderr.join("\n")).toBe(0);
    thresholds = JSON.parse(readFileSync(out, "utf8"));
  }, 120_000);
  afterAll(() => {
    process.stdout.write(
      `fuzz: ${tally.cases} cases (seed ${SEED}): ${tally.exit0} valid after mutation (exit 0), ${tally.exit1} refused (exit 1), ${tally.exit2} bad flags (exit 2)\n`,
    );
  });

  it.prop([fc.array(safetensorsMutation, { minLength: BATCH, maxLength: BATCH })], { seed: SEED, numRuns: 14 * SCALE, endOnFailure: true })(
    "model.safetensors",
    async (mutations) => {
      await Promise.all(
        mutations.map(async (m) => {
          const dir = copyModel((d) => writeFileSync(join(d, "model.safetensors"), applySafetensors(safetensors, m)));
          expectCleanOutcome(await runCats(["info", "--model", dir, "--json"]), `safetensors ${JSON.stringify(m).slice(0, 200)}`);
        }),
      );
    },
    600_000,
  );

  it.prop([fc.array(jsonMutation, { minLength: BATCH, maxLength: BATCH })], { seed: SEED, numRuns: 14 * SCALE, endOnFailure: true })(
    "config.json",
    async (mutations) => {
      await Promise.all(
        mutations.map(async (m) => {
          const dir = copyModel((d) => writeFileSync(join(d, "config.json"), JSON.stringify(mutateAt(config, m.picks, m.value, m.remove))));
          expectCleanOutcome(await runCats(["info", "--model", dir, "--json"]), `config ${JSON.stringify(m).slice(0, 200)}`);
        }),
      );
    },
    600_000,
  );

  it.prop([fc.array(jsonMutation, { minLength: BATCH, maxLength: BATCH })], { seed: SEED, numRuns: 4 * SCALE, endOnFailure: true })(
    "thresholds file",
    async (mutations) => {
      await Promise.all(
        mutations.map(async (m) => {
          const path = join(tempDir("cats-fuzz-"), "T.json");
          writeFileSync(path, JSON.stringify(mutateAt(thresholds, m.picks, m.value, m.remove)));
          const args = ["generate", "--thresholds", path, "--sparsity", "0.5", "--max-tokens", "2", "Once"];
          expectCleanOutcome(await runCats(args), `thresholds ${JSON.stringify(m).slice(0, 200)}`);
        }),
      );
    },
    600_000,
  );
});
