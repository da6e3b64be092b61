// x · wᵀ for few rows of x (decode), w in MLX's affine quantization: out[m, n] = Σ_k x[m, k] ·
// (scale[n, g]·q[n, k] + bias[n, g]), g = k / group size. Reading the weights is the whole cost, so each
// weight is read once with 16-byte loads, and each x value read serves four rows. x is staged in workgroup
// memory, block by block of k: read from global memory with coalesced loads, pre-scaled, and laid out so
// that the lanes of a slot read consecutive addresses (lanes reading their own chunks' x straight from
// global memory touch a cache line each per load, which cost more than the weights). Four rows are one
// vec4 and a chunk's words are spelled out: the only function-scope array indexed by a loop variable is
// the accumulator over BATCH, a constant-count loop (drivers may put such arrays in slow local memory).
//
// Bindings: 0 params (uniform Params),
//   1 x: array<vec4<f32>> [m, k] f32 activations (k is a multiple of 32, so rows are whole vec4s),
//   2 weight: array<vec4<u32>> [rows, k·BITS/128], 32/BITS values per u32, first value in the lowest bits;
//     a row chunk of a larger matrix is bound at its byte offset,
//   3 scales, 4 biases: array<u32> [rows, k/group size], f32 bits or packed 16-bit pairs (SCALE_DTYPE),
//   5 out: array<f32> [m, out_stride]; a dispatch writes columns out_offset … out_offset + rows − 1.
// Workgroup: WORKGROUP_SIZE threads = slots of THREADS_PER_ROW lanes; a slot owns 4 consecutive rows, its
//   lanes take 16-byte chunks (32 4-bit or 16 8-bit values, never straddling a group) strided by
//   THREADS_PER_ROW, so a slot's loads of one row are contiguous. `gemv_subgroup` sums a slot's lanes with
//   subgroup shuffles alone (subgroups of at least THREADS_PER_ROW lanes; the host checks); `gemv` adds a
//   pass through workgroup memory (any subgroup size, or none). Grid: 2-D, row blocks numbered
//   wg.y · num_wg.x + wg.x.
//#if SUBGROUPS
diagnostic(off, subgroup_uniformity);
//#endif

struct Params {
  rows: u32,        // rows of w this dispatch covers (output columns it writes)
  k: u32,           // inner dimension: columns of x and of w
  m: u32,           // rows of x (BATCH)
  out_stride: u32,  // columns of out (rows of the whole matrix)
  out_offset: u32,  // first column of out this dispatch writes
  group_shift: u32, // (read by the GEMM; here GROUP_SIZE)
  scale_dtype: u32, // (read by the GEMM; here SCALE_DTYPE)
}

// Pipeline constants, not params: on an H200 this GEMV ran 20% slower with the group size, scale dtype and
// k read from params (the compiler folds the scale decoding and group arithmetic for constants).
override BITS: u32 = 4u;
override SCALE_DTYPE: u32 = 0u;  // 0 f32, 1 f16, 2 bf16
override GROUP_SIZE: u32 = 64u;  // 32, 64 or 128
override K: u32 = 0u;            // columns of x and w (0: params.k)
override BATCH: u32 = 1u;        // rows of x, 1 … MAX_BATCH
override THREADS_PER_ROW: u32 = 32u;
override WORKGROUP_SIZE: u32 = 256u;
// Chunks of k per block of x in workgroup memory (BATCH · BLOCK_CHUNKS · 128 bytes at 4 bits, half that at
// 8): the whole row where it fits the device's workgroup storage, a multiple of THREADS_PER_ROW where room
// allows. The last block of a row is staged and walked only as far as the row goes.
override BLOCK_CHUNKS: u32 = 128u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weight: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;
@group(0) @binding(4) var<storage, read> biases: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const MAX_BATCH = 8u;
// A small integer q OR-ed into the mantissa of 2^23 gives the float 2^23 + q exactly; subtracting 2^23
// yields q without an integer-to-float conversion (quarter rate on many GPUs). Fields are masked in
// place, so the float is q·2^shift, and x is pre-scaled by 2^−shift (exact: a power of two).
const MAGIC_BITS = 0x4b000000u;
const MAGIC = 8388608.0;
// 4-bit: nibbles 0–4 of a word in place (bits 0–19), nibbles 5–7 from the word shifted right by 20.
const Q4_LOW_SCALE = vec4<f32>(1.0, 0.0625, 0.00390625, 0.000244140625);
const Q4_HIGH_SCALE = vec4<f32>(0.0000152587890625, 1.0, 0.0625, 0.00390625);
// 8-bit: bytes 0–1 in place (bits 0–15), bytes 2–3 from the word shifted right by 16.
const Q8_SCALE = vec4<f32>(1.0, 0.00390625, 1.0, 0.00390625);

// Scales and biases of four rows at element indices `index`: f32 words, or 16-bit halves of words (the
// high half for odd indices; with an even number of groups per row all four share the parity, which the
// compiler sees, since k and the group size are pipeline constants).
fn decode4(words: vec4<u32>, index: vec4<u32>) -> vec4<f32> {
  if (SCALE_DTYPE == 0u) { return bitcast<vec4<f32>>(words); }
  let odd = (index & vec4<u32>(1u)) == vec4<u32>(1u);
  if (SCALE_DTYPE == 2u) {
    return bitcast<vec4<f32>>(select(words << vec4<u32>(16u), words & vec4<u32>(0xffff0000u), odd));
  }
  let halves = select(words, words >> vec4<u32>(16u), odd);
  return vec4<f32>(unpack2x16float(halves.x).x, unpack2x16float(halves.y).x,
                   unpack2x16float(halves.z).x, unpack2x16float(halves.w).x);
}

fn word_index4(index: vec4<u32>) -> vec4<u32> {
  return select(index, index >> vec4<u32>(1u), SCALE_DTYPE != 0u);
}

fn scales4(index: vec4<u32>) -> vec4<f32> {
  let at = word_index4(index);
  return decode4(vec4<u32>(scales[at.x], scales[at.y], scales[at.z], scales[at.w]), index);
}

fn biases4(index: vec4<u32>) -> vec4<f32> {
  let at = word_index4(index);
  return decode4(vec4<u32>(biases[at.x], biases[at.y], biases[at.z], biases[at.w]), index);
}

// The x values of one chunk, pre-scaled for the in-place fields (v4 … v7 unused at 8 bits), and their sum.
struct XChunk {
  v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
  v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>,
  sum: f32,
}

override X_VEC4S_PER_CHUNK: u32 = 32u / BITS;  // 8 at 4 bits, 4 at 8 bits
// x_block[(b · X_VEC4S_PER_CHUNK + j) · BLOCK_CHUNKS + c] = vec4 j of chunk c of the block, row b of x,
// pre-scaled: for a fixed j, consecutive chunks (the lanes of a slot) are consecutive addresses.
var<workgroup> x_block: array<vec4<f32>, BATCH * X_VEC4S_PER_CHUNK * BLOCK_CHUNKS>;

fn x_prescale(j: u32) -> vec4<f32> {
  if (BITS == 8u) { return Q8_SCALE; }
  return select(Q4_LOW_SCALE, Q4_HIGH_SCALE, (j & 1u) == 1u);
}

/** Stage `count` chunks from first_chunk of every row of x into x_block; the caller puts barriers around it. */
fn stage_x_block(first_chunk: u32, count: u32, k: u32, local: u32) {
  let per_row = X_VEC4S_PER_CHUNK * count;
  for (var index = local; index < BATCH * per_row; index += WORKGROUP_SIZE) {
    let b = index / per_row;
    let c = (index % per_row) / X_VEC4S_PER_CHUNK;
    let j = index % X_VEC4S_PER_CHUNK;
    let value = x[(b * k) / 4u + (first_chunk + c) * X_VEC4S_PER_CHUNK + j] * x_prescale(j);
    x_block[(b * X_VEC4S_PER_CHUNK + j) * BLOCK_CHUNKS + c] = value;
  }
}

fn x_chunk(b: u32, c: u32) -> XChunk {
  let base = b * X_VEC4S_PER_CHUNK * BLOCK_CHUNKS + c;
  let a0 = x_block[base];
  let a1 = x_block[base + BLOCK_CHUNKS];
  let a2 = x_block[base + 2u * BLOCK_CHUNKS];
  let a3 = x_block[base + 3u * BLOCK_CHUNKS];
  if (BITS == 8u) {
    // Undo the pre-scaling for the sum: multiplying by a power of two is exact.
    let sum = dot(a0 + a1 + a2 + a3, vec4<f32>(1.0, 256.0, 1.0, 256.0));
    let zero = vec4<f32>(0.0);
    return XChunk(a0, a1, a2, a3, zero, zero, zero, zero, sum);
  }
  let a4 = x_block[base + 4u * BLOCK_CHUNKS];
  let a5 = x_block[base + 5u * BLOCK_CHUNKS];
  let a6 = x_block[base + 6u * BLOCK_CHUNKS];
  let a7 = x_block[base + 7u * BLOCK_CHUNKS];
  let sum = dot(a0 + a2 + a4 + a6, vec4<f32>(1.0, 16.0, 256.0, 4096.0)) +
            dot(a1 + a3 + a5 + a7, vec4<f32>(65536.0, 1.0, 16.0, 256.0));
  return XChunk(a0, a1, a2, a3, a4, a5, a6, a7, sum);
}

// OR-ing the exponent into the whole word first leaves the fields below bit 20 (4-bit) or 16 (8-bit)
// intact and costs one operation per word; each value is then one AND with its field and the exponent
// (integer operations run at half the float rate on recent NVIDIA GPUs: they were the bottleneck).
fn q4_word_dot(word: u32, x_low: vec4<f32>, x_high: vec4<f32>) -> f32 {
  let low = word | MAGIC_BITS;
  let top = (word >> 20u) | MAGIC_BITS;
  let q_low = bitcast<vec4<f32>>(vec4<u32>(low) & (vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u) | vec4<u32>(MAGIC_BITS)));
  let q_high = bitcast<vec4<f32>>(vec4<u32>(low, top, top, top) &
                                  (vec4<u32>(0xf0000u, 0xfu, 0xf0u, 0xf00u) | vec4<u32>(MAGIC_BITS)));
  return dot(q_low - vec4<f32>(MAGIC), x_low) + dot(q_high - vec4<f32>(MAGIC), x_high);
}

fn q8_word_dot(word: u32, x_scaled: vec4<f32>) -> f32 {
  let low = word | MAGIC_BITS;
  let top = (word >> 16u) | MAGIC_BITS;
  let q = bitcast<vec4<f32>>(vec4<u32>(low, low, top, top) &
                             (vec4<u32>(0xffu, 0xff00u, 0xffu, 0xff00u) | vec4<u32>(MAGIC_BITS)));
  return dot(q - vec4<f32>(MAGIC), x_scaled);
}

/** Σ q·x over one chunk of one row. */
fn chunk_dot(w: vec4<u32>, c: XChunk) -> f32 {
  if (BITS == 8u) {
    return q8_word_dot(w.x, c.v0) + q8_word_dot(w.y, c.v1) + q8_word_dot(w.z, c.v2) + q8_word_dot(w.w, c.v3);
  }
  return q4_word_dot(w.x, c.v0, c.v1) + q4_word_dot(w.y, c.v2, c.v3) +
         q4_word_dot(w.z, c.v4, c.v5) + q4_word_dot(w.w, c.v6, c.v7);
}

// One step's loads for the four rows of a lane: packed weights of one chunk, with the group's scales
// and biases. `valid` is false past the end of the row (the loads then re-read its last chunk).
struct StepLoads {
  w0: vec4<u32>, w1: vec4<u32>, w2: vec4<u32>, w3: vec4<u32>,
  scale: vec4<f32>,
  bias: vec4<f32>,
  valid: bool,
}

fn load_step(rows: vec4<u32>, c: u32, first_chunk: u32, chunks_per_row: u32) -> StepLoads {
  let chunk = min(first_chunk + c, chunks_per_row - 1u);
  let groups = rows * (chunks_per_row * (128u / BITS) / GROUP_SIZE) + chunk * (128u / BITS) / GROUP_SIZE;
  return StepLoads(weight[rows.x * chunks_per_row + chunk], weight[rows.y * chunks_per_row + chunk],
                   weight[rows.z * chunks_per_row + chunk], weight[rows.w * chunks_per_row + chunk],
                   scales4(groups), biases4(groups), first_chunk + c < chunks_per_row && c < BLOCK_CHUNKS);
}

// This lane's share of rows first_row … first_row + 3 times every row b of x (element b of the result).
// Every thread of the workgroup calls it (it stages x with barriers).
fn gemv_partial_sums(first_row: u32, lane: u32, local: u32) -> array<vec4<f32>, MAX_BATCH> {
  let k = select(params.k, K, K != 0u);
  let chunks_per_row = k / (128u / BITS);
  // Rows past the end re-read the last row; their sums are never written.
  let rows = min(vec4<u32>(first_row) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.rows - 1u));
  var acc: array<vec4<f32>, MAX_BATCH>;
  let blocks = (chunks_per_row + BLOCK_CHUNKS - 1u) / BLOCK_CHUNKS;
  for (var block = 0u; block < blocks; block++) {
    let first_chunk = block * BLOCK_CHUNKS;
    // Trip counts are uniform (they depend on params only), which keeps the barriers in uniform control
    // flow; a short row or last block takes fewer steps.
    let block_chunks = min(BLOCK_CHUNKS, chunks_per_row - first_chunk);
    let steps = (block_chunks + THREADS_PER_ROW - 1u) / THREADS_PER_ROW;
    // Weights do not depend on x: the block's first loads go out before x is staged, and each step's
    // loads before the previous step's arithmetic, so memory is busy throughout.
    var next = load_step(rows, lane, first_chunk, chunks_per_row);
    workgroupBarrier();  // the previous block is no longer read
    stage_x_block(first_chunk, block_chunks, k, local);
    workgroupBarrier();
    for (var step = 0u; step < steps; step++) {
      let current = next;
      let c = step * THREADS_PER_ROW + lane;
      if (step + 1u < steps) { next = load_step(rows, c + THREADS_PER_ROW, first_chunk, chunks_per_row); }
      if (current.valid) {
        for (var b = 0u; b < BATCH; b++) {
          let xc = x_chunk(b, c);
          let dots = vec4<f32>(chunk_dot(current.w0, xc), chunk_dot(current.w1, xc),
                               chunk_dot(current.w2, xc), chunk_dot(current.w3, xc));
          // Σ (s·q + b)·x over the chunk = s·Σ q·x + b·Σ x.
          acc[b] += current.scale * dots + current.bias * xc.sum;
        }
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

// Sum one vec4 over a slot's lanes through workgroup memory (after shuffles over `width` lanes) and let
// lane 0 write it; every thread of the workgroup calls it.
fn reduce_and_write(sums: vec4<f32>, width: u32, local: u32, lane: u32, first_row: u32, b: u32) {
  partials[local] = sums;
  workgroupBarrier();
  if (lane == 0u) {
    var total = vec4<f32>(0.0);
    for (var l = 0u; l < THREADS_PER_ROW; l += width) { total += partials[local + l]; }
    write_rows(first_row, b, total);
  }
  workgroupBarrier();
}

fn slot_first_row(wg: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
  return ((wg.y * groups.x + wg.x) * (WORKGROUP_SIZE / THREADS_PER_ROW) + local / THREADS_PER_ROW) * 4u;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
//#if SUBGROUPS
        @builtin(subgroup_size) subgroup_size: u32,
//#endif
        @builtin(local_invocation_index) local: u32) {
  let lane = local % THREADS_PER_ROW;
  let first_row = slot_first_row(wg, groups, local);
  let acc = gemv_partial_sums(first_row, lane, local);
  var width = 1u;  // lanes whose sums each lane holds after the shuffles
//#if SUBGROUPS
  width = min(THREADS_PER_ROW, subgroup_size);
//#endif
  for (var b = 0u; b < BATCH; b++) {
    var sums = acc[b];
//#if SUBGROUPS
    for (var offset = 1u; offset < width; offset <<= 1u) { sums += subgroupShuffleXor(sums, offset); }
//#endif
    reduce_and_write(sums, width, local, lane, first_row, b);
  }
}

//#if SUBGROUPS
@compute @workgroup_size(WORKGROUP_SIZE)
fn gemv_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) local: u32) {
  let lane = local % THREADS_PER_ROW;
  let first_row = slot_first_row(wg, groups, local);
  let acc = gemv_partial_sums(first_row, lane, local);
  for (var b = 0u; b < BATCH; b++) {
    var sums = acc[b];
    for (var offset = 1u; offset < THREADS_PER_ROW; offset <<= 1u) { sums += subgroupShuffleXor(sums, offset); }
    if (lane == 0u) { write_rows(first_row, b, sums); }
  }
}
//#endif
