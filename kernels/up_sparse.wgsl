// CATS decode, step 2: up projection over the active rows only; each product is scaled by the
// neuron's activation. W is W_up. Invocations past the active count return at once.
struct UpParams {
  inter: u32,
  cols4: u32,
  layer: u32,
  pad: u32,
}
@group(0) @binding(1) var<uniform> p: UpParams;
@group(0) @binding(3) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> idx: array<u32>;
@group(0) @binding(5) var<storage, read> val: array<f32>;
@group(0) @binding(6) var<storage, read> count: array<u32>;
@group(0) @binding(7) var<storage, read_write> act: array<f32>;

@compute @workgroup_size(64)
fn main_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= count[p.layer]) {
    return;
  }
  let base = idx[j] * p.cols4;
  var u = 0.0;
  for (var k = 0u; k < p.cols4; k++) {
    u += dot(load_w4(base + k), X[k]);
  }
  act[j] = val[j] * u;
}

@compute @workgroup_size(WG)
fn main_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let j = wid.x + wid.z * nwg.x;
  if (j >= count[p.layer]) {
    return;
  }
  let base = idx[j] * p.cols4;
  var u = 0.0;
  for (var k = lid; k < p.cols4; k += WG) {
    u += dot(load_w4(base + k), X[k]);
  }
  let total = wg_sum(lid, u);
  if (lid == 0u) {
    act[j] = val[j] * total;
  }
}
