// Copies the pass's last token's row of X into row 0 of Y: after a prefill, lm_head reads the last
// position alone, with the same one-token kernel as a decode step.
//#include common

struct LastRowParams {
  stride4: u32,
}
@group(0) @binding(0) var<uniform> p: LastRowParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> Y: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k = gid.x;
  if (k < p.stride4) {
    Y[k] = X[(state.ntok - 1u) * p.stride4 + k];
  }
}
