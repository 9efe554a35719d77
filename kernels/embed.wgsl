// X[t] = E[tokens[t]]: the embedding row of each token of the pass. For a table split across
// bindings, one dispatch per part writes the tokens whose id falls in its rows.
//#include common
//#weights W

struct EmbedParams {
  rows: u32,        // rows of this part
  row_offset: u32,  // first token id of this part
  cols4: u32,       // blocks of 4 per row
  x_stride4: u32,
  vocab: u32,
}
@group(0) @binding(0) var<uniform> p: EmbedParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> X: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k = gid.x;
  let t = gid.y;
  if (k >= p.cols4 || t >= state.ntok) {
    return;
  }
  let id = min(tokens[t], p.vocab - 1u);
  if (id < p.row_offset || id >= p.row_offset + p.rows) {
    return;
  }
  X[t * p.x_stride4 + k] = load_W(id - p.row_offset, k, p.cols4);
}
