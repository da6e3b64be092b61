// x · wᵀ for few rows of x (decode) with a plain weight matrix w [rows, k] in f32, f16 or bf16 whose rows
// are whole 16-byte chunks (k a multiple of 4 for f32, of 8 for 16-bit); other shapes use matmul_plain.wgsl.
// Reading the weights is the whole cost, so loads are 16 bytes wide and each x value serves four rows.
//
// Bindings: 0 params (uniform Params),
//   1 x: array<vec4<f32>> [m, k] f32 activations,
//   2 weight: array<vec4<u32>> [rows, k / (4 or 8)]: f32 bits, or 16-bit values packed two per u32, first
//     value in the low half; a row chunk of a larger matrix is bound at its byte offset,
//   3 out: array<f32> [m, out_stride]; a dispatch writes columns out_offset … out_offset + rows − 1.
// Workgroup: WORKGROUP_SIZE threads = slots of THREADS_PER_ROW lanes; a slot owns 4 consecutive rows (one
//   vec4: no function-scope array is indexed by a loop variable), its lanes take 16-byte chunks strided by
//   THREADS_PER_ROW (contiguous loads per row). `gemv_subgroup` sums a slot's lanes with subgroup shuffles
//   alone (subgroups of at least THREADS_PER_ROW lanes; the host checks); `gemv` adds a pass through
//   workgroup memory. Grid: 2-D, row blocks numbered wg.y · num_wg.x + wg.x.
//#if SUBGROUPS
diagnostic(off, subgroup_uniformity);
//#endif

struct Params {
  rows: u32,        // rows of w this dispatch covers (output columns it writes)
  k: u32,           // inner dimension: columns of x and of w
  m: u32,           // rows of x
  out_stride: u32,  // columns of out (rows of the whole matrix)
  out_offset: u32,  // first column of out this dispatch writes
}

override WEIGHT_DTYPE: u32 = 0u;  // 0 f32, 1 f16, 2 bf16
override BATCH: u32 = 1u;         // rows of x, 1 … MAX_BATCH
override THREADS_PER_ROW: u32 = 32u;
override WORKGROUP_SIZE: u32 = 256u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weight: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const MAX_BATCH = 8u;

/** Σ w·x over one 16-byte chunk of one row: 4 f32 values (x_high unused) or 8 16-bit values. */
fn chunk_dot(words: vec4<u32>, x_low: vec4<f32>, x_high: vec4<f32>) -> f32 {
  if (WEIGHT_DTYPE == 0u) { return dot(bitcast<vec4<f32>>(words), x_low); }
  if (WEIGHT_DTYPE == 2u) {
    // bf16 is the top half of an f32: low halves shift up, high halves are masked in place.
    let even = bitcast<vec4<f32>>(words << vec4<u32>(16u));
    let odd = bitcast<vec4<f32>>(words & vec4<u32>(0xffff0000u));
    return dot(even, vec4<f32>(x_low.xz, x_high.xz)) + dot(odd, vec4<f32>(x_low.yw, x_high.yw));
  }
  let low = vec4<f32>(unpack2x16float(words.x), unpack2x16float(words.y));
  let high = vec4<f32>(unpack2x16float(words.z), unpack2x16float(words.w));
  return dot(low, x_low) + dot(high, x_high);
}

// This lane's share of rows first_row … first_row + 3 times every row b of x (element b of the result).
fn gemv_partial_sums(first_row: u32, lane: u32) -> array<vec4<f32>, MAX_BATCH> {
  let k = params.k;
  let values_per_chunk = select(8u, 4u, WEIGHT_DTYPE == 0u);
  let chunks_per_row = k / values_per_chunk;
  // Rows past the end re-read the last row; their sums are never written.
  let rows = min(vec4<u32>(first_row) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.rows - 1u));
  var acc: array<vec4<f32>, MAX_BATCH>;
  // A uniform trip count keeps the callers' barriers and shuffles in uniform control flow.
  let steps = (chunks_per_row + THREADS_PER_ROW - 1u) / THREADS_PER_ROW;
  for (var step = 0u; step < steps; step++) {
    let chunk = step * THREADS_PER_ROW + lane;
    if (chunk < chunks_per_row) {
      let w0 = weight[rows.x * chunks_per_row + chunk];
      let w1 = weight[rows.y * chunks_per_row + chunk];
      let w2 = weight[rows.z * chunks_per_row + chunk];
      let w3 = weight[rows.w * chunks_per_row + chunk];
      for (var b = 0u; b < BATCH; b++) {
        let x_base = (b * k + chunk * values_per_chunk) / 4u;
        let x_low = x[x_base];
        var x_high = vec4<f32>(0.0);
        if (WEIGHT_DTYPE != 0u) { x_high = x[x_base + 1u]; }
        acc[b] += vec4<f32>(chunk_dot(w0, x_low, x_high), chunk_dot(w1, x_low, x_high),
                            chunk_dot(w2, x_low, x_high), chunk_dot(w3, x_low, x_high));
      }
    }
  }
  return acc;
}

fn write_rows(first_row: u32, b: u32, sums: vec4<f32>) {
  let base = b * params.out_stride + params.out_offset + first_row;
  if (first_row < params.rows) { out[base] = sums.x; }
  if (first_row + 1u < params.rows) { out[base + 1u] = sums.y; }
  if (first_row + 2u < params.rows) { out[base + 2u] = sums.z; }
  if (first_row + 3u < params.rows) { out[base + 3u] = sums.w; }
}

var<workgroup> partials: array<vec4<f32>, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
//#if SUBGROUPS
        @builtin(subgroup_size) subgroup_size: u32,
//#endif
        @builtin(local_invocation_index) local: u32) {
  let slot = local / THREADS_PER_ROW;
  let lane = local % THREADS_PER_ROW;
  let first_row = ((wg.y * groups.x + wg.x) * (WORKGROUP_SIZE / THREADS_PER_ROW) + slot) * 4u;
  let acc = gemv_partial_sums(first_row, lane);
  var width = 1u;  // lanes whose sums each lane holds after the shuffles
//#if SUBGROUPS
  width = min(THREADS_PER_ROW, subgroup_size);
//#endif
  for (var b = 0u; b < BATCH; b++) {
    var sums = acc[b];
//#if SUBGROUPS
    for (var offset = 1u; offset < width; offset <<= 1u) { sums += subgroupShuffleXor(sums, offset); }
//#endif
    partials[local] = sums;
    workgroupBarrier();
    if (lane == 0u) {
      var total = vec4<f32>(0.0);
      for (var l = 0u; l < THREADS_PER_ROW; l += width) { total += partials[local + l]; }
      write_rows(first_row, b, total);
    }
    workgroupBarrier();
  }
}

//#if SUBGROUPS
@compute @workgroup_size(WORKGROUP_SIZE)
fn gemv_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) local: u32) {
  let slot = local / THREADS_PER_ROW;
  let lane = local % THREADS_PER_ROW;
  let first_row = ((wg.y * groups.x + wg.x) * (WORKGROUP_SIZE / THREADS_PER_ROW) + slot) * 4u;
  let acc = gemv_partial_sums(first_row, lane);
  for (var b = 0u; b < BATCH; b++) {
    var sums = acc[b];
    for (var offset = 1u; offset < THREADS_PER_ROW; offset <<= 1u) { sums += subgroupShuffleXor(sums, offset); }
    if (lane == 0u) { write_rows(first_row, b, sums); }
  }
}
//#endif
