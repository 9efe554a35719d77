// CATS decode, step 1: dense gate projection + SiLU + threshold for the pass's single token.
// Neurons with |silu(g)| >= threshold are appended to a compact list (index, activation) through an
// atomic counter; only they are read by up_sparse and down_sparse. W is W_gate.
struct GateParams {
  inter: u32,
  cols4: u32,
  threshold: f32,
  layer: u32,
}
@group(0) @binding(1) var<uniform> p: GateParams;
@group(0) @binding(3) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> idx: array<u32>;
@group(0) @binding(5) var<storage, read_write> val: array<f32>;
@group(0) @binding(6) var<storage, read_write> count: array<atomic<u32>>;

fn emit(row: u32, g: f32) {
  let a = g / (1.0 + exp(-g));
  if (abs(a) >= p.threshold) {
    let j = atomicAdd(&count[p.layer], 1u);
    idx[j] = row;
    val[j] = a;
  }
}

@compute @workgroup_size(64)
fn main_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  if (row >= p.inter) {
    return;
  }
  let base = row * p.cols4;
  var g = 0.0;
  for (var k = 0u; k < p.cols4; k++) {
    g += dot(load_w4(base + k), X[k]);
  }
  emit(row, g);
}

@compute @workgroup_size(WG)
fn main_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.z * nwg.x;
  if (row >= p.inter) {
    return;
  }
  let base = row * p.cols4;
  var g = 0.0;
  for (var k = lid; k < p.cols4; k += WG) {
    g += dot(load_w4(base + k), X[k]);
  }
  let total = wg_sum(lid, g);
  if (lid == 0u) {
    emit(row, total);
  }
}
