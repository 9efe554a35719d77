// Greedy pick on the GPU, then advance the decode state: the next pass embeds this token at the
// next position. No CPU round trip is needed between greedy steps. Const WG: lanes (1 on CPU drivers).
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

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var bv = -3.4e38;
  var bi = 0xffffffffu;
  for (var i = lid; i < p.vocab; i += WG) {
    let v = logits[i];
    if (v > bv) {
      bv = v;
      bi = i;
    }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
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
    out_ids[state.step] = tok;
    state.pos += state.ntok;
    state.ntok = 1u;
    state.step += 1u;
  }
}
