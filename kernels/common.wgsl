// Decode state shared by every kernel of a forward pass. It lives on the GPU so that argmax can
// advance it, which lets several greedy steps run in one submission without the CPU in between.
struct State {
  pos: u32,   // absolute position of the first token of this pass
  ntok: u32,  // tokens in this pass (1 when decoding)
  step: u32,  // index in out_ids where the next greedy token goes
  pad: u32,
}

// One step of an online softmax: folds score s into the running max m and sum l, and returns the
// factor that rescales what was accumulated so far (x) and the weight of s's value (y).
fn softmax_step(m: ptr<function, f32>, l: ptr<function, f32>, s: f32) -> vec2<f32> {
  let m_new = max(*m, s);
  let corr = exp(*m - m_new);
  let w = exp(s - m_new);
  *l = *l * corr + w;
  *m = m_new;
  return vec2<f32>(corr, w);
}
