// One decode token's whole layer in one workgroup of one subgroup of 8 lanes, for models so small
// that a CPU driver spends more on dispatches than on their work:
//   h = rmsnorm(x);  qkv = h W_qkv;  q, k = rope(q, k);  cache k, v;  o = softmax(q K^T / sqrt(d)) V
// then o_mlp_tail.wgsl (o_proj, the MLP with CATS, both residual adds). x and the products' outputs
// stay spread over the lanes' registers in blocks of 8; q, k and v go through workgroup memory, from
// which RoPE, the KV-cache write and attention (attend.wgsl, the lanes splitting the positions) read.
// The input norm's gain is folded into W_qkv, or applied from GQ (GAIN_QKV). Consts: those of o_mlp_tail.wgsl, QKV (rows of W_qkv),
// QB and QM (its blocks of 8, per lane), NQ and NKV (heads), HD (head_dim), QG (q heads per kv head).
//#include common
//#include o_mlp_tail
//#if UW
//#weights8u WQKV
//#else
//#weights8 WQKV
//#endif

struct LayerParams {
  o_cols8: u32,     // W_o's row stride in blocks of 8
  h_cols8: u32,     // W_qkv's, W_gate's, W_up's and W_down^T's row stride in blocks of 8
  hidden: u32,
  inter: u32,
  layer: u32,
  threshold: f32,   // < 0: dense, nothing masked or counted
  eps: f32,
  scale: f32,       // 1 / sqrt(head_dim)
}
@group(0) @binding(0) var<uniform> p: LayerParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(3) var<storage, read_write> X: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> totals: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> K: array<f32>;
@group(0) @binding(7) var<storage, read_write> V: array<f32>;
@group(0) @binding(8) var<storage, read_write> O: array<f32>;
//#if GAIN_QKV
@group(0) @binding(10) var<storage, read> GQ: array<vec4<f32>>;
//#endif

const HALF: u32 = HD / 2u;

// RoPE of the pair (a, b) = (x[i], x[i + HD/2]) at position pos.
fn rope_pair(a: f32, b: f32, pos: u32, i: u32) -> vec2<f32> {
  let cs = rope[pos * HALF + i];
  return vec2<f32>(a * cs.x - b * cs.y, b * cs.x + a * cs.y);
}

var<workgroup> qkv_rows: array<f32, QKV>;

@compute @workgroup_size(8)
fn main(@builtin(subgroup_invocation_id) lane: u32) {
  let pos = state.pos;
  let x = load_x(lane);

  // h = rmsnorm(x), the gain in W_qkv; qkv = h W_qkv, lane l's rows those of its blocks.
  var ss = 0.0;
  for (var m = 0u; m < HM; m++) {
    ss += dot8(x[m], x[m]);
  }
  let s = inverseSqrt(subgroupAdd(ss) / f32(p.hidden) + p.eps);
  var h: array<Block, HM>;
  for (var m = 0u; m < HM; m++) {
    h[m] = x[m] * s;
//#if GAIN_QKV
    let b = lane + 8u * m;
    if (b < HB) {
      h[m] = Block(h[m][0] * GQ[2u * b], h[m][1] * GQ[2u * b + 1u]);
    }
//#endif
  }
  for (var m = 0u; m < QM; m++) {
    let r0 = 8u * (lane + 8u * m);
    var sums: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
      sums[i] = vec4<f32>(0.0);
    }
    for (var k0 = 0u; k0 < HM; k0++) {
      for (var sl = 0u; sl < 8u; sl++) {
        let kb = 8u * k0 + sl;
        let hb = Block(subgroupShuffle(h[k0][0], sl), subgroupShuffle(h[k0][1], sl));
        if (kb < HB) {
          for (var i = 0u; i < 8u; i++) {
            let w = load8_WQKV(min(r0 + i, QKV - 1u), kb, p.h_cols8);
            sums[i] += w[0] * hb[0] + w[1] * hb[1];
          }
        }
      }
    }
    let rows = block_of(sums, r0, QKV);
    for (var i = 0u; i < 8u; i++) {
      if (r0 + i < QKV) {
        qkv_rows[r0 + i] = rows[i / 4u][i % 4u];
      }
    }
  }
  workgroupBarrier();

  // RoPE: q heads (scaled by 1 / sqrt(d)) in place; k heads, and v, into the cache at pos.
  let kv_stride = NKV * HD;
  for (var idx = lane; idx < (NQ + NKV) * HALF; idx += 8u) {
    let head = idx / HALF;
    let i = idx % HALF;
    let b = head * HD;
    let r = rope_pair(qkv_rows[b + i], qkv_rows[b + i + HALF], pos, i);
    if (head < NQ) {
      qkv_rows[b + i] = r.x * p.scale;
      qkv_rows[b + i + HALF] = r.y * p.scale;
    } else {
      let at = pos * kv_stride + (head - NQ) * HD;
      K[at + i] = r.x;
      K[at + i + HALF] = r.y;
    }
  }
  for (var idx = lane; idx < kv_stride; idx += 8u) {
    V[pos * kv_stride + idx] = qkv_rows[(NQ + NKV) * HD + idx];
  }
  storageBarrier();
  workgroupBarrier();
  // A lane per q head, over every position (no barrier in the loop).
  for (var head = lane; head < NQ; head += 8u) {
    var qr: array<f32, HD>;
    var acc: array<f32, HD>;
    for (var i = 0u; i < HD; i++) {
      qr[i] = qkv_rows[head * HD + i];
      acc[i] = 0.0;
    }
    let kv0 = (head / QG) * HD;
    var m = -3.0e38;
    var l = 0.0;
    for (var j = 0u; j <= pos; j++) {
      let k0 = j * kv_stride + kv0;
      var score = 0.0;
      for (var i = 0u; i < HD; i++) {
        score += qr[i] * K[k0 + i];
      }
      let cw = softmax_step(&m, &l, score);
      for (var i = 0u; i < HD; i++) {
        acc[i] = acc[i] * cw.x + cw.y * V[k0 + i];
      }
    }
    for (var i = 0u; i < HD; i++) {
      O[head * HD + i] = acc[i] / l;
    }
  }
  storageBarrier();

  var o: array<Block, OM>;
  for (var m = 0u; m < OM; m++) {
    let b = lane + 8u * m;
    o[m] = zero_block();
    if (b < OB) {
      o[m] = Block(vec4<f32>(O[8u * b], O[8u * b + 1u], O[8u * b + 2u], O[8u * b + 3u]), vec4<f32>(O[8u * b + 4u], O[8u * b + 5u], O[8u * b + 6u], O[8u * b + 7u]));
    }
  }
  o_mlp_tail(lane, o, x);
}
