// Applies RoPE (HF rotate_half convention) to the q and k heads of the fused qkv output, writes
// q to Q and k, v into this layer's KV cache at the tokens' absolute positions.
struct RopeParams {
  n_heads: u32,
  n_kv: u32,
  head_dim: u32,
  qkv_stride: u32,
  q_stride: u32,
  kv_stride: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(1) var<uniform> p: RopeParams;
@group(0) @binding(2) var<storage, read> state: State;
@group(0) @binding(3) var<storage, read> QKV: array<f32>;
// (cos, sin) per position and frequency, computed in float64 on the CPU.
@group(0) @binding(4) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> Q: array<f32>;
@group(0) @binding(6) var<storage, read_write> K: array<f32>;
@group(0) @binding(7) var<storage, read_write> V: array<f32>;

fn rotate(src: u32, pos: u32, dst: u32, to_q: bool) {
  let half = p.head_dim / 2u;
  for (var i = 0u; i < half; i++) {
    let cs = table[pos * half + i];
    let a = QKV[src + i];
    let b = QKV[src + i + half];
    let lo = a * cs.x - b * cs.y;
    let hi = b * cs.x + a * cs.y;
    if (to_q) {
      Q[dst + i] = lo;
      Q[dst + i + half] = hi;
    } else {
      K[dst + i] = lo;
      K[dst + i + half] = hi;
    }
  }
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
  if (head < p.n_heads) {
    rotate(row + head * p.head_dim, pos, t * p.q_stride + head * p.head_dim, true);
    return;
  }
  let kvh = head - p.n_heads;
  let k_src = row + (p.n_heads + kvh) * p.head_dim;
  let v_src = row + (p.n_heads + p.n_kv + kvh) * p.head_dim;
  let dst = pos * p.kv_stride + kvh * p.head_dim;
  rotate(k_src, pos, dst, false);
  for (var i = 0u; i < p.head_dim; i++) {
    V[dst + i] = QKV[v_src + i];
  }
}
