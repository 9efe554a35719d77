// CATS decode, step 3: Y += W_down[:, active] . act, reading W_down transposed ([inter][hidden])
// so each active neuron's weights are one contiguous row. Each invocation owns 4 output elements,
// so no float atomics are needed.
struct DownParams {
  h4: u32,     // padded hidden / 4: W_down^T row stride and output vec4 count
  layer: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(1) var<uniform> p: DownParams;
@group(0) @binding(3) var<storage, read> idx: array<u32>;
@group(0) @binding(4) var<storage, read> act: array<f32>;
@group(0) @binding(5) var<storage, read> count: array<u32>;
@group(0) @binding(6) var<storage, read_write> Y: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let o4 = gid.x;
  if (o4 >= p.h4) {
    return;
  }
  let n = count[p.layer];
  var acc = vec4<f32>(0.0);
  for (var j = 0u; j < n; j++) {
    acc += act[j] * load_w4(idx[j] * p.h4 + o4);
  }
  Y[o4] += acc;
}
