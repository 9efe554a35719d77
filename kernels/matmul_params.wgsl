// Y[t][row] (+)= dot(W[row_offset + row], X[t]) for the tokens of the pass.
struct MatmulParams {
  rows: u32,
  cols4: u32,       // padded columns / 4: the weight row stride in vec4s
  x_stride4: u32,   // X row stride in vec4s
  y_stride: u32,    // Y row stride in floats
  fixed_ntok: u32,  // > 0: this many tokens regardless of the pass (lm_head on the last token)
  accumulate: u32,  // 1: add into Y (residual connections)
  row_offset: u32,
  pad: u32,
}
@group(0) @binding(1) var<uniform> p: MatmulParams;
@group(0) @binding(2) var<storage, read> state: State;
@group(0) @binding(3) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

// Tokens are processed 4 at a time so a weight row is loaded once for 4 tokens during prefill.
// X is allocated in whole tiles, so reading past ntok stays in bounds; those sums are dropped.
const TILE: u32 = 4u;

fn token_count() -> u32 {
  return select(state.ntok, p.fixed_ntok, p.fixed_ntok > 0u);
}

fn store_tile(row: u32, t0: u32, acc: vec4<f32>) {
  let n = min(TILE, token_count() - t0);
  for (var j = 0u; j < n; j++) {
    let idx = (t0 + j) * p.y_stride + row;
    let prev = select(0.0, Y[idx], p.accumulate == 1u);
    Y[idx] = prev + acc[j];
  }
}

fn store_one(row: u32, v: f32) {
  let prev = select(0.0, Y[row], p.accumulate == 1u);
  Y[row] = prev + v;
}
