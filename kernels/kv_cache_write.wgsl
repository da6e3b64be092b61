// Store the keys and values of new tokens into one layer of the paged KV cache, converting f32
// activations to the cache's storage format (f32, f16, or 4/8-bit affine quantized, group 64).
//
// Cache layout (one buffer for keys and one for values per layer, u32 words, block-major):
//   head block of (block b, kv head h) starts at word (b·kv_heads + h)·HEAD_BLOCK_WORDS and holds
//   block_size rows of ROW_WORDS words (token offset t at t·ROW_WORDS), then, quantized only,
//   block_size·GROUPS scale/bias words (token t, group g at block_size·ROW_WORDS + t·GROUPS + g).
//   Row words: f32 → bitcast, one value; f16 → pack2x16float(d, d+1); quantized → 32/BITS values,
//   value d in bits [(d·BITS) % 32, +BITS) of word d·BITS/32. Scale/bias word: pack2x16float(scale,
//   bias) of the group's 64 values (MLX's affine: value = scale·q + bias).
//
// Bindings: 0 params, 1 keys: array<f32> [tokens, kv_heads, HEAD_DIM], 2 values: same,
//   3 slots: array<u32> [tokens] (slot = block·block_size + offset), 4 k_cache: array<u32> (layout
//   above), 5 v_cache: same.
// Workgroup: 64 threads, one (token, kv head): x/y = token (2-D grid for many tokens), z = kv head;
//   each thread writes whole storage words of the head's row (and its group's scale/bias word).

override STORAGE: u32;   // 0 f32, 1 f16, 2 quantized
override BITS: u32 = 8u; // quantized only: 4 or 8
override HEAD_DIM: u32;

override VALUES_PER_WORD: u32 = select(select(32u / BITS, 2u, STORAGE == 1u), 1u, STORAGE == 0u);
override ROW_WORDS: u32 = HEAD_DIM / VALUES_PER_WORD;
override GROUPS: u32 = select(0u, HEAD_DIM / 64u, STORAGE == 2u);

struct Params {
  tokens: u32,
  kv_heads: u32,
  block_size: u32,
  slot_count: u32, // block_count·block_size: slots at or past it are ignored
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> keys: array<f32>;
@group(0) @binding(2) var<storage, read> values: array<f32>;
@group(0) @binding(3) var<storage, read> slots: array<u32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<u32>;

fn source_value(is_value: bool, index: u32) -> f32 {
  if (is_value) { return values[index]; }
  return keys[index];
}

fn store(is_value: bool, index: u32, word: u32) {
  if (is_value) { v_cache[index] = word; } else { k_cache[index] = word; }
}

// scale and bias of the 64 values from `first`, rounded to f16 as stored, so quantizing uses exactly
// the numbers dequantizing will.
fn group_scale_bias(is_value: bool, first: u32) -> vec2<f32> {
  var low = source_value(is_value, first);
  var high = low;
  for (var i = 1u; i < 64u; i++) {
    let x = source_value(is_value, first + i);
    low = min(low, x);
    high = max(high, x);
  }
  let levels = f32((1u << BITS) - 1u);
  return vec2<f32>(round_to_half(divide_exactly(max(high - low, 0.0), levels)), round_to_half(low));
}

// a / b rounded as IEEE division rounds it (to nearest, ties to even), by integer long division of
// the significands. WGSL lets a device divide less exactly (2.5 ulp), and a quotient an ulp off puts
// a value next to a rounding tie, or a scale (range / levels) at an f16 tie, one step away from what
// the storage rule gives (and a CPU). A correction by fma residuals (the device's quotient or a
// neighbour) was exact alone on an H200 but not inlined here: the exact quotient of a scale at an f16
// tie lost to its neighbour (a driver may contract and reorder float arithmetic, SPIR-V allows it;
// not integer arithmetic). Where exactness cannot matter the device's quotient is returned: a zero,
// infinite or NaN operand, a subnormal operand or result (the level or the f16 scale is 0 there).
fn divide_exactly(a: f32, b: f32) -> f32 {
  let a_bits = bitcast<u32>(a);
  let b_bits = bitcast<u32>(b);
  let a_exponent = i32((a_bits >> 23u) & 0xffu);
  let b_exponent = i32((b_bits >> 23u) & 0xffu);
  if (a_exponent == 0 || a_exponent == 255 || b_exponent == 0 || b_exponent == 255) { return a / b; }
  let divisor = (b_bits & 0x7fffffu) | 0x800000u;
  var remainder = (a_bits & 0x7fffffu) | 0x800000u;
  var exponent = a_exponent - b_exponent + 127;
  // A quotient in [1, 2): its 24 significant bits come one per step.
  if (remainder < divisor) {
    remainder <<= 1u;
    exponent -= 1;
  }
  var quotient = 0u;
  for (var bit = 0u; bit < 24u; bit++) {
    quotient <<= 1u;
    if (remainder >= divisor) {
      remainder -= divisor;
      quotient |= 1u;
    }
    remainder <<= 1u;
  }
  // remainder is now twice what is left: above half the divisor rounds up, at half to even.
  if (remainder > divisor || (remainder == divisor && (quotient & 1u) == 1u)) { quotient += 1u; }
  if (quotient == 0x1000000u) {
    quotient >>= 1u;
    exponent += 1;
  }
  if (exponent <= 0 || exponent >= 255) { return a / b; }
  let sign = (a_bits ^ b_bits) & 0x80000000u;
  return bitcast<f32>(sign | (u32(exponent) << 23u) | (quotient & 0x7fffffu));
}

// x rounded to f16 precision (10 mantissa bits, ties to even) in f32 arithmetic. Spelled out because
// unpack2x16float(pack2x16float(x)) may be folded to x by a driver (lavapipe does), and quantizing with
// an unrounded scale is off by a level from what dequantizing with the stored one gives. Exact for
// normal f16 values; below 2^-14 pack2x16float then rounds once more (a spacing of 6e-8).
fn round_to_half(x: f32) -> f32 {
  let bits = bitcast<u32>(x);
  return bitcast<f32>((bits + 0x0fffu + ((bits >> 13u) & 1u)) & 0xffffe000u);
}

fn encode_word(is_value: bool, row_source: u32, word: u32) -> u32 {
  let first = row_source + word * VALUES_PER_WORD;
  if (STORAGE == 0u) { return bitcast<u32>(source_value(is_value, first)); }
  if (STORAGE == 1u) {
    return pack2x16float(vec2<f32>(source_value(is_value, first), source_value(is_value, first + 1u)));
  }
  let group_first = row_source + (word * VALUES_PER_WORD / 64u) * 64u;
  let scale_bias = group_scale_bias(is_value, group_first);
  let top = f32((1u << BITS) - 1u);
  var packed = 0u;
  for (var v = 0u; v < VALUES_PER_WORD; v++) {
    var level = 0.0;
    if (scale_bias.x > 0.0) {
      level = clamp(round(divide_exactly(source_value(is_value, first + v) - scale_bias.y, scale_bias.x)), 0.0, top);
    }
    packed |= u32(level) << (v * BITS);
  }
  return packed;
}

fn write_row(is_value: bool, token: u32, head: u32, local: u32) {
  let slot = slots[token];
  if (slot >= params.slot_count) { return; }
  let block = slot / params.block_size;
  let offset = slot % params.block_size;
  let head_block = (block * params.kv_heads + head) * params.block_size * (ROW_WORDS + GROUPS);
  let row_source = (token * params.kv_heads + head) * HEAD_DIM;
  for (var word = local; word < ROW_WORDS; word += 64u) {
    store(is_value, head_block + offset * ROW_WORDS + word, encode_word(is_value, row_source, word));
    let first_value = word * VALUES_PER_WORD;
    if (STORAGE == 2u && first_value % 64u == 0u) {
      let group = first_value / 64u;
      let scale_bias = group_scale_bias(is_value, row_source + first_value);
      let params_word = head_block + params.block_size * ROW_WORDS + offset * GROUPS + group;
      store(is_value, params_word, pack2x16float(scale_bias));
    }
  }
}

@compute @workgroup_size(64)
fn write(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) local: u32) {
  let token = wg.y * groups.x + wg.x;
  if (token >= params.tokens) { return; }
  write_row(false, token, wg.z, local);
  write_row(true, token, wg.z, local);
}
