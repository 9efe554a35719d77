// One decode token from the attention output to the next layer's input, in one workgroup of one
// subgroup of 8 lanes (o_mlp_tail.wgsl):
//   x += o W_o;  h = rmsnorm(x);  act = silu(h W_gate) * (h W_up), CATS-masked;  x += act W_down
// For models so small that three dispatches (o_proj, gate_up, down) cost more on a CPU driver than
// their work does. Vectors stay in registers; only a CATS-masked step lists its kept neurons in
// workgroup memory.
//#include common
//#include o_mlp_tail

struct OMlpParams {
  o_cols8: u32,     // W_o's row stride in blocks of 8
  h_cols8: u32,     // W_gate's, W_up's and W_down^T's row stride in blocks of 8
  hidden: u32,
  inter: u32,
  layer: u32,
  threshold: f32,   // < 0: dense, nothing masked or counted
  eps: f32,
}
@group(0) @binding(0) var<uniform> p: OMlpParams;
@group(0) @binding(2) var<storage, read> O: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> X: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> totals: array<atomic<u32>>;

@compute @workgroup_size(8)
fn main(@builtin(subgroup_invocation_id) lane: u32) {
  // The attention output and the residual stream, this lane's blocks.
  var o: array<Block, OM>;
  for (var m = 0u; m < OM; m++) {
    let b = lane + 8u * m;
    o[m] = zero_block();
    if (b < OB) {
      o[m] = Block(O[2u * b], O[2u * b + 1u]);
    }
  }
  let x = load_x(lane);
  o_mlp_tail(lane, o, x);
}
