// Batched passes: causal attention over the KV cache with grouped-query heads, one invocation per
// (head, token), single pass with an online softmax so no score buffer is needed. Const HD4:
// head_dim / 4 (so the per-invocation q and accumulator are registers).
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


// Lanes take neighbouring tokens of one head: their loops over positions run in step.
@compute @workgroup_size(8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x;
  let head = gid.y;
  if (head >= p.n_heads || t >= state.ntok) {
    return;
  }
  let last = state.pos + t;
  let kv_off = (head / p.group) * HD4;
  var q: array<vec4<f32>, HD4>;
  var acc: array<vec4<f32>, HD4>;
  let q0 = t * p.q_stride4 + head * HD4;
  for (var i = 0u; i < HD4; i++) {
    q[i] = Q[q0 + i] * p.scale;
  }
  var m = -3.0e38;
  var l = 0.0;
  for (var j = 0u; j <= last; j++) {
    let k0 = j * p.kv_stride4 + kv_off;
    var s = 0.0;
    for (var i = 0u; i < HD4; i++) {
      s += dot(q[i], K[k0 + i]);
    }
    let cw = softmax_step(&m, &l, s);
    for (var i = 0u; i < HD4; i++) {
      acc[i] = acc[i] * cw.x + cw.y * V[k0 + i];
    }
  }
  let o0 = t * p.o_stride4 + head * HD4;
  for (var i = 0u; i < HD4; i++) {
    O[o0 + i] = acc[i] / l;
  }
}
