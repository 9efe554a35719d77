// A second weight matrix for kernels that read two (gate and up), f32.
@group(0) @binding(7) var<storage, read> W2: array<vec4<f32>>;

fn load_w4_b(i: u32) -> vec4<f32> {
  return W2[i];
}
