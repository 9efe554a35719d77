import { openCheckpoint } from "../src/model/checkpoint.js";
import { toFloat32 } from "../src/model/dtype.js";
import { dequantize, isQuantized, readQuantLinear } from "../src/model/gptq.js";
import { directoryFiles } from "../src/model/nodefiles.js";
import { attend, normScale, rope, silu } from "./ops-reference.js";

/**
 * A float64 forward pass of a Llama checkpoint, line for line ref_llama.py's `forward`, that keeps
 * every intermediate under the name of the engine step that produces it ("layer 0 qkv" ...), so the
 * debug path can be checked tensor by tensor. Rows are tokens.
 */
export async function referenceIntermediates(dir: string, ids: number[]): Promise<Map<string, Float64Array[]>> {
  const ckpt = await openCheckpoint(directoryFiles(dir));
  const c = ckpt.config;
  const weight = async (name: string): Promise<Float32Array> => {
    const prefix = name.replace(/\.weight$/, "");
    if (isQuantized(ckpt, prefix)) {
      const [rows, cols] = shapeOf(name);
      return dequantize(await readQuantLinear(ckpt, prefix, rows, cols));
    }
    const t = ckpt.tensors.get(name);
    if (!t || t.dtype === "I32") throw new Error(`reference: float tensor ${name} missing`);
    return toFloat32(await ckpt.read(name), t.dtype);
  };
  const [H, I, hd, nh, nkv] = [c.hiddenSize, c.intermediateSize, c.headDim, c.numHeads, c.numKvHeads];
  /** [out, in] of a quantized matrix (a projection, lm_head, a tied embedding), which has no .weight to read it from. */
  const shapeOf = (name: string): [number, number] => {
    const kv = nkv * hd;
    const table: [string, number, number][] = [
      ["q_proj", nh * hd, H],
      ["k_proj", kv, H],
      ["v_proj", kv, H],
      ["o_proj", H, nh * hd],
      ["gate_proj", I, H],
      ["up_proj", I, H],
      ["down_proj", H, I],
    ];
    table.push(["embed_tokens", c.vocabSize, H], ["lm_head", c.vocabSize, H]);
    const hit = table.find(([n]) => name.includes(`${n}.`));
    if (!hit) throw new Error(`reference: ${name} is not a projection`);
    return [hit[1], hit[2]];
  };
  const out = new Map<string, Float64Array[]>();
  const keep = (name: string, rows: Float64Array[]) =>
    out.set(
      name,
      rows.map((r) => r.slice()),
    );
  /** rows x W^T, W [outRows, cols] row-major. */
  const matmul = (rows: Float64Array[], w: Float32Array, outRows: number): Float64Array[] =>
    rows.map((x) => {
      const y = new Float64Array(outRows);
      for (let r = 0; r < outRows; r++) {
        let acc = 0;
        for (let k = 0; k < x.length; k++) acc += w[r * x.length + k] * x[k];
        y[r] = acc;
      }
      return y;
    });
  const rms = (rows: Float64Array[], g: Float32Array) =>
    rows.map((x) => {
      const s = normScale(x, c.rmsNormEps);
      return x.map((v, i) => v * s * g[i]);
    });
  const add = (a: Float64Array[], b: Float64Array[]) => a.map((r, t) => r.map((v, i) => v + b[t][i]));

  const embed = await weight("model.embed_tokens.weight");
  let x = ids.map((id) => Float64Array.from(embed.subarray(id * H, (id + 1) * H)));
  keep("embed", x);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const at = (op: string) => `layer ${l} ${op}`;
    const h = rms(x, await weight(p + "input_layernorm.weight"));
    const q = matmul(h, await weight(p + "self_attn.q_proj.weight"), nh * hd);
    const k = matmul(h, await weight(p + "self_attn.k_proj.weight"), nkv * hd);
    const v = matmul(h, await weight(p + "self_attn.v_proj.weight"), nkv * hd);
    keep(
      at("qkv"),
      q.map((qt, t) => Float64Array.from([...qt, ...k[t], ...v[t]])),
    );
    const heads = (rows: Float64Array[], n: number) =>
      rows.map((r) => Array.from({ length: n }, (_, j) => r.subarray(j * hd, (j + 1) * hd)));
    const qr = heads(q, nh).map((hs, t) => hs.map((head) => rope(head, t, c.ropeTheta)));
    const kr = heads(k, nkv).map((hs, t) => hs.map((head) => rope(head, t, c.ropeTheta)));
    const vh = heads(v, nkv);
    keep(
      at("rope"),
      qr.map((hs) => Float64Array.from(hs.flatMap((head) => [...head]))),
    );
    const o = qr.map((hs, t) => {
      const row = new Float64Array(nh * hd);
      hs.forEach((qh, j) => {
        const kv = Math.floor(j / (nh / nkv));
        const keys = kr.slice(0, t + 1).map((ks) => ks[kv]);
        const values = vh.slice(0, t + 1).map((vs) => vs[kv]);
        row.set(attend(qh, keys, values), j * hd);
      });
      return row;
    });
    keep(at("attention"), o);
    x = add(x, matmul(o, await weight(p + "self_attn.o_proj.weight"), H));
    keep(at("o_proj"), x);
    const h2 = rms(x, await weight(p + "post_attention_layernorm.weight"));
    const g = matmul(h2, await weight(p + "mlp.gate_proj.weight"), I);
    const u = matmul(h2, await weight(p + "mlp.up_proj.weight"), I);
    const act = g.map((gt, t) => gt.map((gv, i) => silu(gv) * u[t][i]));
    keep(at("gate_up"), act);
    x = add(x, matmul(act, await weight(p + "mlp.down_proj.weight"), H));
    keep(at("down"), x);
  }
  const head = ckpt.tensors.has("lm_head.weight") && !c.tieWordEmbeddings ? await weight("lm_head.weight") : embed;
  keep("lm_head", matmul(rms(x, await weight("model.norm.weight")), head, c.vocabSize));
  await ckpt.close();
  return out;
}
