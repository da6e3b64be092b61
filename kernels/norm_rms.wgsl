// RMS normalization over the last axis: out = x / sqrt(mean(x²) + eps) · weight, accumulated in f32.
// One entry point per storage dtype of the weight; 16-bit weights are read as packed words because
// storage arrays have no 16-bit element type without the f16 extension (and none at all for bf16).
//
// Bindings: 0 params (uniform Params), 1 x: array<f32> [rows, cols], 2 weight: array<u32> [cols]
//   (f32 bit patterns, or two f16/bf16 values per word, element 2j in the low half),
//   3 out: array<f32> [rows, cols].
// Workgroup: 256 threads along x, one workgroup per row; each thread strides over the row, then a
// shared-memory tree sums the squares. Row = wg.y·num_wg.x + wg.x (2-D grid past 65,535 rows).

struct Params {
  rows: u32,
  cols: u32,
  eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WORKGROUP_SIZE = 256u;
var<workgroup> partial_sums: array<f32, WORKGROUP_SIZE>;

fn row_index(wg: vec3<u32>, groups: vec3<u32>) -> u32 {
  return wg.y * groups.x + wg.x;
}

// 1 / rms of one row, the same value in every thread of the workgroup.
fn inverse_rms(row_start: u32, local: u32) -> f32 {
  var sum_of_squares = 0.0;
  for (var col = local; col < params.cols; col += WORKGROUP_SIZE) {
    let value = x[row_start + col];
    sum_of_squares += value * value;
  }
  partial_sums[local] = sum_of_squares;
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (local < stride) {
      partial_sums[local] += partial_sums[local + stride];
    }
  }
  workgroupBarrier();
  // 1/sqrt rather than inverseSqrt: Vulkan allows inverseSqrt 2 ulp, and some drivers use an estimate.
  return 1.0 / sqrt(partial_sums[0] / f32(params.cols) + params.eps);
}

fn weight_f32(col: u32) -> f32 {
  return bitcast<f32>(weight[col]);
}

fn weight_f16(col: u32) -> f32 {
  return unpack2x16float(weight[col / 2u])[col & 1u];
}

// bf16 is the top half of an f32.
fn weight_bf16(col: u32) -> f32 {
  let word = weight[col / 2u];
  return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (col & 1u) == 1u));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn rms_norm_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) local: u32) {
  let row = row_index(wg, groups);
  if (row >= params.rows) { return; }
  let row_start = row * params.cols;
  let scale = inverse_rms(row_start, local);
  for (var col = local; col < params.cols; col += WORKGROUP_SIZE) {
    out[row_start + col] = x[row_start + col] * scale * weight_f32(col);
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn rms_norm_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) local: u32) {
  let row = row_index(wg, groups);
  if (row >= params.rows) { return; }
  let row_start = row * params.cols;
  let scale = inverse_rms(row_start, local);
  for (var col = local; col < params.cols; col += WORKGROUP_SIZE) {
    out[row_start + col] = x[row_start + col] * scale * weight_f16(col);
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn rms_norm_bf16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) local: u32) {
  let row = row_index(wg, groups);
  if (row >= params.rows) { return; }
  let row_start = row * params.cols;
  let scale = inverse_rms(row_start, local);
  for (var col = local; col < params.cols; col += WORKGROUP_SIZE) {
    out[row_start + col] = x[row_start + col] * scale * weight_bf16(col);
  }
}
