// Template: the layout of a weight matrix $W quantized to $BITS-bit codes in groups of $G columns
// (GPTQ's groups along a row's inputs). Each row is its groups' (scale, offset) pairs as f32 bits,
// two to a vec4 (offset = -zero * scale, so a code dequantizes as code * scale + offset, exactly
// in f32: an f16 scale times a 9-bit integer), then its codes in chunks of one vec4<u32> (32 codes
// at 4 bits, 16 at 8; lowest column in the lowest bits), padding codes at the zero point. A chunk
// is one load: on CPU drivers every lane's load is a gather, so codes come 16 bytes at a time.
// In row blocks (format q{bits}bg{G}, RS 32) each 32 rows' i-th vec4s lie side by side, in the
// order of kernels/rowblock.wgsl (row 4l + r at slot 8r + l): a row's vec4s are QRS_$W apart.
@group(0) @binding($BINDING) var<storage, read> $W: array<vec4<u32>>;

const QB_$W: u32 = $BITSu;
const QC_$W: u32 = 128u / $BITSu;
const QG_$W: u32 = $Gu;
const QRS_$W: u32 = $RSu;

fn qchunks_$W(cols8: u32) -> u32 {
  return (cols8 * 8u + QC_$W - 1u) / QC_$W;
}

fn qstride_$W(cols8: u32) -> u32 {
  return ((cols8 * 8u + QG_$W - 1u) / QG_$W + 1u) / 2u + qchunks_$W(cols8);
}

// Where a row starts (its scale pairs), in vec4s; its codes start qcodes0_$W(cols8) vec4s later
// (times QRS_$W).
fn qrow_$W(row: u32, cols8: u32) -> u32 {
  if (QRS_$W == 1u) {
    return row * qstride_$W(cols8);
  }
  let j = row % QRS_$W;
  return (row - j) * qstride_$W(cols8) + (j % 4u) * (QRS_$W / 4u) + j / 4u;
}

fn qcodes0_$W(cols8: u32) -> u32 {
  return qstride_$W(cols8) - qchunks_$W(cols8);
}

// (scale, offset) of group g of the row starting at `base`.
fn qscale_at_$W(base: u32, g: u32) -> vec2<f32> {
  let v = $W[base + (g / 2u) * QRS_$W];
  return bitcast<vec2<f32>>(select(v.xy, v.zw, (g & 1u) == 1u));
}

fn qscale_$W(row: u32, g: u32, cols8: u32) -> vec2<f32> {
  return qscale_at_$W(qrow_$W(row, cols8), g);
}

// One u32 of codes as floats: 8 at 4 bits (two vec4s), 4 at 8 bits (the first vec4).
fn qunpack_$W(w: u32) -> mat2x4<f32> {
  if (QB_$W == 4u) {
    let v = vec4<u32>(w);
    return mat2x4<f32>(vec4<f32>((v >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)), vec4<f32>((v >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u)));
  }
  return mat2x4<f32>(vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u)), vec4<f32>(0.0));
}

// The u32 holding column `col` of a row (for the block readers below).
fn qword_$W(row: u32, col: u32, cols8: u32) -> u32 {
  return $W[qrow_$W(row, cols8) + (qcodes0_$W(cols8) + col / QC_$W) * QRS_$W][(col % QC_$W) / (32u / QB_$W)];
}
