// The interface both decode attention variants share (attention_decode.wgsl, attention_serial.wgsl).
struct AttnParams {
  n_heads: u32,
  n_kv: u32,
  kv_stride: u32,  // floats per position in the cache: n_kv * head_dim
  scale: f32,
}
@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> QKV: array<f32>;
@group(0) @binding(3) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> K: array<f32>;
@group(0) @binding(5) var<storage, read_write> V: array<f32>;
@group(0) @binding(6) var<storage, read_write> O: array<f32>;

const HALF: u32 = HD / 2u;
