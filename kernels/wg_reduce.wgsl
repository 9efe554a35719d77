// Workgroup sums for the gpu-flavour kernels: every invocation passes its partial, all get the total.
// Call from uniform control flow (the barriers need every invocation of the workgroup).
const WG: u32 = 64u;
var<workgroup> wg_partial: array<vec4<f32>, WG>;

fn wg_sum4(lid: u32, v: vec4<f32>) -> vec4<f32> {
  wg_partial[lid] = v;
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half >>= 1u) {
    if (lid < half) {
      wg_partial[lid] += wg_partial[lid + half];
    }
    workgroupBarrier();
  }
  let total = wg_partial[0];
  workgroupBarrier();
  return total;
}

fn wg_sum(lid: u32, v: f32) -> f32 {
  return wg_sum4(lid, vec4<f32>(v, 0.0, 0.0, 0.0)).x;
}
