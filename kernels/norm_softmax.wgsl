// Numerically stable softmax over the last axis: out = exp(x − max) / Σ exp(x − max).
// One read pass keeps a running (max, sum) per thread, rescaling the sum whenever the max grows
// (the "online softmax" of Milakov & Gimelshein), so a 262,144-wide row is read twice, not three times.
//
// Bindings: 0 params (uniform Params), 1 x: array<f32> [rows, cols], 2 out: array<f32> [rows, cols].
// Workgroup: 256 threads along x, one workgroup per row; (max, sum) pairs merge in a shared-memory
// tree. Row = wg.y·num_wg.x + wg.x (2-D grid past 65,535 rows).

struct Params {
  rows: u32,
  cols: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WORKGROUP_SIZE = 256u;
// The running max starts at the lowest finite f32, not −inf: WGSL may assume no infinities, and
// exp(lowest − m) is already 0, so a thread that saw nothing contributes nothing when merged.
const LOWEST = -0x1.fffffep+127f;

var<workgroup> partial_max: array<f32, WORKGROUP_SIZE>;
var<workgroup> partial_sum: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) local: u32) {
  let row = wg.y * groups.x + wg.x;
  if (row >= params.rows) { return; }
  let row_start = row * params.cols;

  var running_max = LOWEST;
  var running_sum = 0.0;
  for (var col = local; col < params.cols; col += WORKGROUP_SIZE) {
    let value = x[row_start + col];
    if (value > running_max) {
      running_sum = running_sum * exp(running_max - value) + 1.0;
      running_max = value;
    } else {
      running_sum += exp(value - running_max);
    }
  }
  partial_max[local] = running_max;
  partial_sum[local] = running_sum;

  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (local < stride) {
      let max_a = partial_max[local];
      let max_b = partial_max[local + stride];
      let merged_max = max(max_a, max_b);
      partial_sum[local] = partial_sum[local] * exp(max_a - merged_max)
                         + partial_sum[local + stride] * exp(max_b - merged_max);
      partial_max[local] = merged_max;
    }
  }
  workgroupBarrier();
  let row_max = partial_max[0];
  let inverse_sum = 1.0 / partial_sum[0];
  for (var col = local; col < params.cols; col += WORKGROUP_SIZE) {
    out[row_start + col] = exp(x[row_start + col] - row_max) * inverse_sum;
  }
}
