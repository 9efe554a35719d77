// One decode token, one workgroup per kv head, the whole attention block but o_proj in one dispatch:
// the rows of W_qkv this kv head needs (its QG q heads, its k and its v) times rmsnorm(x), computed
// by the workgroup's row groups (lanes.wgsl) into workgroup memory; then RoPE, the KV-cache write
// and attention over positions 0..pos (attend.wgsl). On CPU drivers, where every dispatch costs
// more than a small model's work, this saves one dispatch per layer against matmul + attention_decode.
// Consts: the lanes variant with R rows per group and TM = 1, XU, GAIN (input.wgsl), QUANT,
// WG lanes, HD head_dim, QG q heads per kv head, SERIAL (attention one lane per q head).
//#include common
//#include lanes
//#include input
//#include norm
//#if W8
//#weights8 W
//#include project1 M=W
//#else
//#weights W
//#include project M=W
//#endif

struct QkvAttentionParams {
  n_heads: u32,
  n_kv: u32,
  cols: u32,       // hidden: the norm's mean divides by it
  cols4: u32,      // padded columns / 4: W's row stride in vec4s
  x_stride4: u32,
  scale: f32,
  eps: f32,
}
@group(0) @binding(0) var<uniform> p: QkvAttentionParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(4) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> K: array<f32>;
@group(0) @binding(6) var<storage, read_write> V: array<f32>;
@group(0) @binding(7) var<storage, read_write> O: array<f32>;

const HALF: u32 = HD / 2u;
// Lanes that split the positions: a GPU variant's 64 would each keep head_dim partial sums.
const AW: u32 = min(WG, 8u);
//#include attend

// This kv head's rows: its q heads', then its k's, then its v's.
const HEAD_ROWS: u32 = (QG + 2u) * HD;
var<workgroup> head_rows: array<f32, HEAD_ROWS>;

fn qkv_row(kvh: u32, i: u32) -> u32 {
  if (i < QG * HD) {
    return kvh * QG * HD + i;
  }
  if (i < (QG + 1u) * HD) {
    return (p.n_heads + kvh) * HD + i - QG * HD;
  }
  return (p.n_heads + p.n_kv + kvh) * HD + i - (QG + 1u) * HD;
}

@compute @workgroup_size(WG)
fn main(inv: Invocation) {
  let kvh = inv.wid.x;
  let g = local_group(inv);
  let groups = local_groups(inv);
  let blocks = (HEAD_ROWS + R - 1u) / R;
  set_x_base(0u, p.x_stride4);
  // A uniform loop (every group runs every round, past the last block on a clamped row) keeps the
  // barriers and subgroup operations of group_sums in uniform control flow.
  for (var b0 = 0u; b0 < blocks; b0 += groups) {
    let b = b0 + g.id;
    var rows: array<u32, R>;
    var on: array<bool, R>;
    // Zeroed explicitly: lavapipe has been seen to keep a loop-local array's values across iterations.
    var acc: Sums;
    for (var r = 0u; r <= R; r++) {
      acc[r][0] = vec4<f32>(0.0);
    }
    for (var r = 0u; r < R; r++) {
      rows[r] = qkv_row(kvh, min(b * R + r, HEAD_ROWS - 1u));
      on[r] = true;
    }
//#if W8
    project1_W(g, rows, on, p.cols4 / 2u, &acc);
//#else
    project_W(g, rows, on, p.cols4, &acc);
//#endif
    group_sums(g, &acc);
    if (g.lane == 0u) {
      let s = rms_scale(&acc, 0u, p.cols, p.eps);
      for (var r = 0u; r < R; r++) {
        if (b * R + r < HEAD_ROWS) {
          head_rows[b * R + r] = hsum(acc[r][0]) * s;
        }
      }
    }
  }
  workgroupBarrier();
  let lane = inv.lid;
  let pos = state.pos;
  let kv_stride = p.n_kv * HD;
//#if SERIAL
  for (var j = lane; j < QG; j += WG) {
    serial_head(kvh, j, pos, kv_stride);
  }
}
//#elif SLICED
  // All the kv head's q heads at once, HR per round: lane l takes head l % HR of the round and every
  // SL-th cached position from l / HR, the current position (from workgroup memory) in the first
  // slice; then the lanes combine the slices output by output. Two barriers a round, and every lane
  // busy where a lane per head would leave most of them idle.
  if (lane < HALF) {
    let r = rope_pair(head_rows[QG * HD + lane], head_rows[QG * HD + lane + HALF], pos, lane);
    K[pos * kv_stride + kvh * HD + lane] = r.x;
    K[pos * kv_stride + kvh * HD + lane + HALF] = r.y;
  }
  for (var i = lane; i < HD; i += WG) {
    V[pos * kv_stride + kvh * HD + i] = head_rows[(QG + 1u) * HD + i];
  }
  for (var i = lane + WG; i < HALF; i += WG) {
    let r = rope_pair(head_rows[QG * HD + i], head_rows[QG * HD + i + HALF], pos, i);
    K[pos * kv_stride + kvh * HD + i] = r.x;
    K[pos * kv_stride + kvh * HD + i + HALF] = r.y;
  }
  for (var j0 = 0u; j0 < QG; j0 += HR) {
    if (lane < HR * SL && j0 + lane % HR < QG) {
      slice_partial(kvh, j0 + lane % HR, lane / HR, lane, pos, kv_stride);
    }
    workgroupBarrier();
    for (var idx = lane; idx < HR * HD; idx += WG) {
      let jr = idx / HD;
      let i = idx % HD;
      if (j0 + jr < QG) {
        var big_m = -3.0e38;
        for (var sl = 0u; sl < SL; sl++) {
          big_m = max(big_m, part_m[sl * HR + jr]);
        }
        var total_l = 0.0;
        var o = 0.0;
        for (var sl = 0u; sl < SL; sl++) {
          let w = exp(part_m[sl * HR + jr] - big_m);
          total_l += part_l[sl * HR + jr] * w;
          o += part_acc[(sl * HR + jr) * HD + i] * w;
        }
        O[(kvh * QG + j0 + jr) * HD + i] = o / total_l;
      }
    }
    workgroupBarrier();
  }
}

// SLICED: q heads per round and position slices per head, within the AW lanes of attend.wgsl's arrays.
const HR: u32 = min(QG, AW);
const SL: u32 = AW / HR;

// One lane's share of head j: positions slice, slice + SL, ... below pos, and pos itself in slice 0.
fn slice_partial(kvh: u32, j: u32, slice: u32, lane: u32, pos: u32, kv_stride: u32) {
  let r = head_partial(kvh, j, slice, SL, pos, kv_stride);
  part_m[lane] = r.m;
  part_l[lane] = r.l;
  for (var i = 0u; i < HD; i++) {
    part_acc[lane * HD + i] = r.acc[i];
  }
}

//#endif
//#if !ATTEND_PER_HEAD
// The row at `at` of head_rows with RoPE at pos.
fn rope_row(at: u32, pos: u32) -> array<f32, HD> {
  var out: array<f32, HD>;
  for (var i = 0u; i < HALF; i++) {
    let r = rope_pair(head_rows[at + i], head_rows[at + i + HALF], pos, i);
    out[i] = r.x;
    out[i + HALF] = r.y;
  }
  return out;
}

// One q head's online softmax (running max m, sum l, weighted values acc) over the cache positions
// first, first + step, ... below pos, and over pos itself, whose k and v are still in workgroup
// memory, when first is 0.
struct Partial {
  m: f32,
  l: f32,
  acc: array<f32, HD>,
}

fn head_partial(kvh: u32, j: u32, first: u32, step: u32, pos: u32, kv_stride: u32) -> Partial {
  let q = rope_row(j * HD, pos);
  var m = -3.0e38;
  var l = 0.0;
  var acc: array<f32, HD>;
  if (first == 0u) {
    let k_now = rope_row(QG * HD, pos);
    var s_now = 0.0;
    for (var i = 0u; i < HD; i++) {
      s_now += q[i] * k_now[i];
      acc[i] = head_rows[(QG + 1u) * HD + i];
    }
    m = s_now * p.scale;
    l = 1.0;
  }
  for (var t = first; t < pos; t += step) {
    let k0 = t * kv_stride + kvh * HD;
    var s = 0.0;
    for (var i = 0u; i < HD; i++) {
      s += q[i] * K[k0 + i];
    }
    let cw = softmax_step(&m, &l, s * p.scale);
    for (var i = 0u; i < HD; i++) {
      acc[i] = acc[i] * cw.x + cw.y * V[k0 + i];
    }
  }
  return Partial(m, l, acc);
}

// SERIAL: one lane per q head and no barrier after the projection (as attention_serial.wgsl), the
// kv head's first q head writing the cache for later steps.
fn serial_head(kvh: u32, j: u32, pos: u32, kv_stride: u32) {
  if (j == 0u) {
    let k_now = rope_row(QG * HD, pos);
    let dst = pos * kv_stride + kvh * HD;
    for (var i = 0u; i < HD; i++) {
      K[dst + i] = k_now[i];
      V[dst + i] = head_rows[(QG + 1u) * HD + i];
    }
  }
  let r = head_partial(kvh, j, 0u, 1u, pos, kv_stride);
  let o0 = (kvh * QG + j) * HD;
  for (var i = 0u; i < HD; i++) {
    O[o0 + i] = r.acc[i] / r.l;
  }
}
//#else
  let dst = pos * kv_stride + kvh * HD;
  for (var i = lane; i < HALF; i += WG) {
    let r = rope_pair(head_rows[QG * HD + i], head_rows[QG * HD + i + HALF], pos, i);
    K[dst + i] = r.x;
    K[dst + i + HALF] = r.y;
  }
  for (var i = lane; i < HD; i += WG) {
    V[dst + i] = head_rows[(QG + 1u) * HD + i];
  }
  storageBarrier();
  for (var j = 0u; j < QG; j++) {
    for (var i = lane; i < HALF; i += WG) {
      let r = rope_pair(head_rows[j * HD + i], head_rows[j * HD + i + HALF], pos, i);
      q[i] = r.x * p.scale;
      q[i + HALF] = r.y * p.scale;
    }
    attend_head(lane, kvh * HD, kv_stride, pos, (kvh * QG + j) * HD);
  }
}
//#endif
