// The first half of the SwiGLU MLP with its RMSNorm fused: for neuron n and token t,
//   a = silu(s_t * (W_gate[n] . X[t])),  act[t][n] = a * s_t * (W_up[n] . X[t]),
// s_t = 1 / sqrt(mean(X[t]^2) + eps), the norm's gain folded into W_gate and W_up at load.
// CATS: with threshold >= 0, a neuron whose |a| is below it is zeroed and its W_up row is not read
// (unless another token of the tile needs it), and the active (neuron, token) pairs are added to
// the layer's running total. With capture, |a| of every neuron and token is written out for
// calibration. Consts: R rows per group, TM tokens per tile, the lanes variant, XU (one token,
// input as a uniform array), GAIN (see input.wgsl).
//#include common
//#include lanes
//#include input
//#include norm
//#if W8
//#weights8 W U
//#include project1 M=W
//#include project1 M=U
//#else
//#weights W U
//#include project M=W
//#include project M=U
//#endif
//#include group_rows M=W

struct GateUpParams {
  rows: u32,            // neurons in this part (a matrix split across bindings has several)
  row_offset: u32,      // first neuron of this part
  inter: u32,           // all neurons: the row stride of act and capture
  cols: u32,
  cols4: u32,
  x_stride4: u32,
  layer: u32,
  capture: u32,         // 1: write |a| to capture
  capture_offset: u32,
  threshold: f32,       // < 0: dense, nothing masked or counted
  token0: u32,          // XU: the first token of this dispatch's tile (X is bound at its row)
  eps: f32,
}
@group(0) @binding(0) var<uniform> p: GateUpParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(4) var<storage, read_write> act: array<f32>;
@group(0) @binding(5) var<storage, read_write> capture: array<f32>;
@group(0) @binding(6) var<storage, read_write> totals: array<atomic<u32>>;

//#if ROWS
var<workgroup> wg_a: array<array<f32, TM>, WG * R>;
var<workgroup> wg_count: array<u32, WG>;
var<workgroup> wg_list: array<u32, WG * R>;
//#endif

fn silu(g: f32) -> f32 {
  return g / (1.0 + exp(-g));
}

@compute @workgroup_size(WG)
fn main(inv: Invocation) {
  let g = group_of(inv);
  let t0 = tile_start(inv, p.token0);
  let masked = p.threshold >= 0.0;
  var acc = all_rows_W(g, t0, p.rows, p.x_stride4, p.cols4);
  var scale: array<f32, TM>;
  var a: array<array<f32, TM>, R>;
  var need: array<bool, R>;
  var n_active = 0u;
  for (var t = 0u; t < TM; t++) {
    scale[t] = rms_scale(&acc, t, p.cols, p.eps);
  }
  for (var r = 0u; r < R; r++) {
    need[r] = false;
    for (var t = 0u; t < TM; t++) {
      a[r][t] = silu(scale[t] * hsum(acc[r][t]));
      let valid = g.id * R + r < p.rows && t0 + t < state.ntok;
      if (valid && (!masked || abs(a[r][t]) >= p.threshold)) {
        need[r] = true;
        n_active += 1u;
      }
    }
  }
//#if ROWS
  // A lane of a CPU driver's SIMD vector computes its own rows, so a row skipped by one lane but
  // needed by its neighbours saves nothing: at 50% sparsity some lane of eight nearly always needs
  // its row. So the workgroup first lists its needed rows in order (a prefix sum over the lanes'
  // counts, deterministic) and then shares them out, lane l taking entries l, l + WG, ...: every
  // lane reads needed rows only, and the time falls with the active fraction.
  let lid = inv.lid;
  var count = 0u;
  for (var r = 0u; r < R; r++) {
    wg_a[lid * R + r] = a[r];
    count += select(0u, 1u, need[r]);
  }
  wg_count[lid] = count;
  workgroupBarrier();
  var offset = 0u;
  var total = 0u;
  for (var i = 0u; i < WG; i++) {
    let c = wg_count[i];
    offset += select(0u, c, i < lid);
    total += c;
  }
  for (var r = 0u; r < R; r++) {
    if (need[r]) {
      wg_list[offset] = lid * R + r;
      offset += 1u;
    }
  }
  workgroupBarrier();
  // The list is dealt out in order, R x 8 entries to a subgroup of 8 lanes (entry r x 8 + l of its
  // share to lane l), so that only the first subgroups have any and the rest skip the pass over
  // the input, whose reads and shuffles cost the same however few of a subgroup's rows are needed.
  let first_row = workgroup_index(inv) * WG * R;
  var local: array<u32, R>;
  var on: array<bool, R>;
  var rows: array<u32, R>;
  for (var r = 0u; r < R; r++) {
    let e = (lid / 8u) * 8u * R + r * 8u + lid % 8u;
    on[r] = e < total;
    local[r] = wg_list[min(e, max(total, 1u) - 1u)];
    rows[r] = min(first_row + local[r], p.rows - 1u);
  }
  var up: Sums;
  if ((lid / 8u) * 8u * R < total) {
//#if W8
    project1_U(g, rows, on, p.cols4 / 2u, &up);
//#else
    project_U(g, rows, on, p.cols4, &up);
//#endif
  }
  for (var r = 0u; r < R; r++) {
    let n = first_row + local[r];
    for (var t = 0u; t < TM; t++) {
      if (!on[r] || t0 + t >= state.ntok) {
        continue;
      }
      let an = wg_a[local[r]][t];
      let keep = !masked || abs(an) >= p.threshold;
      act[(t0 + t) * p.inter + p.row_offset + n] = select(0.0, an * scale[t] * hsum(up[r][t]), keep);
    }
  }
  // The rows nobody needed are zero; capture and counts stay with the lane that computed the gate.
  for (var r = 0u; r < R; r++) {
    let n = g.id * R + r;
    for (var t = 0u; t < TM; t++) {
      if (n >= p.rows || t0 + t >= state.ntok) {
        continue;
      }
      let at = (t0 + t) * p.inter + p.row_offset + n;
      if (p.capture == 1u) {
        capture[p.capture_offset + at] = abs(a[r][t]);
      }
      if (!need[r]) {
        act[at] = 0.0;
      }
    }
  }
  if (masked && n_active > 0u) {
    atomicAdd(&totals[p.layer], n_active);
  }
//#else
  // The up projection only for rows some token of the tile keeps; `need` is the same on every lane.
  var rows: array<u32, R>;
  for (var r = 0u; r < R; r++) {
    rows[r] = group_row(g, r, p.rows);
  }
  var up: Sums;
//#if W8
  project1_U(g, rows, need, p.cols4 / 2u, &up);
//#else
  project_U(g, rows, need, p.cols4, &up);
//#endif
  group_sums(g, &up);
  if (g.lane != 0u) {
    return;
  }
  if (masked && n_active > 0u) {
    atomicAdd(&totals[p.layer], n_active);
  }
  for (var r = 0u; r < R; r++) {
    let n = g.id * R + r;
    for (var t = 0u; t < TM; t++) {
      if (n >= p.rows || t0 + t >= state.ntok) {
        continue;
      }
      let at = (t0 + t) * p.inter + p.row_offset + n;
      if (p.capture == 1u) {
        capture[p.capture_offset + at] = abs(a[r][t]);
      }
      let keep = !masked || abs(a[r][t]) >= p.threshold;
      act[at] = select(0.0, a[r][t] * scale[t] * hsum(up[r][t]), keep);
    }
  }
//#endif
}
