// Scaled-dot-product attention for many query rows per sequence (prefill) on the GPU's matrix units
// (subgroup matrices: tensor cores on NVIDIA, through VK_KHR_cooperative_matrix), over an f16 paged
// KV cache read in place through each sequence's block table: causal, GQA, optional sliding window,
// online softmax in f32. Same inputs, outputs, positions and partitions as attention_prefill.wgsl,
// which keeps every other device, storage format and head size; with more than one partition the
// partial results go to attention_combine.wgsl.
//
// Precision: the products run on f16 operands with f32 sums, as flash-attention does on tensor cores.
// The queries (times the softmax scale) and the probabilities are rounded to f16; keys and values are
// f16 in the cache already. Scores, the softmax and the output sums stay f32.
//
// One workgroup owns BLOCK_M = 64 query vectors: `row_count` consecutive query rows of one sequence ×
// the q heads of one head chunk of one kv head (vector v = row (v / heads), head (v % heads)), in four
// subgroups of 32 lanes; subgroup g owns vectors 16g…16g+15, as the rows of its matrices. Its queries
// (HEAD_DIM / 16 left matrices) stay in registers from the start. Keys are walked in tiles of
// TILE_KEYS = 32 positions aligned to multiples of 32 (and partitions to absolute positions), so a
// vector's result does not depend on which other rows share the dispatch. Per tile:
//   (1) the tile's keys, loaded during the previous tile's Σ p·v, go to `stage` as f16 [key][dim];
//       the values' loads are issued; each subgroup multiplies its queries by the keys: 16 × 32
//       scores, stored to `scores` (f32);
//   (2) lanes 2r and 2r + 1 of a subgroup take its row r's scores (16 keys each): mask (only on a
//       tile the row does not see whole: its first, its last, a window's edge), tile max,
//       probabilities exp(score − reference) as f16 to `probs`, their sum. The reference is a row's
//       max, updated lazily: only when a tile's max exceeds it by more than RESCALE_MARGIN (so
//       probabilities stay ≤ e^8, well inside f16). Then the row's output and sum are scaled by
//       exp(old − new), the output through `scores` (a matrix's elements cannot be reached one by
//       one); a flag per subgroup makes that step workgroup-uniform (it holds barriers). After the
//       first tiles a row's max seldom moves that far. The values go to `stage`;
//   (3) the next tile's keys' loads are issued; each subgroup adds probabilities × values into its
//       HEAD_DIM / 16 output matrices.
// At the end the output goes through `scores` once more, divided by the row's sum (one partition) or
// written with the reference and the sum as the partition's partial result.
// Keys and values are staged in workgroup memory, not loaded as matrices from the cache: matrix loads
// from storage ran at a third of the speed on an H200 (bench/RESULTS.md, "Tensor cores").
// Tiles of 32 keys, not 64, keep the workgroup's memory at 19 KiB (headDim 64) and 23 KiB (128): the
// H200's driver gives a Vulkan compute shader ~50–64 KiB per SM, so tiles of 64 (36 and 44 KiB) ran
// one workgroup per SM, and tiles of 32 run two: 18–23% faster (RESULTS, "Bounds checks off").
//
// Bindings (as attention_prefill.wgsl, the cache as 16-byte words): 0 params,
//   1 q: array<vec4<f32>> [tokens, q_heads, HEAD_DIM / 4],
//   2 k_words: array<vec4<u32>>, one layer's keys (f16 layout of kv_cache_write.wgsl), 3 v_words: values,
//   4 batch: array<u32>: per sequence s at 4s: query_start, query_length, context_length, table_at
//     (the sequence's block table is batch[table_at …]); work items at items_at + 3i: sequence,
//     first row (within the sequence), row count,
//   5 out: array<f32> [tokens, q_heads, HEAD_DIM] (written when partitions == 1),
//   6 partials: array<f32> [tokens, q_heads, partitions, HEAD_DIM + 2]: Σ p·v, reference max, Σ p
//     (written when partitions > 1).
// Workgroup: 128 threads (four subgroups of exactly 32 lanes: the planner checks the device's subgroup
//   sizes); x = partition, y = work item, z = kv head · head_chunks + head chunk.

diagnostic(off, subgroup_uniformity);
diagnostic(off, chromium.subgroup_matrix_uniformity);

override HEAD_DIM: u32; // 64 or 128
override STORAGE: u32;  // must be 1 (f16): the planner sends no other format here
override BITS: u32 = 8u; // unused (the cache's constants are passed to every attention kernel)

const BLOCK_M: u32 = 64u;
const TILE_KEYS: u32 = 32u;
const THREADS: u32 = 128u;
// The matrix shape: M = N = K = 16, f16 operands, f32 results.
const MAT: u32 = 16u;
// Row strides of the workgroup arrays, padded by 16 bytes: rows of 256 or 128 bytes would start in the
// same memory bank, and a matrix load or store of 16 rows would hit it 8 ways.
override STAGE_STRIDE: u32 = HEAD_DIM + 8u;
const SCORE_STRIDE: u32 = TILE_KEYS + 4u;
const PROB_STRIDE: u32 = TILE_KEYS + 8u;
override DIM_TILES: u32 = HEAD_DIM / MAT;
// A row's reference max is raised when a tile's max passes it by more than this: exp(8) ≈ 2981.
const RESCALE_MARGIN: f32 = 8.0;
// Stands for −∞, which WGSL constants cannot hold; exp(NO_SCORE − real) is exactly 0.
const NO_SCORE: f32 = -3.0e38;

struct Params {
  q_heads: u32,
  kv_heads: u32,
  heads_per_chunk: u32,
  head_chunks: u32,
  block_size: u32,
  window: u32, // 0: no sliding window
  partition_size: u32,
  partitions: u32,
  items_at: u32,
  scale: f32,
  chunk_dims: u32, // unused here (attention_prefill.wgsl's)
  chunk_keys: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k_words: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> v_words: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> batch: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

// The queries, times the scale, as f16 [vector][dim], until each subgroup has its left matrices;
// then each tile's keys, then its values, [key][dim].
var<workgroup> stage: array<f16, TILE_KEYS * STAGE_STRIDE>;
// Scores [vector][key] of the tile; or a subgroup's output, 32 columns at a time [vector][column].
var<workgroup> scores: array<f32, BLOCK_M * SCORE_STRIDE>;
// exp(score − reference) [vector][key], the left operand of Σ p·v.
var<workgroup> probs: array<f16, BLOCK_M * PROB_STRIDE>;
// Per subgroup: whether one of its rows moved its reference this tile.
var<workgroup> rescale_flags: array<u32, 4>;

alias Left = subgroup_matrix_left<f16, 16, 16>;
alias Right = subgroup_matrix_right<f16, 16, 16>;
alias Result = subgroup_matrix_result<f32, 16, 16>;

// The work item's block table and kv head (set once at the start).
var<private> table_at: u32;
var<private> kv_head: u32;

// Where the row of `position` starts in the cache, in f16 elements (keys and values alike). A group
// of 16 keys starting at a multiple of 16 lies in one block (the planner checks that blocks hold a
// multiple of 16 tokens), so its 16 rows follow each other: one matrix load reads them.
fn row_at(position: u32) -> u32 {
  let block = batch[table_at + position / params.block_size];
  let offset = position % params.block_size;
  return ((block * params.kv_heads + kv_head) * params.block_size + offset) * HEAD_DIM;
}

// The subgroup's queries (left matrices over dimensions 16i…16i+15) and output (result matrices over
// the same dimensions), in structs with a field per matrix, not arrays: loops over arrays of matrices
// ran ~3× slower on an H200 (the compiler kept them in memory). Fields 4…7 serve headDim 128 only.
struct Queries { m0: Left, m1: Left, m2: Left, m3: Left, m4: Left, m5: Left, m6: Left, m7: Left }
struct Outputs { m0: Result, m1: Result, m2: Result, m3: Result, m4: Result, m5: Result, m6: Result, m7: Result }

fn query_tile(at: u32) -> Left { return subgroupMatrixLoad<Left, row_major>(&stage, at, STAGE_STRIDE); }
fn key_tile(at: u32) -> Right { return subgroupMatrixLoad<Right, col_major>(&stage, at, STAGE_STRIDE); }
fn value_tile(at: u32) -> Right { return subgroupMatrixLoad<Right, row_major>(&stage, at, STAGE_STRIDE); }

fn load_queries(at: u32) -> Queries {
  var q: Queries;
  q.m0 = query_tile(at);
  q.m1 = query_tile(at + 16u);
  q.m2 = query_tile(at + 32u);
  q.m3 = query_tile(at + 48u);
  if (DIM_TILES == 8u) {
    q.m4 = query_tile(at + 64u);
    q.m5 = query_tile(at + 80u);
    q.m6 = query_tile(at + 96u);
    q.m7 = query_tile(at + 112u);
  }
  return q;
}

// Scores of the subgroup's 16 vectors × the 16 keys whose rows start at `at` in the cache.
fn scores_of(q: ptr<function, Queries>, at: u32) -> Result {
  var sum = subgroupMatrixMultiply<f32>((*q).m0, key_tile(at));
  sum = subgroupMatrixMultiplyAccumulate((*q).m1, key_tile(at + 16u), sum);
  sum = subgroupMatrixMultiplyAccumulate((*q).m2, key_tile(at + 32u), sum);
  sum = subgroupMatrixMultiplyAccumulate((*q).m3, key_tile(at + 48u), sum);
  if (DIM_TILES == 8u) {
    sum = subgroupMatrixMultiplyAccumulate((*q).m4, key_tile(at + 64u), sum);
    sum = subgroupMatrixMultiplyAccumulate((*q).m5, key_tile(at + 80u), sum);
    sum = subgroupMatrixMultiplyAccumulate((*q).m6, key_tile(at + 96u), sum);
    sum = subgroupMatrixMultiplyAccumulate((*q).m7, key_tile(at + 112u), sum);
  }
  return sum;
}

// Output += p × the values of the 16 keys whose rows start at `at`.
fn add_values(o: ptr<function, Outputs>, p: Left, at: u32) {
  (*o).m0 = subgroupMatrixMultiplyAccumulate(p, value_tile(at), (*o).m0);
  (*o).m1 = subgroupMatrixMultiplyAccumulate(p, value_tile(at + 16u), (*o).m1);
  (*o).m2 = subgroupMatrixMultiplyAccumulate(p, value_tile(at + 32u), (*o).m2);
  (*o).m3 = subgroupMatrixMultiplyAccumulate(p, value_tile(at + 48u), (*o).m3);
  if (DIM_TILES == 8u) {
    (*o).m4 = subgroupMatrixMultiplyAccumulate(p, value_tile(at + 64u), (*o).m4);
    (*o).m5 = subgroupMatrixMultiplyAccumulate(p, value_tile(at + 80u), (*o).m5);
    (*o).m6 = subgroupMatrixMultiplyAccumulate(p, value_tile(at + 96u), (*o).m6);
    (*o).m7 = subgroupMatrixMultiplyAccumulate(p, value_tile(at + 112u), (*o).m7);
  }
}

// Output columns 32·part … 32·part + 31 to / from `scores` at `at` (row stride SCORE_STRIDE).
fn store_output(o: ptr<function, Outputs>, part: u32, at: u32) {
  switch part {
    case 0u: { subgroupMatrixStore<row_major>(&scores, at, (*o).m0, SCORE_STRIDE); subgroupMatrixStore<row_major>(&scores, at + 16u, (*o).m1, SCORE_STRIDE); }
    case 1u: { subgroupMatrixStore<row_major>(&scores, at, (*o).m2, SCORE_STRIDE); subgroupMatrixStore<row_major>(&scores, at + 16u, (*o).m3, SCORE_STRIDE); }
    case 2u: { subgroupMatrixStore<row_major>(&scores, at, (*o).m4, SCORE_STRIDE); subgroupMatrixStore<row_major>(&scores, at + 16u, (*o).m5, SCORE_STRIDE); }
    default: { subgroupMatrixStore<row_major>(&scores, at, (*o).m6, SCORE_STRIDE); subgroupMatrixStore<row_major>(&scores, at + 16u, (*o).m7, SCORE_STRIDE); }
  }
}

fn load_output(o: ptr<function, Outputs>, part: u32, at: u32) {
  switch part {
    case 0u: { (*o).m0 = subgroupMatrixLoad<Result, row_major>(&scores, at, SCORE_STRIDE); (*o).m1 = subgroupMatrixLoad<Result, row_major>(&scores, at + 16u, SCORE_STRIDE); }
    case 1u: { (*o).m2 = subgroupMatrixLoad<Result, row_major>(&scores, at, SCORE_STRIDE); (*o).m3 = subgroupMatrixLoad<Result, row_major>(&scores, at + 16u, SCORE_STRIDE); }
    case 2u: { (*o).m4 = subgroupMatrixLoad<Result, row_major>(&scores, at, SCORE_STRIDE); (*o).m5 = subgroupMatrixLoad<Result, row_major>(&scores, at + 16u, SCORE_STRIDE); }
    default: { (*o).m6 = subgroupMatrixLoad<Result, row_major>(&scores, at, SCORE_STRIDE); (*o).m7 = subgroupMatrixLoad<Result, row_major>(&scores, at + 16u, SCORE_STRIDE); }
  }
}

// The storage words of the next tile's keys or values, loaded ahead of their use (their latency
// overlaps the arithmetic): per thread, units of 8 values of a row.
const MAX_UNITS: u32 = 4u;
override UNITS: u32 = TILE_KEYS * HEAD_DIM / 8u / THREADS;
var<private> fetched: array<vec4<u32>, MAX_UNITS>;

// Loads the rows of the 2 groups of 16 keys that start at `group_at` (in f16 elements): each group's
// rows follow each other in the cache, so adjacent threads read adjacent 16 bytes.
fn fetch_tile(values: bool, group_at: array<u32, TILE_KEYS / MAT>, local: u32) {
  for (var i = 0u; i < UNITS; i++) {
    let unit = local + i * THREADS;
    let group = unit / (MAT * HEAD_DIM / 8u);
    let at = group_at[group] / 8u + unit % (MAT * HEAD_DIM / 8u);
    if (values) { fetched[i] = v_words[at]; } else { fetched[i] = k_words[at]; }
  }
}

// The fetched rows to `stage`, [key][dim]. At headDim 128 each lane writes its 4 words in an order
// rotated by (lane / 8) % 4, so that lanes 8 units apart (two rows of the padded stride) write
// different banks: 3–4% faster on an H200; at 64 (four rows) 8% slower, so not there (same-run A/B,
// bench/results/attention-h200-mma-ab.json).
override ROTATE_STORES: bool = HEAD_DIM == 128u;

fn stage_tile(local: u32) {
  let rotation = select(0u, local % 32u / 8u, ROTATE_STORES);
  for (var i = 0u; i < UNITS; i++) {
    let unit = local + i * THREADS;
    let key = unit / (HEAD_DIM / 8u);
    let to = key * STAGE_STRIDE + unit % (HEAD_DIM / 8u) * 8u;
    let words = fetched[i];
    for (var step = 0u; step < 4u; step++) {
      let j = (step + rotation) % 4u;
      // words[j] by selects, not by indexing the vector with a lane-varying j.
      let word = select(select(words.x, words.y, j == 1u), select(words.z, words.w, j == 3u), j >= 2u);
      let pair = bitcast<vec2<f16>>(word);
      stage[to + 2u * j] = pair.x;
      stage[to + 2u * j + 1u] = pair.y;
    }
  }
}

// Where each group of 16 keys of the tile at `tile_start` starts in the cache. A group at or past
// `end` reads the tile's first group instead (any written rows will do: their probabilities are 0,
// and never-written rows could hold anything, NaN included).
fn groups_of(tile_start: u32, end: u32) -> array<u32, TILE_KEYS / MAT> {
  var group_at: array<u32, TILE_KEYS / MAT>;
  for (var n = 0u; n < TILE_KEYS / MAT; n++) {
    let first = tile_start + n * MAT;
    group_at[n] = row_at(select(tile_start, first, first < end));
  }
  return group_at;
}

// First key position a query at `position` may see.
fn window_start(position: u32) -> u32 {
  if (params.window == 0u || position < params.window) { return 0u; }
  return position - params.window + 1u;
}

@compute @workgroup_size(THREADS)
fn attend(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
  @builtin(subgroup_id) subgroup: u32,
  @builtin(subgroup_invocation_id) lane: u32,
) {
  let partition_index = wg.x;
  let item_at = params.items_at + wg.y * 3u;
  let sequence_at = batch[item_at] * 4u;
  let first_row = batch[item_at + 1u];
  let row_count = batch[item_at + 2u];
  let query_start = batch[sequence_at];
  let query_length = batch[sequence_at + 1u];
  let context_length = batch[sequence_at + 2u];
  let kv = wg.z / params.head_chunks;
  table_at = batch[sequence_at + 3u];
  kv_head = kv;
  let chunk = wg.z % params.head_chunks;
  let group_size = params.q_heads / params.kv_heads;
  let first_head = kv * group_size + chunk * params.heads_per_chunk;
  let heads = max(min(params.heads_per_chunk, group_size - chunk * params.heads_per_chunk), 1u);
  let vectors = row_count * heads;

  let first_position = context_length - query_length + first_row;
  let lowest = window_start(first_position);
  let partition_start = (lowest / params.partition_size + partition_index) * params.partition_size;
  let end = min(partition_start + params.partition_size, first_position + row_count);
  let first_tile = max(partition_start, lowest / TILE_KEYS * TILE_KEYS);

  // The queries, times the scale, as f16 [vector][dim] (vectors past `vectors` are zeros): `stage`
  // holds TILE_KEYS rows, so the vectors go through it TILE_KEYS at a time.
  var queries: Queries;
  for (var first_vector = 0u; first_vector < BLOCK_M; first_vector += TILE_KEYS) {
    for (var unit = local; unit < TILE_KEYS * HEAD_DIM / 4u; unit += THREADS) {
      let staged = unit / (HEAD_DIM / 4u);
      let vector = first_vector + staged;
      let quad = unit % (HEAD_DIM / 4u);
      var value = vec4<f32>(0.0);
      if (vector < vectors) {
        let query_row = query_start + first_row + vector / heads;
        let query_head = first_head + vector % heads;
        value = q[(query_row * params.q_heads + query_head) * (HEAD_DIM / 4u) + quad] * params.scale;
      }
      let halves = vec4<f16>(value);
      for (var j = 0u; j < 4u; j++) { stage[staged * STAGE_STRIDE + quad * 4u + j] = halves[j]; }
    }
    workgroupBarrier();
    if (subgroup * MAT / TILE_KEYS == first_vector / TILE_KEYS) {
      queries = load_queries((subgroup * MAT - first_vector) * STAGE_STRIDE);
    }
    workgroupBarrier();
  }
  var output = Outputs(Result(), Result(), Result(), Result(), Result(), Result(), Result(), Result());

  // This lane's row of its subgroup's 16 (the vector it stands for) and half of the tile's keys.
  let row = lane / 2u;
  let half = lane % 2u;
  let vector = subgroup * MAT + row;
  let position = first_position + vector / heads;
  let window_first = window_start(position);
  let real = vector < vectors;
  // The row's reference max (the same in both of its lanes) and this lane's share of Σ p.
  var reference = NO_SCORE;
  var own_sum = 0.0;
  let score_row = vector * SCORE_STRIDE;
  let prob_row = vector * PROB_STRIDE;

  workgroupBarrier();
  if (first_tile < end) { fetch_tile(false, groups_of(first_tile, end), local); }
  for (var tile_start = first_tile; tile_start < end; tile_start += TILE_KEYS) {
    // (1) Scores of the subgroup's 16 vectors × the tile's 32 keys; the values' loads go out first.
    let group_at = groups_of(tile_start, end);
    stage_tile(local);
    workgroupBarrier();
    fetch_tile(true, group_at, local);
    for (var n = 0u; n < TILE_KEYS / MAT; n++) {
      subgroupMatrixStore<row_major>(&scores, subgroup * MAT * SCORE_STRIDE + n * MAT, scores_of(&queries, n * MAT * STAGE_STRIDE), SCORE_STRIDE);
    }
    // Every subgroup is done with the keys, and its scores are visible to all its lanes.
    workgroupBarrier();

    // (2) Probabilities.
    var tile_max = NO_SCORE;
    var s: array<f32, 16>;
    // The lanes of row r take their 16 keys starting at key r (mod 16): with the rows' stride of 36
    // words the 32 lanes of a read then hit 32 different banks (starting at the lane number instead
    // hit some twice: 2–3% slower on an H200, bench/results/attention-h200-ab-rowrot.json).
    // A tile the row sees whole (most of a long context) reads its scores without a mask per key:
    // 14–19% faster on an H200 than masking every tile (same-run A/B with tiles of 64 keys,
    // bench/results/attention-h200-ab-softmax.json).
    let whole = real && tile_start >= window_first && tile_start + TILE_KEYS <= min(end, position + 1u);
    if (whole) {
      for (var j = 0u; j < 16u; j++) {
        s[j] = scores[score_row + half * 16u + (j + row) % 16u];
        tile_max = max(tile_max, s[j]);
      }
    } else {
      for (var j = 0u; j < 16u; j++) {
        let key = half * 16u + (j + row) % 16u;
        let key_position = tile_start + key;
        let visible = real && key_position < end && key_position >= window_first && key_position <= position;
        s[j] = select(NO_SCORE, scores[score_row + key], visible);
        tile_max = max(tile_max, s[j]);
      }
    }
    tile_max = max(tile_max, subgroupShuffleXor(tile_max, 1u));
    var correction = 1.0;
    if (tile_max > reference + RESCALE_MARGIN) {
      correction = exp(reference - tile_max);
      reference = tile_max;
    }
    var tile_sum = 0.0;
    for (var j = 0u; j < 16u; j++) {
      let p = select(0.0, exp(s[j] - reference), s[j] > NO_SCORE);
      tile_sum += p;
      probs[prob_row + half * 16u + (j + row) % 16u] = f16(p);
    }
    own_sum = own_sum * correction + tile_sum;
    stage_tile(local);
    let moved = subgroupAny(correction != 1.0);
    if (lane == 0u) { rescale_flags[subgroup] = select(0u, 1u, moved); }
    let flags = workgroupUniformLoad(&rescale_flags);
    if (flags[0] + flags[1] + flags[2] + flags[3] != 0u) {
      // Scale the output rows by their correction, 32 columns at a time through `scores`.
      for (var part = 0u; part < DIM_TILES / 2u; part++) {
        store_output(&output, part, subgroup * MAT * SCORE_STRIDE);
        workgroupBarrier();
        for (var j = 0u; j < 16u; j++) { scores[score_row + half * 16u + (j + row) % 16u] *= correction; }
        workgroupBarrier();
        load_output(&output, part, subgroup * MAT * SCORE_STRIDE);
        workgroupBarrier();
      }
    }
    // The values and every subgroup's probabilities are in place. (workgroupUniformLoad above is a
    // barrier already; without this one the kernel ran the same on an H200.)
    workgroupBarrier();
    if (tile_start + TILE_KEYS < end) { fetch_tile(false, groups_of(tile_start + TILE_KEYS, end), local); }

    // (3) Σ p·v: the subgroup's 16 vectors × HEAD_DIM, over the tile's 32 keys.
    for (var k = 0u; k < TILE_KEYS / MAT; k++) {
      add_values(&output, subgroupMatrixLoad<Left, row_major>(&probs, subgroup * MAT * PROB_STRIDE + k * MAT, PROB_STRIDE), k * MAT * STAGE_STRIDE);
    }
    // Every subgroup is done with the values before the next tile's keys replace them.
    workgroupBarrier();
  }

  // The output, through `scores` 32 columns at a time: divided by Σ p, or as the partition's partials.
  let total = own_sum + subgroupShuffleXor(own_sum, 1u);
  let query_row = query_start + first_row + vector / heads;
  let query_head = first_head + vector % heads;
  let query = query_row * params.q_heads + query_head;
  let partial_at = (query * params.partitions + partition_index) * (HEAD_DIM + 2u);
  for (var part = 0u; part < DIM_TILES / 2u; part++) {
    store_output(&output, part, subgroup * MAT * SCORE_STRIDE);
    workgroupBarrier();
    if (real) {
      for (var j = 0u; j < 16u; j++) {
        let column = half * 16u + (j + row) % 16u;
        let value = scores[score_row + column];
        let dim = part * 32u + column;
        if (params.partitions == 1u) {
          out[query * HEAD_DIM + dim] = select(0.0, value / total, total > 0.0);
        } else {
          partials[partial_at + dim] = value;
        }
      }
    }
    workgroupBarrier();
  }
  if (real && params.partitions > 1u && half == 0u) {
    partials[partial_at + HEAD_DIM] = reference;
    partials[partial_at + HEAD_DIM + 1u] = total;
  }
}
