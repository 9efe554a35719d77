// Y[t][row] (+)= s_t * sum_k W[row][k] * X[t][k] * G[k] for the tokens of the pass, or only for its
// last token (into Y row 0: lm_head when generating). With norm, s_t = 1 / sqrt(mean(X[t]^2) + eps)
// and G is the RMSNorm gain: the norm that feeds this projection is fused in; without, s_t = 1 and
// G is all ones. With residual the result is added into Y (x += o W_o, the residual stream).
// Consts: R rows per group of lanes, TM tokens per tile (grid z), and the lanes variant.
//#include common
//#include lanes
//#weights W
//#include project M=W
//#include norm

struct MatmulParams {
  rows: u32,        // rows of W (of this part, when a matrix is split across bindings)
  row_offset: u32,  // where this part's rows go in Y
  cols: u32,        // true column count: the norm's mean divides by it
  cols4: u32,       // padded columns / 4: W's row stride in vec4s
  x_stride4: u32,
  y_stride: u32,
  last_token: u32,  // 1: only the pass's last token, written to Y row 0
  norm: u32,        // 1: RMSNorm fused in
  residual: u32,    // 1: add into Y
  eps: f32,
}
@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> G: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

var<private> x_base: array<u32, TM>;

fn input(t: u32, k: u32) -> vec4<f32> {
  return X[x_base[t] + k] * G[k];
}

@compute @workgroup_size(WG)
fn main(inv: Invocation) {
  let g = group_of(inv);
  let last = p.last_token == 1u;
  let t0 = select(inv.wid.z * TM, state.ntok - 1u, last);
  let tokens = select(state.ntok, t0 + 1u, last);
  var rows: array<u32, R>;
  var on: array<bool, R>;
  for (var r = 0u; r < R; r++) {
    rows[r] = group_row(g, r, p.rows);
    on[r] = true;
  }
  for (var t = 0u; t < TM; t++) {
    x_base[t] = min(t0 + t, state.ntok - 1u) * p.x_stride4;
  }
  var acc: Sums;
  project_W(g, rows, on, p.cols4, &acc);
  if (p.norm == 1u) {
    norm_sums(g, p.cols4, &acc);
  }
  group_sums(g, &acc);
  if (g.lane != 0u) {
    return;
  }
  for (var r = 0u; r < R; r++) {
    let row = g.id * R + r;
    for (var t = 0u; t < TM; t++) {
      if (row >= p.rows || t0 + t >= tokens) {
        continue;
      }
      var v = hsum(acc[r][t]);
      if (p.norm == 1u) {
        v *= norm_scale(&acc, t, p.cols, p.eps);
      }
      let at = select(t0 + t, 0u, last) * p.y_stride + p.row_offset + row;
      if (p.residual == 1u) {
        v += Y[at];
      }
      Y[at] = v;
    }
  }
}
