#!/usr/bin/env node
import { Command, CommanderError, Option } from "commander";
import { CatsError } from "../errors.js";
import { bounded, escapeControl } from "../model/describe.js";
import {
  calibrationLevels,
  integer,
  kernelFlavour,
  nonNegativeInt,
  nonNegativeNumber,
  positiveInt,
  benchTokens,
  modelList,
  probability,
  sparsityLevel,
  sparsityLevels,
  variantOverrides,
  port,
  pue,
  quantBits,
  quantGroup,
  wattsPerCore,
} from "./args.js";
import { runEval } from "./eval.js";
import { runGenerate } from "./generate.js";
import { runInfo } from "./info.js";
import { runCalibrate } from "./calibrate.js";
import { runBenchCommand } from "./bench.js";
import { runSynth } from "./synth.js";
import { runInspect } from "./inspect.js";
import { runChat } from "./chat.js";
import { runServe } from "./serve.js";
import { runPull } from "./pull.js";
import { runQuantize } from "./quantize.js";
import { runExport } from "./export.js";
import { SYNTH_SHAPES } from "../synth/shapes.js";

const modelHelp = "model directory or name (looked up in weights/, $CATS_MODELS, and as org/name in the Hugging Face cache)";
const thresholdsOption = (): Option => new Option("--thresholds <file>", "CATS thresholds from cats calibrate");
const sparsityOption = (): Option => new Option("--sparsity <k>", "target CATS sparsity level (0 = dense)").argParser(sparsityLevel);
const kernelsOption = (): Option =>
  new Option("--kernels <flavour>", "force kernel variants: cpu or gpu (default: by adapter)").argParser(kernelFlavour);
const contextOption = (): Option =>
  new Option("--context <n>", "positions the KV cache holds (default: max_position_embeddings, at most 4096)").argParser(positiveInt);
const keepCrOption = (): Option =>
  new Option(
    "--keep-cr",
    "read the text file byte for byte (default: universal newlines, \\r\\n and \\r become \\n, as Python reads text)",
  );
const variantOption = (): Option =>
  new Option("--variant <op=name,...>", "force kernel variants per op (cats info lists ops and variants)").argParser(variantOverrides);

function buildProgram(): Command {
  const program = new Command("cats")
    .description("Llama-style inference on WebGPU with CATS activation sparsity")
    .exitOverride()
    .showHelpAfterError(false)
    // Commander's own messages (bad flags) take the same one-line "cats: ..." form as every other error.
    .configureOutput({ outputError: (text, write) => write(`cats: ${text.replace(/^error: /, "")}`) });

  program
    .command("generate")
    .description("generate text from a prompt, streamed to stdout")
    .argument("<prompt>", "the prompt text")
    .option("--model <dir>", modelHelp)
    .option("--max-tokens <n>", "most new tokens", positiveInt, 128)
    .option("--temperature <t>", "sampling temperature; 0 is greedy", nonNegativeNumber, 0)
    .option("--top-k <k>", "keep the k most likely tokens; 0 keeps all", nonNegativeInt, 0)
    .option("--top-p <p>", "nucleus sampling mass", probability, 1)
    .option("--seed <s>", "seed for reproducible sampling", integer)
    .option("--json", "print one JSON object instead of streaming text")
    .option("--check-weights", "scan every tensor for NaN and infinity before loading")
    .addOption(thresholdsOption())
    .addOption(sparsityOption())
    .addOption(contextOption())
    .addOption(kernelsOption())
    .addOption(variantOption())
    .action(runGenerate);

  program
    .command("eval")
    .description("perplexity of a text file, windowed as reference.json describes")
    .requiredOption("--data <file>", "UTF-8 text file")
    .option("--model <dir>", modelHelp)
    .option("--max-tokens <n>", "stop after the window at which this many tokens were predicted", positiveInt)
    .option("--json", "print JSON")
    .addOption(thresholdsOption())
    .addOption(sparsityOption())
    .addOption(contextOption())
    .addOption(keepCrOption())
    .addOption(kernelsOption())
    .addOption(variantOption())
    .action(runEval);

  program
    .command("calibrate")
    .description("record |SiLU(gate)| per layer over a text and write CATS thresholds")
    .requiredOption("--data <file>", "UTF-8 calibration text")
    .option("--model <dir>", modelHelp)
    .option("--tokens <n>", "positions to collect", positiveInt, 20480)
    .option("--levels <list>", "sparsity levels with exact thresholds", calibrationLevels, [0.3, 0.5, 0.7, 0.9])
    .option("--out <file>", "thresholds file (default: cats-thresholds.json in the model directory)")
    .option("--no-refine", "keep the dense model's quantiles (no second pass per level with earlier layers sparsified)")
    .option("--json", "print a JSON summary")
    .addOption(contextOption())
    .addOption(keepCrOption())
    .addOption(kernelsOption())
    .addOption(variantOption())
    .action(runCalibrate);

  program
    .command("bench")
    .description("dense vs CATS decoding: latency, tokens/s, energy per token, accuracy")
    .option("--model <dir>", modelHelp)
    .addOption(thresholdsOption())
    .option("--sparsity <list>", "levels to compare (0 = dense, always included)", sparsityLevels, [0, 0.5, 0.7])
    .option("--prompt-tokens <n>", "prompt length (BOS included)", positiveInt, 32)
    .option("--tokens <n>", "greedy tokens per run (at least 2)", benchTokens, 64)
    .option("--runs <r>", "measured runs per level", positiveInt, 5)
    .option(
      "--chain <n>",
      "greedy steps per submission (1: each token read back, as sampling runs; generate chains up to 32)",
      positiveInt,
      1,
    )
    .option("--eval-data <file>", "text for held-out perplexity at each level (also the prompt's source)")
    .option("--eval-tokens <n>", "tokens of --eval-data to score", positiveInt, 2044)
    .addOption(new Option("--energy <source>", "force an energy meter").choices(["nvml", "rapl", "estimate"]))
    .option("--watts-per-core <w>", "estimate: W per core (Green Algorithms)", wattsPerCore)
    .option("--pue <p>", "estimate: power usage effectiveness (>= 1)", pue)
    .addOption(
      new Option("--compare <dirs>", "other models (comma-separated) to decode dense beside --model, run by run in turn, each against it")
        .argParser(modelList)
        .conflicts(["thresholds", "sparsity"]),
    )
    .option("--json", "print the JSON report")
    .option("--out <dir>", "where bench.json, bench.md and bench.svg go (bench.json and bench.md with --compare)", "bench-out")
    .addOption(contextOption())
    .addOption(keepCrOption())
    .addOption(kernelsOption())
    .addOption(variantOption())
    .action((flags, command) => runBenchCommand(flags, command));

  program
    .command("synth")
    .description("write a deterministic SYNTHETIC checkpoint of a real shape (speed and energy only)")
    .addOption(new Option("--shape <name>", "model shape").choices(Object.keys(SYNTH_SHAPES)).makeOptionMandatory())
    .addOption(new Option("--dtype <dtype>", "weight dtype").choices(["f16", "f32"]).default("f16"))
    .requiredOption("--out <dir>", "directory to write")
    .option("--seed <s>", "random seed", integer, 1)
    .option("--tokenizer <dir>", "directory with the Llama 2 tokenizer.json", "llama2-tokenizer")
    .action(runSynth);

  program
    .command("quantize")
    .description("quantize the projections to 8 or 4 bits (round-to-nearest, GPTQ layout) and write a model directory")
    .option("--model <dir>", modelHelp)
    .addOption(new Option("--bits <n>", "bits per weight: 8 or 4").argParser(quantBits).makeOptionMandatory())
    .addOption(
      new Option("--group <n>", "input columns per scale, or row for one per output row (default: 128 at 4 bits, row at 8)").argParser(
        quantGroup,
      ),
    )
    .addOption(new Option("--sym", "symmetric: zero point in the middle of the code range (default)").conflicts("asym"))
    .addOption(new Option("--asym", "asymmetric: a zero point per group"))
    .option("--lm-head", "quantize lm_head too; a tied one is the embedding, quantized as cats' own format (default: it keeps its dtype)")
    .requiredOption("--out <dir>", "directory to write")
    .action(runQuantize);

  program
    .command("export")
    .description("write the model in another format")
    .command("onnx")
    .description("an ONNX decoder with a KV cache, laid out as transformers.js and onnxruntime read it")
    .option("--model <dir>", modelHelp)
    .addOption(new Option("--dtype <dtype>", "weight dtype").choices(["f32", "f16"]).default("f32"))
    .addOption(thresholdsOption())
    .addOption(sparsityOption())
    .option("--external-data", "weights in onnx/<model>.onnx_data (default: only past 1.5 GB of weights)")
    .option("--json", "print a JSON summary")
    .requiredOption("--out <dir>", "directory to write (config, tokenizer, onnx/model.onnx)")
    .action(runExport);

  program
    .command("chat")
    .description("chat in the terminal with an instruct model (its chat template; the KV cache is kept across turns)")
    .option("--model <dir>", modelHelp)
    .option("--system <text>", "a system message at the start of the conversation")
    .option("--max-tokens <n>", "most new tokens per reply", positiveInt, 512)
    .option("--temperature <t>", "sampling temperature; 0 is greedy", nonNegativeNumber, 0)
    .option("--top-k <k>", "keep the k most likely tokens; 0 keeps all", nonNegativeInt, 0)
    .option("--top-p <p>", "nucleus sampling mass", probability, 1)
    .option("--seed <s>", "seed for reproducible sampling", integer)
    .addOption(thresholdsOption())
    .addOption(sparsityOption())
    .addOption(contextOption())
    .addOption(kernelsOption())
    .addOption(variantOption())
    .action(runChat);

  program
    .command("serve")
    .description("an OpenAI-compatible HTTP server: /v1/models, /v1/completions, /v1/chat/completions, /health, /metrics")
    .option("--model <dir>", modelHelp)
    .option("--host <host>", "address to listen on (localhost unless you mean otherwise)", "127.0.0.1")
    .option("--port <port>", "TCP port (0 picks a free one)", port, 8080)
    .option("--api-key <key>", "require Authorization: Bearer KEY on /v1 requests")
    .option("--queue <n>", "generation requests admitted at once (running or waiting); more get 429", positiveInt, 64)
    .addOption(thresholdsOption())
    .addOption(sparsityOption())
    .addOption(contextOption())
    .addOption(kernelsOption())
    .addOption(variantOption())
    .action(runServe);

  program
    .command("pull")
    .description("download a model from the Hugging Face hub into its cache ($HF_HUB_CACHE; HF_ENDPOINT, HF_TOKEN respected)")
    .argument("<repo>", "repository id, org/name (or org/name@revision)")
    .option("--revision <rev>", "branch, tag or commit (default: main)")
    .action(runPull);

  program
    .command("info")
    .description("print the WebGPU adapter, the kernel variant of each op, the read ceiling, features and limits")
    .option("--json", "print JSON")
    .option("--measure", "measure the read ceiling again instead of using the cached figure")
    .option("--model <dir>", "also check a model: config, tensors, tokenizer, and every weight finite")
    .addOption(kernelsOption())
    .addOption(variantOption())
    .action(runInfo);

  program
    .command("inspect")
    .description("debug: run a prompt and print (or --out write) what each named step of the forward pass produced")
    .argument("<prompt>", "the prompt text")
    .option("--model <dir>", modelHelp)
    .option(
      "--step <name>",
      'a step to keep, e.g. "layer 0 o_proj" (repeatable; default: every step)',
      (v: string, all: string[]) => [...all, v],
      [],
    )
    .option("--out <dir>", "write each tensor as raw float32 rows and an index.json (for scripts/compare-ref.py)")
    .option("--json", "print JSON with every value")
    .addOption(contextOption())
    .addOption(kernelsOption())
    .addOption(variantOption())
    .action(runInspect);

  return program;
}

/** Longest error message printed: a message quoting a file's content must not flood the terminal. */
const MAX_MESSAGE = 600;

/** Exits once stderr has drained: a long message on a pipe is not cut at the pipe's buffer. */
function exitAfter(code: number, message?: string): never {
  if (message === undefined) process.exit(code);
  process.stderr.write(message, () => process.exit(code));
  // Nothing after a fatal error may run while stderr drains.
  return undefined as never;
}

/**
 * A closed stdout (`cats generate ... | head -c 5`) ends the command quietly with status 0, as Unix
 * tools do, instead of an EPIPE stack trace.
 */
function quietOnClosedStdout(): void {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    exitAfter(1, `cats: cannot write to stdout (${e.code ?? e.message})\n`);
  });
}

async function main(): Promise<void> {
  quietOnClosedStdout();
  const fatal = (e: unknown) =>
    exitAfter(
      1,
      `cats: ${bounded(escapeControl(e instanceof CatsError ? e.message : `unexpected error: ${(e as Error)?.message ?? String(e)}`), MAX_MESSAGE)}\n`,
    );
  process.on("unhandledRejection", fatal);
  process.on("uncaughtException", fatal);
  try {
    await buildProgram().parseAsync(process.argv);
    process.exit(0);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has already printed its message (or the help/version text).
      exitAfter(e.exitCode === 0 ? 0 : 2);
    }
    const message = e instanceof CatsError ? e.message : `unexpected error: ${(e as Error)?.message ?? String(e)}`;
    const line = bounded(escapeControl(message), MAX_MESSAGE);
    const trace = !(e instanceof CatsError) && process.env.CATS_DEBUG ? `${(e as Error)?.stack}\n` : "";
    exitAfter(1, `cats: ${line}\n${trace}`);
  }
}

void main();
