// Batched passes: causal attention over the KV cache with grouped-query heads, one invocation per
// (head, token), single pass with an online softmax so no score buffer is needed. A workgroup is
// 8 neighbouring tokens of one head; they walk the positions in step, up to the last any of them
// attends to, and a lane past its own last position skips it. Consts: HD4 head_dim / 4 (the
// per-invocation q and accumulator are registers); SHARED: see share_row.
//#if SHARED
enable subgroups;
//#endif
//#include common

struct AttnParams {
  n_heads: u32,
  group: u32,      // query heads per kv head
  q_stride4: u32,
  kv_stride4: u32,
  o_stride4: u32,
  scale: f32,
}
@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> K: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> V: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> O: array<vec4<f32>>;

const LANES = 8u;
const SHARE = (HD4 + LANES - 1u) / LANES;

// One position's K or V row (HD4 blocks from `at`) for every lane. Every lane needs the same row,
// but a CPU driver reads storage lane by lane, so each lane reading it whole costs 8 reads per
// element. With SHARED (a subgroup of exactly the workgroup's 8 lanes) lane l reads blocks l,
// l + 8, ... and subgroup shuffles pass each block round: one read per element.
fn kv_row(M: ptr<storage, array<vec4<f32>>, read>, at: u32, lane: u32) -> array<vec4<f32>, HD4> {
  var row: array<vec4<f32>, HD4>;
//#if SHARED
  for (var c = 0u; c < SHARE; c++) {
    let mine = (*M)[at + min(c * LANES + lane, HD4 - 1u)];
    // A shuffle index that is a loop counter unrolled to constants; a runtime bound is 10x slower on llvmpipe.
    for (var i = 0u; i < LANES; i++) {
      if (c * LANES + i < HD4) {
        row[c * LANES + i] = subgroupShuffle(mine, i);
      }
    }
  }
//#else
  for (var i = 0u; i < HD4; i++) {
    row[i] = (*M)[at + i];
  }
//#endif
  return row;
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let head = wid.y;
  let first = wid.x * LANES;
  if (head >= p.n_heads || first >= state.ntok) {
    return;
  }
  // Lanes past the pass's last token compute that token again (their shuffles are needed) but write nothing.
  let t = min(first + lane, state.ntok - 1u);
  let last = state.pos + t;
  let last_of_group = state.pos + min(first + LANES - 1u, state.ntok - 1u);
  let kv_off = (head / p.group) * HD4;
  var q: array<vec4<f32>, HD4>;
  var acc: array<vec4<f32>, HD4>;
  let q0 = t * p.q_stride4 + head * HD4;
  for (var i = 0u; i < HD4; i++) {
    q[i] = Q[q0 + i] * p.scale;
  }
  var m = -3.0e38;
  var l = 0.0;
  for (var j = 0u; j <= last_of_group; j++) {
    let k0 = j * p.kv_stride4 + kv_off;
    let k = kv_row(&K, k0, lane);
    let v = kv_row(&V, k0, lane);
    if (j <= last) {
      var s = 0.0;
      for (var i = 0u; i < HD4; i++) {
        s += dot(q[i], k[i]);
      }
      let cw = softmax_step(&m, &l, s);
      for (var i = 0u; i < HD4; i++) {
        acc[i] = acc[i] * cw.x + cw.y * v[i];
      }
    }
  }
  if (first + lane < state.ntok) {
    let o0 = t * p.o_stride4 + head * HD4;
    for (var i = 0u; i < HD4; i++) {
      O[o0 + i] = acc[i] / l;
    }
  }
}
