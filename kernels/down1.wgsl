// One token's down projection, added into the residual stream: x += act W_down, reading W_down
// transposed ([inter][hidden], a neuron's weights contiguous). Each lane owns V blocks of 8
// outputs (lanes take neighbouring blocks, so together they read a contiguous stretch of a row)
// and walks the neurons in order, four at a time from the activations as a uniform array; a neuron
// whose activation is zero (every CATS-masked one) is skipped, so its row is never read. Natural
// row order and a fixed summation order: no index list, no atomics. Consts: WG lanes, V blocks per
// lane, XN (vec4s of the uniform activation array).
//#include common
//#weights8 W

struct DownParams {
  rows: u32,        // neurons in this part (rows of W)
  row_offset: u32,  // first neuron of this part
  inter: u32,       // act row stride (unused: one token)
  cols4: u32,       // padded hidden / 4: W's row stride in vec4s
  y_stride: u32,
}
@group(0) @binding(0) var<uniform> p: DownParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<uniform> act: array<vec4<f32>, XN>;
@group(0) @binding(3) var<storage, read_write> Y: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let cols8 = p.cols4 / 2u;
  let first = (wid.x + wid.y * nwg.x) * WG * V + lid;
  var blocks: array<u32, V>;
  for (var v = 0u; v < V; v++) {
    blocks[v] = min(first + v * WG, cols8 - 1u);
  }
  let end = p.row_offset + p.rows;
  var acc: array<mat2x4<f32>, V>;
  for (var q = p.row_offset / 4u; q * 4u < end; q++) {
    let a4 = act[q];
    if (all(a4 == vec4<f32>(0.0))) {
      continue;
    }
    for (var j = 0u; j < 4u; j++) {
      let n = q * 4u + j;
      let a = a4[j];
      if (a == 0.0 || n < p.row_offset || n >= end) {
        continue;
      }
      for (var v = 0u; v < V; v++) {
        acc[v] += load8_W(n - p.row_offset, blocks[v], cols8) * a;
      }
    }
  }
  if (state.ntok == 0u) {
    return;
  }
  for (var v = 0u; v < V; v++) {
    let b = first + v * WG;
    if (b < cols8) {
      Y[2u * b] += acc[v][0];
      Y[2u * b + 1u] += acc[v][1];
    }
  }
}
