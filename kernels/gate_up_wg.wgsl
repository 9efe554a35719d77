const WG: u32 = 64u;
var<workgroup> partial_g: array<vec4<f32>, WG>;
var<workgroup> partial_u: array<vec4<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.z * nwg.x;
  let t0 = wid.y * TILE;
  if (row >= p.inter || t0 >= state.ntok) {
    return;
  }
  let base = row * p.cols4;
  let x0 = t0 * p.x_stride4;
  var g = vec4<f32>(0.0);
  var u = vec4<f32>(0.0);
  for (var k = lid; k < p.cols4; k += WG) {
    g += dot_tile(load_w4(base + k), x0, k);
    u += dot_tile(load_w4_b(base + k), x0, k);
  }
  partial_g[lid] = g;
  partial_u[lid] = u;
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half >>= 1u) {
    if (lid < half) {
      partial_g[lid] += partial_g[lid + half];
      partial_u[lid] += partial_u[lid + half];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    store_act(row, t0, partial_g[0], partial_u[0]);
  }
}

var<workgroup> partial_g1: array<f32, WG>;
var<workgroup> partial_u1: array<f32, WG>;

// Decode: one token, so no tile.
@compute @workgroup_size(WG)
fn main_one(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.z * nwg.x;
  if (row >= p.inter || state.ntok == 0u) {
    return;
  }
  let base = row * p.cols4;
  var g = 0.0;
  var u = 0.0;
  for (var k = lid; k < p.cols4; k += WG) {
    let x = X[k];
    g += dot(load_w4(base + k), x);
    u += dot(load_w4_b(base + k), x);
  }
  partial_g1[lid] = g;
  partial_u1[lid] = u;
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half >>= 1u) {
    if (lid < half) {
      partial_g1[lid] += partial_g1[lid + half];
      partial_u1[lid] += partial_u1[lid + half];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    store_act_one(row, partial_g1[0], partial_u1[0]);
  }
}
