// Greedy pick on the GPU, then advance the decode state: the next pass embeds this token at the
// next position. No CPU round trip is needed between greedy steps. Const WG: lanes (1 on CPU drivers).
// A NaN or infinite logit (broken weights) sets NON_FINITE in the id written to out_ids, so the
// CPU learns of it with the id it reads anyway; the token fed forward stays a valid id.
//#include common

struct ArgmaxParams {
  vocab: u32,
}
@group(0) @binding(0) var<uniform> p: ArgmaxParams;
@group(0) @binding(1) var<storage, read_write> state: State;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> out_ids: array<u32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;
var<workgroup> any_bad: atomic<u32>;

const NON_FINITE = 0x80000000u;

// By bits, since compilers may fold `v != v` away.
fn non_finite(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var bv = -3.4e38;
  var bi = 0xffffffffu;
  var bad = false;
  for (var i = lid; i < p.vocab; i += WG) {
    let v = logits[i];
    bad = bad || non_finite(v);
    if (v > bv) {
      bv = v;
      bi = i;
    }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
  if (bad) {
    atomicOr(&any_bad, 1u);
  }
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half >>= 1u) {
    if (lid < half) {
      let ov = best_v[lid + half];
      let oi = best_i[lid + half];
      // Ties go to the lower id, as numpy's argmax does.
      if (ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) {
        best_v[lid] = ov;
        best_i[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let tok = min(best_i[0], p.vocab - 1u);
    tokens[0] = tok;
    out_ids[state.step] = select(tok, tok | NON_FINITE, atomicLoad(&any_bad) != 0u);
    state.pos += state.ntok;
    state.ntok = 1u;
    state.step += 1u;
  }
}
