// Embedding gather from a plain table [rows, cols] in f32, f16 or bf16: out[t, c] = table[ids[t], c].
// A table larger than one binding is gathered in row chunks, one dispatch each: a dispatch writes the
// tokens whose id falls in its chunk. Ids past the table's end give rows of zeros (written by the
// dispatch of the first chunk), never an out-of-bounds read.
//
// Bindings: 0 params (uniform Params),
//   1 table: array<u32> [rows of this chunk, cols]: f32 bits, or 16-bit values packed two per u32, first
//     value in the low half (a chunk is bound at a 256-byte aligned, so even, element offset),
//   2 ids: array<u32> [tokens],
//   3 out: array<f32> [tokens, cols].
// Workgroup: 256 threads along x, one output element each; 2-D grid, element = (wg.y·num_wg.x + wg.x)·256
//   + local.

struct Params {
  cols: u32,
  tokens: u32,
  first_row: u32,       // first table row this dispatch's binding holds
  rows: u32,            // rows this dispatch's binding holds
  total_rows: u32,      // rows of the whole table
  writes_missing: u32,  // 1: this dispatch writes the zero rows of ids ≥ total_rows
}

override TABLE_DTYPE: u32 = 0u;  // 0 f32, 1 f16, 2 bf16

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn table_at(index: u32) -> f32 {
  if (TABLE_DTYPE == 0u) { return bitcast<f32>(table[index]); }
  let half = (table[index >> 1u] >> ((index & 1u) * 16u)) & 0xffffu;
  if (TABLE_DTYPE == 2u) { return bitcast<f32>(half << 16u); }
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
    out[element] = table_at((id - params.first_row) * params.cols + column);
  } else if (id >= params.total_rows && params.writes_missing == 1u) {
    out[element] = 0.0;
  }
}
