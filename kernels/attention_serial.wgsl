// One decode token, one invocation per query head and no barrier: each head applies RoPE to its q
// and to its kv head's k, attends over the cached positions 0..pos-1 and the current token's k, v
// (kept in registers, so nothing waits for the cache write), and the first head of each kv group
// writes k and v into the cache for later steps. Serial over positions: for short contexts and CPU
// drivers, where a barrier costs more than the work. Consts: HD head_dim, WG invocations per workgroup.
//#include common
//#include attention_decode_io

fn rotated(src: u32, pos: u32) -> array<f32, HD> {
  var out: array<f32, HD>;
  for (var i = 0u; i < HALF; i++) {
    let cs = rope[pos * HALF + i];
    let a = QKV[src + i];
    let b = QKV[src + i + HALF];
    out[i] = a * cs.x - b * cs.y;
    out[i + HALF] = b * cs.x + a * cs.y;
  }
  return out;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let h = gid.x;
  if (h >= p.n_heads) {
    return;
  }
  let group = p.n_heads / p.n_kv;
  let kvh = h / group;
  let pos = state.pos;
  let q = rotated(h * HD, pos);
  let k_now = rotated((p.n_heads + kvh) * HD, pos);
  var v_now: array<f32, HD>;
  let v_src = (p.n_heads + p.n_kv + kvh) * HD;
  for (var i = 0u; i < HD; i++) {
    v_now[i] = QKV[v_src + i];
  }
  if (h % group == 0u) {
    let dst = pos * p.kv_stride + kvh * HD;
    for (var i = 0u; i < HD; i++) {
      K[dst + i] = k_now[i];
      V[dst + i] = v_now[i];
    }
  }
  // The current position first: its score starts the online softmax.
  var s_now = 0.0;
  for (var i = 0u; i < HD; i++) {
    s_now += q[i] * k_now[i];
  }
  var m = s_now * p.scale;
  var l = 1.0;
  var acc = v_now;
  for (var j = 0u; j < pos; j++) {
    let k0 = j * p.kv_stride + kvh * HD;
    var s = 0.0;
    for (var i = 0u; i < HD; i++) {
      s += q[i] * K[k0 + i];
    }
    s *= p.scale;
    let cw = softmax_step(&m, &l, s);
    for (var i = 0u; i < HD; i++) {
      acc[i] = acc[i] * cw.x + cw.y * V[k0 + i];
    }
  }
  for (var i = 0u; i < HD; i++) {
    O[h * HD + i] = acc[i] / l;
  }
}
