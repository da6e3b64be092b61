// argmax of each row: the index of the largest value, the lowest index on ties; NaN never wins
// (a row of NaN only gives 0).
//
// Bindings: 0 params (uniform Params), 1 x: array<f32> [rows, cols], 2 out: array<u32> [rows].
// Workgroup: 256 threads along x, one workgroup per row. Thread t scans columns t, t+256, … in order
// (coalesced reads; keeping the first of equal values keeps its lowest index), then a shared-memory
// tree merges the 256 (value, index) candidates. Row = wg.y·num_wg.x + wg.x.

struct Params {
  rows: u32,
  cols: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

const WORKGROUP_SIZE = 256u;
const NO_INDEX = 0xffffffffu;

var<workgroup> best_values: array<f32, WORKGROUP_SIZE>;
var<workgroup> best_indices: array<u32, WORKGROUP_SIZE>;

// From the bits: WGSL lets compilers assume NaN away, which can fold `v != v` to false.
fn is_nan(value: f32) -> bool {
  return (bitcast<u32>(value) & 0x7fffffffu) > 0x7f800000u;
}

// Whether candidate (value, index) beats the current best; NO_INDEX is "nothing yet".
fn beats(value: f32, index: u32, best_value: f32, best_index: u32) -> bool {
  if (index == NO_INDEX) { return false; }
  if (best_index == NO_INDEX) { return true; }
  return value > best_value || (value == best_value && index < best_index);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn argmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) local: u32) {
  let row = wg.y * groups.x + wg.x;
  if (row >= params.rows) { return; }
  let row_start = row * params.cols;

  var best_value = 0.0;
  var best_index = NO_INDEX;
  for (var col = local; col < params.cols; col += WORKGROUP_SIZE) {
    let value = x[row_start + col];
    if (!is_nan(value) && (best_index == NO_INDEX || value > best_value)) {
      best_value = value;
      best_index = col;
    }
  }
  best_values[local] = best_value;
  best_indices[local] = best_index;

  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (local < stride) {
      let other = local + stride;
      if (beats(best_values[other], best_indices[other], best_values[local], best_indices[local])) {
        best_values[local] = best_values[other];
        best_indices[local] = best_indices[other];
      }
    }
  }
  if (local == 0u) {
    out[row] = select(best_indices[0], 0u, best_indices[0] == NO_INDEX);
  }
}
