import * as ort from "onnxruntime-node";

/**
 * Greedy decoding of an exported decoder with onnxruntime-node, with a KV cache as transformers.js
 * runs it: the ONNX tests check its logits and ids, bench:peers times its steps.
 */
export interface OrtRun {
  /** [prompt position][vocab] */
  promptLogits: Float32Array[];
  newIds: number[];
  /** Wall time of each step: [0] the prompt's, then one per single-token step. */
  stepMs: number[];
}

const ids = (v: number[]) => new ort.Tensor("int64", BigInt64Array.from(v.map(BigInt)), [1, v.length]);

function argmax(v: Float32Array, from: number, n: number): number {
  let best = from;
  for (let i = from; i < from + n; i++) if (v[i] > v[best]) best = i;
  return best - from;
}

export async function ortSession(path: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(path, { executionProviders: ["cpu"], intraOpNumThreads: 1, interOpNumThreads: 1 });
}

/** Greedy decoding: the prompt in one step, then one token per step against the returned cache. */
export async function ortGreedy(session: ort.InferenceSession, prompt: number[], newTokens: number): Promise<OrtRun> {
  const pastInputs = session.inputNames.filter((n) => n.startsWith("past_key_values."));
  const meta = new Map(
    session.inputMetadata.map((m) => [m.name, m as { name: string; isTensor: boolean; type?: string; shape?: (number | string)[] }]),
  );
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of pastInputs) {
    const m = meta.get(name)!;
    const shape = m.shape!.map((d) => (typeof d === "number" ? d : d === "batch_size" ? 1 : 0));
    feeds[name] =
      m.type === "float16" ? new ort.Tensor("float16", new Uint16Array(0), shape) : new ort.Tensor("float32", new Float32Array(0), shape);
  }
  let tokens = prompt;
  let total = 0;
  const out: OrtRun = { promptLogits: [], newIds: [], stepMs: [] };
  for (let step = 0; step < newTokens; step++) {
    const t0 = performance.now();
    const positions = tokens.map((_, i) => total + i);
    total += tokens.length;
    const r = await session.run({
      ...feeds,
      input_ids: ids(tokens),
      attention_mask: ids(new Array<number>(total).fill(1)),
      position_ids: ids(positions),
    });
    const logits = r.logits.data as Float32Array;
    const V = r.logits.dims[2];
    const next = argmax(logits, (tokens.length - 1) * V, V);
    for (const name of pastInputs) feeds[name] = r[name.replace("past_key_values.", "present.")];
    out.stepMs.push(performance.now() - t0);
    // Kept outside the timed part: a benchmark of the step should not pay for the copy.
    if (step === 0) for (let i = 0; i < tokens.length; i++) out.promptLogits.push(logits.slice(i * V, (i + 1) * V));
    out.newIds.push(next);
    tokens = [next];
  }
  return out;
}
