// Decode state shared by every kernel of a forward pass. It lives on the GPU so that argmax can
// advance it, which lets several greedy steps run in one submission without the CPU in between.
struct State {
  pos: u32,   // absolute position of the first token of this pass
  ntok: u32,  // tokens in this pass (1 when decoding)
  step: u32,  // index in out_ids where the next greedy token goes
  pad: u32,
}
