// Y[t] = W[tokens[t]]: the embedding row of each token of the pass.
struct EmbedParams {
  stride4: u32,
  vocab: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(1) var<uniform> p: EmbedParams;
@group(0) @binding(2) var<storage, read> state: State;
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> Y: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k = gid.x;
  let t = gid.y;
  if (k >= p.stride4 || t >= state.ntok) {
    return;
  }
  let tok = min(tokens[t], p.vocab - 1u);
  Y[t * p.stride4 + k] = load_w4(tok * p.stride4 + k);
}
