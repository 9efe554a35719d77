// One decode token, one workgroup per kv head: applies RoPE to the token's k (and, head by head,
// to its q heads), writes k and v into this layer's cache at the token's position, then attends
// over positions 0..pos. The WG lanes split the positions, each keeping an online softmax, and
// combine their partial results at the end: the RoPE, the KV write and the attention are one
// dispatch. Consts: WG lanes, HD head_dim (so per-lane arrays are registers).
//#include common
//#include attention_decode_io
var<workgroup> q: array<f32, HD>;
var<workgroup> part_m: array<f32, WG>;
var<workgroup> part_l: array<f32, WG>;
var<workgroup> part_acc: array<f32, WG * HD>;

fn rotated(src: u32, pos: u32, i: u32) -> vec2<f32> {
  let half = HALF;
  let cs = rope[pos * half + i];
  let a = QKV[src + i];
  let b = QKV[src + i + half];
  return vec2<f32>(a * cs.x - b * cs.y, b * cs.x + a * cs.y);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let kvh = wid.x;
  let hd = HD;
  let half = HALF;
  let pos = state.pos;
  let group = p.n_heads / p.n_kv;
  let k_src = (p.n_heads + kvh) * hd;
  let v_src = (p.n_heads + p.n_kv + kvh) * hd;
  let dst = pos * p.kv_stride + kvh * hd;
  for (var i = lane; i < half; i += WG) {
    let r = rotated(k_src, pos, i);
    K[dst + i] = r.x;
    K[dst + i + half] = r.y;
  }
  for (var i = lane; i < hd; i += WG) {
    V[dst + i] = QKV[v_src + i];
  }
  storageBarrier();
  for (var h = kvh * group; h < (kvh + 1u) * group; h++) {
    for (var i = lane; i < half; i += WG) {
      let r = rotated(h * hd, pos, i);
      q[i] = r.x * p.scale;
      q[i + half] = r.y * p.scale;
    }
    workgroupBarrier();
    var m = -3.0e38;
    var l = 0.0;
    var acc: array<f32, HD>;
    for (var j = lane; j <= pos; j += WG) {
      let k0 = j * p.kv_stride + kvh * hd;
      var s = 0.0;
      for (var i = 0u; i < hd; i++) {
        s += q[i] * K[k0 + i];
      }
      let cw = softmax_step(&m, &l, s);
      for (var i = 0u; i < hd; i++) {
        acc[i] = acc[i] * cw.x + cw.y * V[k0 + i];
      }
    }
    part_m[lane] = m;
    part_l[lane] = l;
    for (var i = 0u; i < hd; i++) {
      part_acc[lane * HD + i] = acc[i];
    }
    workgroupBarrier();
    var big_m = -3.0e38;
    for (var s = 0u; s < WG; s++) {
      big_m = max(big_m, part_m[s]);
    }
    var total_l = 0.0;
    for (var s = 0u; s < WG; s++) {
      total_l += part_l[s] * exp(part_m[s] - big_m);
    }
    for (var i = lane; i < hd; i += WG) {
      var o = 0.0;
      for (var s = 0u; s < WG; s++) {
        o += part_acc[s * HD + i] * exp(part_m[s] - big_m);
      }
      O[h * hd + i] = o / total_l;
    }
    workgroupBarrier();
  }
}
