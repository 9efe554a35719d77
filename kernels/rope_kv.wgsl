// Batched passes: applies RoPE (HF rotate_half convention) to the q and k heads of every token's
// qkv projection, writes q to Q and k, v into this layer's KV cache at the tokens' positions.
// One invocation per (head, token); heads n_heads.. are the kv heads.
//#include common

struct RopeParams {
  n_heads: u32,
  n_kv: u32,
  head_dim: u32,
  qkv_stride: u32,
  q_stride: u32,
  kv_stride: u32,
}
@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> QKV: array<f32>;
// (cos, sin) per position and frequency, computed in float64 on the CPU.
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> Q: array<f32>;
@group(0) @binding(5) var<storage, read_write> K: array<f32>;
@group(0) @binding(6) var<storage, read_write> V: array<f32>;

fn rotated(src: u32, pos: u32, i: u32) -> vec2<f32> {
  let half = p.head_dim / 2u;
  let cs = rope[pos * half + i];
  let a = QKV[src + i];
  let b = QKV[src + i + half];
  return vec2<f32>(a * cs.x - b * cs.y, b * cs.x + a * cs.y);
}

@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let head = gid.x;
  let t = gid.y;
  if (head >= p.n_heads + p.n_kv || t >= state.ntok) {
    return;
  }
  let pos = state.pos + t;
  let row = t * p.qkv_stride;
  let half = p.head_dim / 2u;
  if (head < p.n_heads) {
    let dst = t * p.q_stride + head * p.head_dim;
    for (var i = 0u; i < half; i++) {
      let r = rotated(row + head * p.head_dim, pos, i);
      Q[dst + i] = r.x;
      Q[dst + i + half] = r.y;
    }
    return;
  }
  let kvh = head - p.n_heads;
  let dst = pos * p.kv_stride + kvh * p.head_dim;
  for (var i = 0u; i < half; i++) {
    let r = rotated(row + (p.n_heads + kvh) * p.head_dim, pos, i);
    K[dst + i] = r.x;
    K[dst + i + half] = r.y;
  }
  let v_src = row + (p.n_heads + p.n_kv + kvh) * p.head_dim;
  for (var i = 0u; i < p.head_dim; i++) {
    V[dst + i] = QKV[v_src + i];
  }
}
