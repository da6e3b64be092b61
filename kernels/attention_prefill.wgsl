// Scaled-dot-product attention for many query rows per sequence (prefill), over the paged KV cache
// read in place through each sequence's block table: causal, GQA, optional sliding window, online
// softmax in f32 (flash-attention 2). Same inputs, outputs, positions and partitions as
// attention.wgsl, which keeps the few-row (decode) case; with more than one partition the partial
// results go to attention_combine.wgsl.
//
// One workgroup owns BLOCK_M query vectors: `row_count` consecutive query rows of one sequence × the
// q heads of one head chunk of one kv head (vector v = row (v / heads), head (v % heads)). Their
// queries are read from `q` as they are needed (from the L1 cache), not kept in workgroup memory:
// an H200 runs two Dawn workgroups of 24 KiB per SM side by side but one of 26 KiB or more, and with
// its queries (16 KiB) there this kernel took 35–43 KiB, one workgroup of four warps per SM
// (bench/occupancy.ts, bench/attention.ts --occupancy). The keys are walked in tiles of
// TILE_KEYS = 4·KEY_THREADS positions, aligned to multiples of TILE_KEYS (and partitions to absolute
// positions), so a vector's result does not depend on which other rows share the dispatch. Per tile:
//   (1) scores: thread (tm, tn) owns vectors 4tm…4tm+3 × keys 4tn…4tn+3 of the tile, in registers,
//       scaled once the dot products are done.
//       Keys come through the staging buffer CHUNK_DIMS dimensions at a time, dequantized there
//       (f16 / 4- / 8-bit → f32), laid out [dim][key] so a thread reads its 4 keys as one vec4;
//   (2) online softmax: per-vector tile max by subgroup shuffles across the KEY_THREADS lanes of a
//       vector (SUBGROUP_MAX) or through workgroup memory, rescaling of the thread's Σ p share and its
//       output rows; p goes to `probabilities` [key][vector] (quads rotated: probability_column);
//   (3) Σ p·v: the same thread owns vectors 4tm…4tm+3 × 8 dimensions of the output, in registers:
//       the 4-dimension columns tn and tn + KEY_THREADS, so that the 8 lanes of a 128-bit read of the
//       staged values hit 8 different bank quads (columns 2tn, 2tn + 1 put two lanes on each: 5–8%
//       slower on an H200); values come through the staging buffer CHUNK_KEYS keys at a time,
//       [key][dim].
// In both loops each load's FMAs follow it (a query vector, then its 16 FMAs; a key's probabilities
// and its two value columns, then their 32): 1.04–1.08× faster on an H200 than issuing all of a
// step's loads first (bench/RESULTS.md; fewer registers live is the likely reason, not measured).
// Software pipelining: each thread loads the storage words of the next staging step (the next chunk,
// the tile's values, the next tile's keys) into registers right after the barrier that publishes the
// current one, so their latency overlaps the arithmetic; each thread finds its keys' rows in the block
// table itself. Two barriers per staging step (four per tile at headDim 64 with a 2048-float
// staging buffer, eight at 128 with 4096), two more for the tile max without subgroups.
// Σ p is summed across the KEY_THREADS threads of a vector once, at the end, in a fixed order.
//
// Bindings: 0 params,
//   1 q: array<vec4<f32>> [tokens, q_heads, HEAD_DIM / 4],
//   2 k_cache: array<u32>, one layer's keys (layout in kv_cache_write.wgsl), 3 v_cache: values,
//   4 batch: array<u32>: per sequence s at 4s: query_start, query_length, context_length, table_at
//     (the sequence's block table is batch[table_at …]); work items at items_at + 3i: sequence,
//     first row (within the sequence), row count,
//   5 out: array<f32> [tokens, q_heads, HEAD_DIM] (written when partitions == 1),
//   6 partials: array<f32> [tokens, q_heads, partitions, HEAD_DIM + 2]: Σ p·v, max score, Σ p
//     (written when partitions > 1).
// Workgroup: THREADS = (BLOCK_M / 4)·KEY_THREADS threads, KEY_THREADS = HEAD_DIM / 8 (thread tn owns
//   8 output dimensions); x = partition, y = work item, z = kv head · head_chunks + head chunk.

//#if SUBGROUPS
diagnostic(off, subgroup_uniformity);
//#endif

override STORAGE: u32;   // 0 f32, 1 f16, 2 quantized
override BITS: u32 = 8u; // quantized only
override HEAD_DIM: u32;  // a multiple of 8
override BLOCK_M: u32;   // query vectors per workgroup, a multiple of 4
override STAGE_VEC4S: u32; // staging buffer: ≥ TILE_KEYS·CHUNK_DIMS / 4 and ≥ CHUNK_KEYS·HEAD_DIM / 4
override CHUNK_DIMS: u32;  // key dimensions per staging step: a multiple of 4 dividing HEAD_DIM
override CHUNK_KEYS: u32;  // value rows per staging step: a multiple of 4 dividing TILE_KEYS
// true: the inner loops run to constant bounds, so a GPU compiler unrolls them; false, for lavapipe
// (Vulkan on the CPU), whose LLVM takes long over unrolled code: the same loops run to uniform bounds.
override UNROLL: bool = true;
// true (only where the file is built with SUBGROUPS and every subgroup spans KEY_THREADS lanes): the
// tile max of a vector is reduced across its KEY_THREADS lanes by shuffles, not through workgroup memory.
override SUBGROUP_MAX: bool = false;

override KEY_THREADS: u32 = HEAD_DIM / 8u;
override TILE_KEYS: u32 = 4u * KEY_THREADS;
override THREADS: u32 = BLOCK_M / 4u * KEY_THREADS;
override VECTOR_QUADS: u32 = BLOCK_M / 4u;
override GROUPS: u32 = select(0u, HEAD_DIM / 64u, STORAGE == 2u);
override ROW_WORDS: u32 = HEAD_DIM / select(select(32u / BITS, 2u, STORAGE == 1u), 1u, STORAGE == 0u);
// Units (one key or value row × 4 dimensions) per staging step, and per thread (≤ MAX_UNITS).
override KEY_UNITS: u32 = TILE_KEYS * CHUNK_DIMS / 4u;
override VALUE_UNITS: u32 = CHUNK_KEYS * HEAD_DIM / 4u;
override KEY_UNITS_PER_THREAD: u32 = (KEY_UNITS + THREADS - 1u) / THREADS;
override VALUE_UNITS_PER_THREAD: u32 = (VALUE_UNITS + THREADS - 1u) / THREADS;
const MAX_UNITS: u32 = 8u;
// Σ p·v of one vector in a thread: columns tn and tn + KEY_THREADS (4 dimensions each).
alias Output = array<vec4<f32>, 2>;

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
  chunk_dims: u32, // CHUNK_DIMS and CHUNK_KEYS again, as uniforms (see UNROLL)
  chunk_keys: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read> batch: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

// exp(score − max), [key][vector / 4] (the quads of a key rotated: probability_column).
var<workgroup> probabilities: array<vec4<f32>, BLOCK_M * TILE_KEYS / 4u>;
// Keys [dim][key / 4] of one chunk of dimensions, or values [key][dim / 4] of one chunk of keys.
var<workgroup> stage: array<vec4<f32>, STAGE_VEC4S>;

// The next staging step's storage words, loaded while the current step computes (software
// pipelining): per unit, the words of its 4 values (as many of x… as the format needs) and, quantized,
// its group's scale/bias word.
var<private> fetched: array<vec4<u32>, MAX_UNITS>;
var<private> fetched_group: array<u32, MAX_UNITS>;
// The work item's block table and kv head, and the end of its partition (set once at the start).
var<private> table_at: u32;
var<private> kv_head: u32;
var<private> partition_end: u32;

fn chunk_dims() -> u32 { return select(params.chunk_dims, CHUNK_DIMS, UNROLL); }
fn chunk_keys() -> u32 { return select(params.chunk_keys, CHUNK_KEYS, UNROLL); }

// Values first…first+3 of a row from its storage words and, quantized, its group's scale/bias word.
fn decode_four(words: vec4<u32>, group_word: u32, first: u32) -> vec4<f32> {
  if (STORAGE == 0u) { return bitcast<vec4<f32>>(words); }
  if (STORAGE == 1u) { return vec4<f32>(unpack2x16float(words.x), unpack2x16float(words.y)); }
  let shift = (first * BITS) % 32u;
  let mask = (1u << BITS) - 1u;
  let levels = (vec4<u32>(words.x) >> (vec4<u32>(shift) + vec4<u32>(0u, 1u, 2u, 3u) * BITS)) & vec4<u32>(mask);
  let scale_bias = unpack2x16float(group_word);
  return scale_bias.x * vec4<f32>(levels) + scale_bias.y;
}

fn cache_word(values: bool, index: u32) -> u32 {
  if (values) { return v_cache[index]; }
  return k_cache[index];
}

// Word offsets of key `key` of the tile: its row, and its scale/bias words in the head block. Keys
// past the partition read the tile's first key (any written row will do: p is 0 there).
fn key_words_at(tile_start: u32, key: u32) -> vec2<u32> {
  let position = select(tile_start, tile_start + key, tile_start + key < partition_end);
  let block = batch[table_at + position / params.block_size];
  let offset = position % params.block_size;
  let head_block = (block * params.kv_heads + kv_head) * params.block_size * (ROW_WORDS + GROUPS);
  return vec2<u32>(head_block + offset * ROW_WORDS, head_block + params.block_size * ROW_WORDS + offset * GROUPS);
}

// Issues the loads of values first…first+3 of a key (values: false) or value row (true) into unit i.
fn fetch_four(values: bool, at: vec2<u32>, first: u32, i: u32) {
  var words = vec4<u32>(0u);
  var group_word = 0u;
  if (STORAGE == 0u) {
    for (var j = 0u; j < 4u; j++) { words[j] = cache_word(values, at.x + first + j); }
  } else if (STORAGE == 1u) {
    words.x = cache_word(values, at.x + first / 2u);
    words.y = cache_word(values, at.x + first / 2u + 1u);
  } else {
    words.x = cache_word(values, at.x + first * BITS / 32u);
    group_word = cache_word(values, at.y + first / 64u);
  }
  fetched[i] = words;
  fetched_group[i] = group_word;
}

// Keys: unit = (key, 4 dimensions), adjacent threads on adjacent keys, so their stores into the
// [dim][key] layout land in different banks (on adjacent dimensions they would all share one).
fn fetch_keys(tile_start: u32, chunk_first: u32, local: u32) {
  for (var i = 0u; i < KEY_UNITS_PER_THREAD; i++) {
    let unit = local + i * THREADS;
    if (unit < KEY_UNITS) {
      fetch_four(false, key_words_at(tile_start, unit % TILE_KEYS), chunk_first + unit / TILE_KEYS * 4u, i);
    }
  }
}

fn stage_keys(chunk_first: u32, local: u32) {
  for (var i = 0u; i < KEY_UNITS_PER_THREAD; i++) {
    let unit = local + i * THREADS;
    if (unit < KEY_UNITS) {
      let key = unit % TILE_KEYS;
      let quad = unit / TILE_KEYS;
      let values = decode_four(fetched[i], fetched_group[i], chunk_first + quad * 4u);
      for (var j = 0u; j < 4u; j++) { stage[(quad * 4u + j) * (TILE_KEYS / 4u) + key / 4u][key % 4u] = values[j]; }
    }
  }
}

// Values: unit = (row, 4 dimensions), adjacent threads on adjacent dimensions of a row.
fn fetch_values(tile_start: u32, chunk_key: u32, local: u32) {
  for (var i = 0u; i < VALUE_UNITS_PER_THREAD; i++) {
    let unit = local + i * THREADS;
    if (unit < VALUE_UNITS) {
      let at = key_words_at(tile_start, chunk_key + unit / (HEAD_DIM / 4u));
      fetch_four(true, at, unit % (HEAD_DIM / 4u) * 4u, i);
    }
  }
}

fn stage_values(local: u32) {
  for (var i = 0u; i < VALUE_UNITS_PER_THREAD; i++) {
    let unit = local + i * THREADS;
    if (unit < VALUE_UNITS) { stage[unit] = decode_four(fetched[i], fetched_group[i], unit % (HEAD_DIM / 4u) * 4u); }
  }
}

// First key position a query at `position` may see.
fn window_start(position: u32) -> u32 {
  if (params.window == 0u || position < params.window) { return 0u; }
  return position - params.window + 1u;
}

fn max4(v: vec4<f32>) -> f32 { return max(max(v.x, v.y), max(v.z, v.w)); }
fn sum4(v: vec4<f32>) -> f32 { return (v.x + v.y) + (v.z + v.w); }

// Where vector quad tm's probabilities of the keys of key thread tn are in their rows of
// `probabilities`: rotated by tn, so that the 8 lanes of a 128-bit store (one tm, 8 key threads) write
// 8 different bank quads (unrotated, all eight hit one when VECTOR_QUADS is a multiple of 8: 2–5%
// slower on an H200).
fn probability_column(tm: u32, tn: u32) -> u32 {
  return (tm + tn) % VECTOR_QUADS;
}

// Per-thread values exchanged across the KEY_THREADS threads of a vector, [vector][key thread]: the
// tile's partial maxima (without SUBGROUP_MAX), and at the end the partial sums. They borrow the
// memory of `probabilities` (BLOCK_M · KEY_THREADS floats of its BLOCK_M · 4·KEY_THREADS), free at
// those points: a workgroup memory of its own cost as much as a quarter of the staging buffer.
fn exchanged(at: u32) -> f32 { return probabilities[at / 4u][at % 4u]; }

// A thread's value for each of its 4 vectors (quad tm) into the exchange.
fn publish(tm: u32, tn: u32, values: vec4<f32>) {
  let at = tm * 4u * KEY_THREADS + tn;
  for (var i = 0u; i < 4u; i++) {
    let slot = at + i * KEY_THREADS;
    probabilities[slot / 4u][slot % 4u] = values[i];
  }
}

// Each of a thread's 4 vectors' published values, from the KEY_THREADS threads of the vector.
fn gathered(tm: u32, t: u32) -> vec4<f32> {
  let at = tm * 4u * KEY_THREADS + t;
  return vec4<f32>(exchanged(at), exchanged(at + KEY_THREADS), exchanged(at + 2u * KEY_THREADS),
    exchanged(at + 3u * KEY_THREADS));
}

// The scores of a thread's 4 vectors: per vector, its 4 keys of the tile.
alias Scores = array<vec4<f32>, 4>;

// Max of each of a thread's 4 vectors' scores over the KEY_THREADS threads that share the vectors.
fn tile_max(tm: u32, tn: u32, s: Scores) -> vec4<f32> {
  var maxima = vec4<f32>(max4(s[0]), max4(s[1]), max4(s[2]), max4(s[3]));
//#if SUBGROUPS
  if (SUBGROUP_MAX) {
    for (var offset = 1u; offset < KEY_THREADS; offset <<= 1u) { maxima = max(maxima, subgroupShuffleXor(maxima, offset)); }
    return maxima;
  }
//#endif
  // The previous tile's Σ p·v ended with a barrier: `probabilities` is free until this tile's p.
  publish(tm, tn, maxima);
  workgroupBarrier();
  var result = vec4<f32>(NO_SCORE);
  for (var t = 0u; t < KEY_THREADS; t++) { result = max(result, gathered(tm, t)); }
  // Every thread has read the maxima before any writes its p over them.
  workgroupBarrier();
  return result;
}

@compute @workgroup_size(THREADS)
fn attend(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let partition_index = wg.x;
  let item_at = params.items_at + wg.y * 3u;
  let sequence_at = batch[item_at] * 4u;
  let first_row = batch[item_at + 1u];
  let row_count = batch[item_at + 2u];
  let query_start = batch[sequence_at];
  let query_length = batch[sequence_at + 1u];
  let context_length = batch[sequence_at + 2u];
  // Locals for the loop bounds (the uniformity analysis takes private variables as non-uniform),
  // copied to the private variables that the fetch functions read.
  let kv = wg.z / params.head_chunks;
  table_at = batch[sequence_at + 3u];
  kv_head = kv;
  let chunk = wg.z % params.head_chunks;
  let group_size = params.q_heads / params.kv_heads;
  let first_head = kv * group_size + chunk * params.heads_per_chunk;
  let heads = min(params.heads_per_chunk, group_size - chunk * params.heads_per_chunk);
  let vectors = row_count * heads;
  let tm = local / KEY_THREADS;
  let tn = local % KEY_THREADS;

  let first_position = context_length - query_length + first_row;
  let lowest = window_start(first_position);
  let partition_start = (lowest / params.partition_size + partition_index) * params.partition_size;
  let end = min(partition_start + params.partition_size, first_position + row_count);
  partition_end = end;
  let first_tile = max(partition_start, lowest / TILE_KEYS * TILE_KEYS);
  // The first tile's first keys are on their way while each thread finds its vectors' rows.
  if (first_tile < end) { fetch_keys(first_tile, 0u, local); }

  // Where this thread's 4 vectors start in `q`, in vec4s (vectors past `vectors` read the item's
  // first one: their scores are masked), and the keys each may see, [window_first, last] (empty past
  // `vectors`).
  var query_at: array<u32, 4>;
  var window_first: array<u32, 4>;
  var last: array<u32, 4>;
  var real: array<bool, 4>;
  for (var i = 0u; i < 4u; i++) {
    let vector = tm * 4u + i;
    let position = first_position + vector / max(heads, 1u);
    window_first[i] = window_start(position);
    last[i] = position;
    real[i] = vector < vectors;
    let own = select(0u, vector, vector < vectors);
    let query_row = query_start + first_row + own / max(heads, 1u);
    let query_head = first_head + own % max(heads, 1u);
    query_at[i] = (query_row * params.q_heads + query_head) * (HEAD_DIM / 4u);
  }
  // Running max of each of the 4 vectors (the same in the KEY_THREADS threads that share them), this
  // thread's share of Σ p, and per vector Σ p·v of its columns tn and tn + KEY_THREADS.
  var running_max = vec4<f32>(NO_SCORE);
  var own_sum = vec4<f32>(0.0);
  var o: array<Output, 4>;
  // Keys [interior_from, interior_to) are visible to every vector of the workgroup: from the last
  // row's window start, up to the first row's position and the partition's end. (Vectors past
  // `vectors` are not written, so what they see does not matter.)
  let interior_from = window_start(first_position + (max(vectors, 1u) - 1u) / max(heads, 1u));
  let interior_to = min(first_position + 1u, end);
  let dims_loop = chunk_dims();
  let keys_loop = chunk_keys();

  // Each staging step: the words fetched during the previous step go to `stage`, a barrier publishes
  // them, the loads of the next step (the next chunk, the tile's values, the next tile's keys) are
  // issued, and the arithmetic on `stage` runs while they travel; a second barrier frees `stage`.
  for (var tile_start = first_tile; tile_start < end; tile_start += TILE_KEYS) {
    // (1) Scores of 4 vectors × 4 keys, CHUNK_DIMS dimensions at a time. Zeroed explicitly: a `var`
    // declared in the loop without a value kept the last tile's scores on lavapipe.
    var s: Scores;
    for (var i = 0u; i < 4u; i++) { s[i] = vec4<f32>(0.0); }
    for (var chunk_first = 0u; chunk_first < HEAD_DIM; chunk_first += CHUNK_DIMS) {
      stage_keys(chunk_first, local);
      workgroupBarrier();
      if (chunk_first + CHUNK_DIMS < HEAD_DIM) {
        fetch_keys(tile_start, chunk_first + CHUNK_DIMS, local);
      } else {
        fetch_values(tile_start, 0u, local);
      }
      // Four dimensions per step: of the 4 keys, then of each vector, its FMAs right after its load
      // (3–4% faster on an H200 than the 4 vectors' loads first, then the FMAs).
      for (var d = 0u; d < dims_loop; d += 4u) {
        let q_at = (chunk_first + d) / 4u;
        let k_at = d * (TILE_KEYS / 4u) + tn;
        let ka = stage[k_at];
        let kb = stage[k_at + TILE_KEYS / 4u];
        let kc = stage[k_at + 2u * (TILE_KEYS / 4u)];
        let kd = stage[k_at + 3u * (TILE_KEYS / 4u)];
        for (var i = 0u; i < 4u; i++) {
          let qv = q[query_at[i] + q_at];
          s[i] += qv.x * ka + qv.y * kb + qv.z * kc + qv.w * kd;
        }
      }
      workgroupBarrier();
    }

    // (2) Scale, mask, tile max per vector, rescale, probabilities.
    for (var i = 0u; i < 4u; i++) { s[i] *= params.scale; }
    // Masks only where a key of the tile may be hidden from a vector (1.3–2.2% on an H200).
    if (tile_start < interior_from || tile_start + TILE_KEYS > interior_to) {
      let key_position = vec4<u32>(tile_start + tn * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
      let in_partition = key_position < vec4<u32>(end);
      for (var i = 0u; i < 4u; i++) {
        let visible = in_partition & (key_position >= vec4<u32>(window_first[i])) & (key_position <= vec4<u32>(last[i])) & vec4<bool>(real[i]);
        s[i] = select(vec4<f32>(NO_SCORE), s[i], visible);
      }
    }
    let new_max = max(running_max, tile_max(tm, tn, s));
    let correction = exp(running_max - new_max);
    running_max = new_max;
    let p0 = select(vec4<f32>(0.0), exp(s[0] - new_max.x), s[0] > vec4<f32>(NO_SCORE));
    let p1 = select(vec4<f32>(0.0), exp(s[1] - new_max.y), s[1] > vec4<f32>(NO_SCORE));
    let p2 = select(vec4<f32>(0.0), exp(s[2] - new_max.z), s[2] > vec4<f32>(NO_SCORE));
    let p3 = select(vec4<f32>(0.0), exp(s[3] - new_max.w), s[3] > vec4<f32>(NO_SCORE));
    own_sum = own_sum * correction + vec4<f32>(sum4(p0), sum4(p1), sum4(p2), sum4(p3));
    let p_at = tn * 4u * VECTOR_QUADS + probability_column(tm, tn);
    probabilities[p_at] = vec4<f32>(p0.x, p1.x, p2.x, p3.x);
    probabilities[p_at + VECTOR_QUADS] = vec4<f32>(p0.y, p1.y, p2.y, p3.y);
    probabilities[p_at + 2u * VECTOR_QUADS] = vec4<f32>(p0.z, p1.z, p2.z, p3.z);
    probabilities[p_at + 3u * VECTOR_QUADS] = vec4<f32>(p0.w, p1.w, p2.w, p3.w);
    for (var j = 0u; j < 2u; j++) {
      o[0][j] *= correction.x; o[1][j] *= correction.y; o[2][j] *= correction.z; o[3][j] *= correction.w;
    }

    // (3) Σ p·v, CHUNK_KEYS value rows at a time (the first barrier also publishes the probabilities).
    for (var chunk_key = 0u; chunk_key < TILE_KEYS; chunk_key += CHUNK_KEYS) {
      stage_values(local);
      workgroupBarrier();
      if (chunk_key + CHUNK_KEYS < TILE_KEYS) {
        fetch_values(tile_start, chunk_key + CHUNK_KEYS, local);
      } else if (tile_start + TILE_KEYS < end) {
        fetch_keys(tile_start + TILE_KEYS, 0u, local);
      }
      // Four value rows per step; per row, its probabilities, then its two value columns and their
      // FMAs (2–3% faster on an H200 than the 4 rows' probabilities and values loaded first).
      for (var k = 0u; k < keys_loop; k += 4u) {
        let p_at = (chunk_key + k) * VECTOR_QUADS + probability_column(tm, (chunk_key + k) / 4u);
        for (var r = 0u; r < 4u; r++) {
          let pr = probabilities[p_at + r * VECTOR_QUADS];
          let v_at = (k + r) * (HEAD_DIM / 4u) + tn;
          let v0 = stage[v_at];
          let v1 = stage[v_at + KEY_THREADS];
          o[0][0] += pr.x * v0; o[0][1] += pr.x * v1;
          o[1][0] += pr.y * v0; o[1][1] += pr.y * v1;
          o[2][0] += pr.z * v0; o[2][1] += pr.z * v1;
          o[3][0] += pr.w * v0; o[3][1] += pr.w * v1;
        }
      }
      workgroupBarrier();
    }
  }

  // Σ p of each vector across its KEY_THREADS threads, in a fixed order (the last Σ p·v step ended
  // with a barrier, so `probabilities` is free).
  publish(tm, tn, own_sum);
  workgroupBarrier();
  var total = vec4<f32>(0.0);
  for (var t = 0u; t < KEY_THREADS; t++) { total += gathered(tm, t); }
  for (var i = 0u; i < 4u; i++) {
    write_vector(tm * 4u + i, vectors, heads, query_start + first_row, first_head, partition_index, tn, o[i],
      running_max[i], total[i]);
  }
}

// The thread's columns of one vector: normalized into `out`, or as this partition's partial result.
fn write_vector(vector: u32, vectors: u32, heads: u32, first_token: u32, first_head: u32, partition_index: u32, tn: u32,
  o: Output, maximum: f32, sum: f32) {
  if (vector >= vectors) { return; }
  let query = (first_token + vector / heads) * params.q_heads + first_head + vector % heads;
  if (params.partitions == 1u) {
    let at = query * HEAD_DIM;
    for (var j = 0u; j < 2u; j++) {
      let d = (tn + j * KEY_THREADS) * 4u;
      for (var i = 0u; i < 4u; i++) { out[at + d + i] = select(0.0, o[j][i] / sum, sum > 0.0); }
    }
    return;
  }
  let at = (query * params.partitions + partition_index) * (HEAD_DIM + 2u);
  for (var j = 0u; j < 2u; j++) {
    let d = (tn + j * KEY_THREADS) * 4u;
    for (var i = 0u; i < 4u; i++) { partials[at + d + i] = o[j][i]; }
  }
  if (tn == 0u) {
    partials[at + HEAD_DIM] = maximum;
    partials[at + HEAD_DIM + 1u] = sum;
  }
}
