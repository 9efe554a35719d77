#!/usr/bin/env python3
"""Sets what `cats inspect --out DIR` wrote beside ../shared/tools/ref_llama.py, step by step.

    cats inspect --out /tmp/insp "Once upon a time"
    python3 scripts/compare-ref.py /tmp/insp [--tools ../shared/tools]

Prints, per named step, the largest absolute difference and the largest relative to the tensor's
scale, so the first step that drifts from the float64 reference is the first line that stands out.
"""
import argparse
import json
import math
import os
import sys

import numpy as np


def reference_steps(ref, ids):
    """ref_llama.RefLlama.forward, keeping each intermediate under the engine's step name."""
    T = len(ids)
    pos = np.arange(T)
    out = {}
    x = ref.w["model.embed_tokens.weight"][np.asarray(ids)]
    out["embed"] = x
    mask = np.triu(np.full((T, T), -np.inf), 1)
    rep = ref.nh // ref.nkv
    for i in range(ref.L):
        p = f"model.layers.{i}."
        at = lambda op: f"layer {i} {op}"  # noqa: E731
        h = ref.rms(x, ref.w[p + "input_layernorm.weight"])
        q = h @ ref.w[p + "self_attn.q_proj.weight"].T
        k = h @ ref.w[p + "self_attn.k_proj.weight"].T
        v = h @ ref.w[p + "self_attn.v_proj.weight"].T
        out[at("qkv")] = np.concatenate([q, k, v], -1)
        q = ref.rope(q.reshape(T, ref.nh, ref.hd), pos)
        k = ref.rope(k.reshape(T, ref.nkv, ref.hd), pos)
        out[at("rope")] = q.reshape(T, -1)
        k = np.repeat(k, rep, axis=1)
        v = np.repeat(v.reshape(T, ref.nkv, ref.hd), rep, axis=1)
        att = np.matmul(q.transpose(1, 0, 2), k.transpose(1, 2, 0)) / math.sqrt(ref.hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.matmul(att, v.transpose(1, 0, 2)).transpose(1, 0, 2).reshape(T, -1)
        out[at("attention")] = o
        x = x + o @ ref.w[p + "self_attn.o_proj.weight"].T
        out[at("o_proj")] = x
        h = ref.rms(x, ref.w[p + "post_attention_layernorm.weight"])
        g = h @ ref.w[p + "mlp.gate_proj.weight"].T
        act = (g / (1.0 + np.exp(-g))) * (h @ ref.w[p + "mlp.up_proj.weight"].T)
        out[at("gate_up")] = act
        x = x + act @ ref.w[p + "mlp.down_proj.weight"].T
        out[at("down")] = x
    out["lm_head"] = ref.rms(x, ref.w["model.norm.weight"]) @ ref.lm_head.T
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="the directory cats inspect --out wrote")
    ap.add_argument("--tools", default=os.path.join(here, "..", "..", "shared", "tools"), help="where ref_llama.py is")
    a = ap.parse_args()
    sys.path.insert(0, a.tools)
    from ref_llama import RefLlama  # noqa: E402

    with open(os.path.join(a.dir, "index.json")) as f:
        index = json.load(f)
    want = reference_steps(RefLlama(index["model"]), index["ids"])
    print(f"{'step':<22} {'rows x width':>14} {'max |diff|':>12} {'rel':>10}")
    for t in index["tensors"]:
        got = np.fromfile(os.path.join(a.dir, t["file"]), dtype="<f4").reshape(t["rows"], t["width"])
        ref = want[t["name"]][-t["rows"]:]
        diff = np.abs(got - ref).max()
        print(f"{t['name']:<22} {t['rows']:>6} x {t['width']:<6} {diff:12.3e} {diff / max(1.0, np.abs(ref).max()):10.3e}")


if __name__ == "__main__":
    main()
