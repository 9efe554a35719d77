// Y[t][row] (+)= s_t * sum_k W[row][k] * X[t][k] for the tokens of the pass. With norm,
// s_t = 1 / sqrt(mean(X[t]^2) + eps): the RMSNorm that feeds this projection is fused in (its gain
// folded into W at load, or applied as X is read: GAIN); without, s_t = 1. With residual the result
// is added into Y (x += o W_o, the residual stream). Consts: R rows per group of lanes, TM tokens per tile (grid z),
// the lanes variant, XU (one token, input as a uniform array) and GAIN (see input.wgsl).
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
//#include group_rows M=W

struct MatmulParams {
  rows: u32,        // rows of W (of this part, when a matrix is split across bindings)
  row_offset: u32,  // where this part's rows go in Y
  cols: u32,        // true column count: the norm's mean divides by it
  cols4: u32,       // padded columns / 4: W's row stride in vec4s
  x_stride4: u32,
  y_stride: u32,
  norm: u32,        // 1: RMSNorm fused in
  residual: u32,    // 1: add into Y
  token0: u32,      // XU: the first token of this dispatch's tile (X is bound at its row)
  eps: f32,
}
@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(WG)
fn main(inv: Invocation) {
  let g = group_of(inv);
  let t0 = tile_start(inv, p.token0);
  var acc = all_rows_W(g, t0, p.rows, p.x_stride4, p.cols4);
  if (g.lane != 0u) {
    return;
  }
  for (var r = 0u; r < R; r++) {
    let row = g.id * R + r;
    for (var t = 0u; t < TM; t++) {
      if (row >= p.rows || t0 + t >= state.ntok) {
        continue;
      }
      var v = hsum(acc[r][t]);
      if (p.norm == 1u) {
        v *= rms_scale(&acc, t, p.cols, p.eps);
      }
      let at = (t0 + t) * p.y_stride + p.row_offset + row;
      if (p.residual == 1u) {
        v += Y[at];
      }
      Y[at] = v;
    }
  }
}
