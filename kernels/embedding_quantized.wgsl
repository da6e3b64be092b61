// Embedding gather from an MLX affine-quantized table [rows, cols]: out[t, c] = s·q + b of row ids[t],
// column c, with s and b of that row's group c / group_size. A table larger than one binding is gathered
// in row chunks, one dispatch each: a dispatch writes the tokens whose id falls in its chunk. Ids past the
// table's end give rows of zeros (written by the dispatch of the first chunk), never an out-of-bounds read.
//
// Bindings: 0 params (uniform Params),
//   1 weight: array<u32> [rows of this chunk, cols·BITS/32], first value of each word in its lowest bits,
//   2 scales, 3 biases: array<u32> [rows of this chunk, cols/group_size], f32 bits or packed 16-bit pairs,
//   4 ids: array<u32> [tokens],
//   5 out: array<f32> [tokens, cols].
// Workgroup: 256 threads along x, one output element each; 2-D grid, element = (wg.y·num_wg.x + wg.x)·256
//   + local.

struct Params {
  cols: u32,
  tokens: u32,
  first_row: u32,       // first table row this dispatch's bindings hold
  rows: u32,            // rows this dispatch's bindings hold
  total_rows: u32,      // rows of the whole table
  writes_missing: u32,  // 1: this dispatch writes the zero rows of ids ≥ total_rows
  group_size: u32,
}

override BITS: u32 = 4u;
override SCALE_DTYPE: u32 = 0u;  // 0 f32, 1 f16, 2 bf16

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> weight: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> biases: array<u32>;
@group(0) @binding(4) var<storage, read> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn decode_scale_word(word: u32, index: u32) -> f32 {
  if (SCALE_DTYPE == 0u) { return bitcast<f32>(word); }
  let half = (word >> ((index & 1u) * 16u)) & 0xffffu;
  if (SCALE_DTYPE == 2u) { return bitcast<f32>(half << 16u); }
  return unpack2x16float(half).x;
}

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) local: u32) {
  let element = (wg.y * groups.x + wg.x) * 256u + local;
  if (element >= params.tokens * params.cols) { return; }
  let id = ids[element / params.cols];
  let column = element % params.cols;
  if (id >= params.first_row && id < params.first_row + params.rows) {
    let row = id - params.first_row;
    let values_per_word = 32u / BITS;
    let word = weight[(row * params.cols + column) / values_per_word];
    let q = (word >> ((column % values_per_word) * BITS)) & ((1u << BITS) - 1u);
    let group = row * (params.cols / params.group_size) + column / params.group_size;
    let word_index = select(group, group >> 1u, SCALE_DTYPE != 0u);
    out[element] = decode_scale_word(scales[word_index], group) * f32(q) + decode_scale_word(biases[word_index], group);
  } else if (id >= params.total_rows && params.writes_missing == 1u) {
    out[element] = 0.0;
  }
}
