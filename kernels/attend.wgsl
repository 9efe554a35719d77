// The attention of one decode token's q head over positions 0..pos of its kv head's cache, shared
// by attention_decode.wgsl and qkv_attention.wgsl. The first AW lanes split the positions, each
// keeping an online softmax, and the WG lanes combine their partial results at the end (AW <= WG:
// a wide workgroup's partial sums, AW x head_dim floats, must stay within the workgroup storage
// limit). The caller fills `q` (rotated and scaled) and calls from workgroup-uniform control flow.
// Needs K, V, O, rope, HD, HALF and AW declared.
var<workgroup> q: array<f32, HD>;
var<workgroup> part_m: array<f32, AW>;
var<workgroup> part_l: array<f32, AW>;
var<workgroup> part_acc: array<f32, AW * HD>;

// RoPE of the pair (a, b) = (x[i], x[i + HD/2]) at position pos.
fn rope_pair(a: f32, b: f32, pos: u32, i: u32) -> vec2<f32> {
  let cs = rope[pos * HALF + i];
  return vec2<f32>(a * cs.x - b * cs.y, b * cs.x + a * cs.y);
}

// o[o0 .. o0 + HD) = softmax(q K^T) V over the cache rows starting at kv0 of positions 0..pos.
fn attend_head(lane: u32, kv0: u32, kv_stride: u32, pos: u32, o0: u32) {
  workgroupBarrier();
  if (lane < AW) {
    var m = -3.0e38;
    var l = 0.0;
    var acc: array<f32, HD>;
    // q into registers first: on CPU drivers a workgroup-memory read in the loop is a read per lane per position.
    var qr: array<f32, HD>;
    for (var i = 0u; i < HD; i++) {
      qr[i] = q[i];
    }
    for (var j = lane; j <= pos; j += AW) {
      let k0 = j * kv_stride + kv0;
      var s = 0.0;
      for (var i = 0u; i < HD; i++) {
        s += qr[i] * K[k0 + i];
      }
      let cw = softmax_step(&m, &l, s);
      for (var i = 0u; i < HD; i++) {
        acc[i] = acc[i] * cw.x + cw.y * V[k0 + i];
      }
    }
    part_m[lane] = m;
    part_l[lane] = l;
    for (var i = 0u; i < HD; i++) {
      part_acc[lane * HD + i] = acc[i];
    }
  }
  workgroupBarrier();
  var big_m = -3.0e38;
  for (var s = 0u; s < AW; s++) {
    big_m = max(big_m, part_m[s]);
  }
  var total_l = 0.0;
  for (var s = 0u; s < AW; s++) {
    total_l += part_l[s] * exp(part_m[s] - big_m);
  }
  for (var i = lane; i < HD; i += WG) {
    var o = 0.0;
    for (var s = 0u; s < AW; s++) {
      o += part_acc[s * HD + i] * exp(part_m[s] - big_m);
    }
    O[o0 + i] = o / total_l;
  }
  workgroupBarrier();
}
