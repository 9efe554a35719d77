// Row-major weights, rows padded to a multiple of 8 columns so a row is whole vec4s.
@group(0) @binding(0) var<storage, read> W: array<vec4<f32>>;

fn load_w4(i: u32) -> vec4<f32> {
  return W[i];
}
