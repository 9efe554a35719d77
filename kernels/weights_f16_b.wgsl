// A second weight matrix for kernels that read two (gate and up), f16 as packed u32 pairs.
@group(0) @binding(7) var<storage, read> W2: array<vec2<u32>>;

fn load_w4_b(i: u32) -> vec4<f32> {
  let p = W2[i];
  return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y));
}
