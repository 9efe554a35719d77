// Adds the per-slice partial sums of down_sparse_rows into the residual stream.
struct ReduceParams {
  h4: u32,
  slices: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(1) var<uniform> p: ReduceParams;
@group(0) @binding(3) var<storage, read> partial: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> Y: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let o4 = gid.x;
  if (o4 >= p.h4) {
    return;
  }
  var sum = vec4<f32>(0.0);
  for (var s = 0u; s < p.slices; s++) {
    sum += partial[s * p.h4 + o4];
  }
  Y[o4] += sum;
}
