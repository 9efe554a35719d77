// Y[t] = X[src] * rsqrt(mean(X[src]^2) + eps) * G, one invocation per token (the rows are short).
struct NormParams {
  n: u32,
  stride4: u32,
  eps: f32,
  last_only: u32,  // 1: normalise only the pass's last token into row 0 (before lm_head when generating)
}
@group(0) @binding(0) var<storage, read> G: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> p: NormParams;
@group(0) @binding(2) var<storage, read> state: State;
@group(0) @binding(3) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> Y: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x;
  let count = select(state.ntok, 1u, p.last_only == 1u);
  if (t >= count) {
    return;
  }
  let src = select(t, state.ntok - 1u, p.last_only == 1u) * p.stride4;
  var ss = 0.0;
  for (var k = 0u; k < p.stride4; k++) {
    let v = X[src + k];
    ss += dot(v, v);
  }
  let r = inverseSqrt(ss / f32(p.n) + p.eps);
  let dst = t * p.stride4;
  for (var k = 0u; k < p.stride4; k++) {
    Y[dst + k] = X[src + k] * r * G[k];
  }
}
