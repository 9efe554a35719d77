// The input rows X of a projection, token t's row at x_base[t]. With XU (one token), X is a uniform
// array of XN vec4s: on CPU drivers an element the lanes index by loop counter then costs a third
// of a storage read, which the bounds-checked storage path spends per lane. The RMSNorm gain that
// feeds a projection is folded into its weights at load; only a tied lm_head, which shares the
// embedding's weights, applies its gain G here (GAIN).
//#if XU
@group(0) @binding(2) var<uniform> X: array<vec4<f32>, XN>;
//#else
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
//#endif
//#if GAIN
@group(0) @binding(3) var<storage, read> G: array<vec4<f32>>;
//#endif

var<private> x_base: array<u32, TM>;

fn gained(x: vec4<f32>, k: u32) -> vec4<f32> {
//#if GAIN
  return x * G[k];
//#else
  return x;
//#endif
}
