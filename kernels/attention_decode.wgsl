// One decode token, one workgroup per kv head: applies RoPE to the token's k (and, head by head,
// to its q heads), writes k and v into this layer's cache at the token's position, then attends
// over positions 0..pos (attend.wgsl): the RoPE, the KV write and the attention are one dispatch.
// Consts: WG lanes, HD head_dim (so per-lane arrays are registers).
//#include common
//#include attention_decode_io
const AW: u32 = WG;
//#include attend

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let kvh = wid.x;
  let pos = state.pos;
  let group = p.n_heads / p.n_kv;
  let k_src = (p.n_heads + kvh) * HD;
  let v_src = (p.n_heads + p.n_kv + kvh) * HD;
  let dst = pos * p.kv_stride + kvh * HD;
  for (var i = lane; i < HALF; i += WG) {
    let r = rope_pair(QKV[k_src + i], QKV[k_src + i + HALF], pos, i);
    K[dst + i] = r.x;
    K[dst + i + HALF] = r.y;
  }
  for (var i = lane; i < HD; i += WG) {
    V[dst + i] = QKV[v_src + i];
  }
  storageBarrier();
  for (var h = kvh * group; h < (kvh + 1u) * group; h++) {
    for (var i = lane; i < HALF; i += WG) {
      let r = rope_pair(QKV[h * HD + i], QKV[h * HD + i + HALF], pos, i);
      q[i] = r.x * p.scale;
      q[i + HALF] = r.y * p.scale;
    }
    attend_head(lane, kvh * HD, p.kv_stride, pos, h * HD);
  }
}
