// f16 weights read as packed u32 pairs, so the kernel runs on adapters without shader-f16.
@group(0) @binding(0) var<storage, read> W: array<vec2<u32>>;

fn load_w4(i: u32) -> vec4<f32> {
  let p = W[i];
  return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y));
}
