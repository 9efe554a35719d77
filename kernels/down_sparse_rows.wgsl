// CATS decode, step 3 for CPU drivers. They run a SIMD group of lanes through a whole loop before
// the next group, so down_sparse (lanes = output elements, looping over neurons) jumps a full row
// of W_down^T per iteration and reads scattered cache lines. Here a workgroup of 8 lanes takes a
// slice of the active list and streams each neuron's contiguous row into private accumulators;
// sparse_reduce then adds the slices' partial sums into the residual.
struct DownParams {
  h4: u32,      // padded hidden / 4: W_down^T row stride and output vec4 count
  layer: u32,
  slices: u32,
  pad: u32,
}
@group(0) @binding(1) var<uniform> p: DownParams;
@group(0) @binding(3) var<storage, read> idx: array<u32>;
@group(0) @binding(4) var<storage, read> act: array<f32>;
@group(0) @binding(5) var<storage, read> count: array<u32>;
@group(0) @binding(6) var<storage, read_write> partial: array<vec4<f32>>;

const LANES: u32 = 8u;
// Outputs per lane: hidden sizes up to 8 * 4 * 256 = 8192.
const MAX_PER_LANE: u32 = 256u;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let s = wid.x;
  let n = count[p.layer];
  let per = (n + p.slices - 1u) / p.slices;
  let j0 = min(s * per, n);
  let j1 = min(j0 + per, n);
  let m = (p.h4 + LANES - 1u - lane) / LANES;
  var acc: array<vec4<f32>, MAX_PER_LANE>;
  for (var j = j0; j < j1; j++) {
    let a = act[j];
    let base = idx[j] * p.h4 + lane;
    for (var i = 0u; i < m; i++) {
      acc[i] += a * load_w4(base + LANES * i);
    }
  }
  for (var i = 0u; i < m; i++) {
    partial[s * p.h4 + lane + LANES * i] = acc[i];
  }
}
