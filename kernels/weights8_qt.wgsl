// Template: a transposed quantized matrix $W (qtlayout.wgsl) read in blocks of 8 columns,
// dequantized in registers (exact in f32); down1.wgsl (QUANT) instead sums codes times activations
// over a group and scales once.
@group(0) @binding($BINDING) var<storage, read> $W: array<u32>;

// The block of codes at `at` (qtat_$W) as floats (8 columns).
fn qtcodes_at_$W(at: u32) -> mat2x4<f32> {
  if (QB_$W == 4u) {
    let w = vec4<u32>($W[at]);
    return mat2x4<f32>(vec4<f32>((w >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)), vec4<f32>((w >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u)));
  }
  return mat2x4<f32>(
    vec4<f32>((vec4<u32>($W[at]) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u)),
    vec4<f32>((vec4<u32>($W[at + 1u]) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u)),
  );
}

// A block's codes in place: code q at bit 4p (8p at 8 bits) of its u32 read as the integer q << 4p (an
// AND, no shift, except for the top code, kept below the sign bit), so q times 2^4p exactly; sums
// of such products are exactly 2^4p times the sums of q times the activation, which
// qtunplace_$W's factors undo. One operation a code fewer, where the unpacking bounds the
// quantized down projection on CPU drivers.
fn qtplace_at_$W(at: u32) -> mat2x4<f32> {
  if (QB_$W == 4u) {
    let w = vec4<u32>($W[at]);
    let lo = w & vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u);
    let hi = (w & vec4<u32>(0xf0000u, 0xf00000u, 0xf000000u, 0xf0000000u)) >> vec4<u32>(0u, 0u, 0u, 4u);
    return mat2x4<f32>(vec4<f32>(bitcast<vec4<i32>>(lo)), vec4<f32>(bitcast<vec4<i32>>(hi)));
  }
  let masks = vec4<u32>(0xffu, 0xff00u, 0xff0000u, 0xff000000u);
  let top = vec4<u32>(0u, 0u, 0u, 8u);
  return mat2x4<f32>(
    vec4<f32>(bitcast<vec4<i32>>((vec4<u32>($W[at]) & masks) >> top)),
    vec4<f32>(bitcast<vec4<i32>>((vec4<u32>($W[at + 1u]) & masks) >> top)),
  );
}

// The factors that turn sums of in-place codes (qtplace_at_$W) back into sums of codes, per column of a block.
fn qtunplace_$W() -> mat2x4<f32> {
  if (QB_$W == 4u) {
    return mat2x4<f32>(vec4<f32>(1.0, 0x1p-4f, 0x1p-8f, 0x1p-12f), vec4<f32>(0x1p-16f, 0x1p-20f, 0x1p-24f, 0x1p-24f));
  }
  let f = vec4<f32>(1.0, 0x1p-8f, 0x1p-16f, 0x1p-16f);
  return mat2x4<f32>(f, f);
}

// Scales (columns 0, 1) and offsets (columns 2, 3) of group gi for block k.
fn qtscale_$W(gi: u32, k: u32, cols8: u32) -> mat4x4<f32> {
  let sa = qtbase_$W(gi, cols8) + 8u * k;
  let oa = sa + 8u * cols8;
  return mat4x4<f32>(
    bitcast<vec4<f32>>(vec4<u32>($W[sa], $W[sa + 1u], $W[sa + 2u], $W[sa + 3u])),
    bitcast<vec4<f32>>(vec4<u32>($W[sa + 4u], $W[sa + 5u], $W[sa + 6u], $W[sa + 7u])),
    bitcast<vec4<f32>>(vec4<u32>($W[oa], $W[oa + 1u], $W[oa + 2u], $W[oa + 3u])),
    bitcast<vec4<f32>>(vec4<u32>($W[oa + 4u], $W[oa + 5u], $W[oa + 6u], $W[oa + 7u])),
  );
}

fn load8_$W(row: u32, k: u32, cols8: u32) -> mat2x4<f32> {
  let q = qtcodes_at_$W(qtat_$W(row, k, cols8));
  let so = qtscale_$W(row / QG_$W, k, cols8);
  return mat2x4<f32>(q[0] * so[0] + so[2], q[1] * so[1] + so[3]);
}
