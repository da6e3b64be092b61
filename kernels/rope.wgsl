// Rotary position embedding as MLX's mx.fast.rope: the first `dims` features of each head rotate by
// angle position·scale·θ_i for pair i, the rest pass through. Non-traditional pairs are
// (x[i], x[i + dims/2]); traditional pairs are (x[2i], x[2i + 1]).
//
// The angle is not formed as an f32 product: at position 131,072 an f32 angle is off by up to
// 2⁻⁷ rad. Only the angle modulo one turn matters, and for an integer position p,
// frac(p·r) = frac(p·frac(r)) with r = scale·θ_i / 2π. The host gives frac(r) per pair as a 64-bit
// fixed-point fraction (two u32 words); the kernel multiplies it by |p| in wrapping integer
// arithmetic (exact mod 2⁶⁴), keeps the top 32 bits as a signed turn in [−½, ½), and only then
// converts to radians in f32 (error about 2⁻²² rad whatever the position).
//
// Bindings: 0 params (uniform Params), 1 x: array<f32> [tokens, heads, head_dim],
//   2 positions: array<i32> [tokens], 3 turns: array<u32> [dims/2, 2] (frac(r_i) high word, low
//   word), 4 out: array<f32> [tokens, heads, head_dim].
// Workgroup: 256 threads along x. Thread item = (token, head, j) with j < head_dim − dims/2: j below
// dims/2 rotates pair j (two outputs), the others copy feature dims/2 + j. Item index =
// (wg.y·num_wg.x + wg.x)·256 + local.x (2-D grid past 65,535 workgroups).

struct Params {
  total_items: u32,     // tokens · heads · items_per_head
  items_per_head: u32,  // head_dim − dims/2
  heads: u32,
  head_dim: u32,
  half_dims: u32,       // dims / 2: rotated pairs per head
  traditional: u32,     // 1: interleaved pairs, 0: halves
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<i32>;
@group(0) @binding(3) var<storage, read> turns: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// High 32 bits of the 64-bit product a·b, from 16-bit limbs (WGSL has no 64-bit integers).
fn multiply_high(a: u32, b: u32) -> u32 {
  let a_low = a & 0xffffu;
  let a_high = a >> 16u;
  let b_low = b & 0xffffu;
  let b_high = b >> 16u;
  let low_low = a_low * b_low;
  let low_high = a_low * b_high;
  let high_low = a_high * b_low;
  let middle = (low_low >> 16u) + (low_high & 0xffffu) + (high_low & 0xffffu);
  return a_high * b_high + (low_high >> 16u) + (high_low >> 16u) + (middle >> 16u);
}

// position · r_i in radians, reduced to [−π, π).
fn rotation_angle(position: i32, pair: u32) -> f32 {
  let position_bits = bitcast<u32>(position);
  let magnitude = select(position_bits, 0u - position_bits, position < 0);
  let turn_high = turns[2u * pair];
  let turn_low = turns[2u * pair + 1u];
  // Bits 32…63 of magnitude · (turn_high·2³² + turn_low), mod 2⁶⁴; u32 products wrap.
  let turn_bits = multiply_high(magnitude, turn_low) + magnitude * turn_high;
  let signed_turn = f32(bitcast<i32>(turn_bits)) * (1.0 / 4294967296.0);
  let turn = select(signed_turn, -signed_turn, position < 0);
  return turn * 6.283185307179586;
}

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
  let item = (wg.y * groups.x + wg.x) * 256u + local;
  if (item >= params.total_items) { return; }
  let token_head = item / params.items_per_head;
  let j = item % params.items_per_head;
  let head_start = token_head * params.head_dim;

  if (j >= params.half_dims) {
    let feature = head_start + params.half_dims + j;
    out[feature] = x[feature];
    return;
  }
  let token = token_head / params.heads;
  let angle = rotation_angle(positions[token], j);
  let cos_angle = cos(angle);
  let sin_angle = sin(angle);
  var first = head_start + j;
  var second = head_start + j + params.half_dims;
  if (params.traditional == 1u) {
    first = head_start + 2u * j;
    second = first + 1u;
  }
  let x1 = x[first];
  let x2 = x[second];
  out[first] = x1 * cos_angle - x2 * sin_angle;
  out[second] = x1 * sin_angle + x2 * cos_angle;
}
