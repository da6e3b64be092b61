// Scaled-dot-product attention of a ragged batch over the paged KV cache, read in place through each
// sequence's block table: causal, GQA, optional sliding window, online softmax in f32. Long contexts
// are split into partitions of `partition_size` keys handled by separate workgroups (flash-decoding);
// with more than one partition each writes an unnormalized partial result that
// attention_combine.wgsl merges.
//
// One workgroup computes MAX_VECTORS or fewer query vectors: `row_count` consecutive query rows of
// one sequence × the q heads of one head chunk, all sharing one kv head, so each key and value read
// from the cache serves all of them. Positions: row i of a sequence sits at
// context_length − query_length + i and sees keys at positions ≤ its own (and > position − window).
// Partitions are aligned to absolute positions, and tiles to multiples of TILE, so a vector's result
// does not depend on which other rows or sequences share the dispatch.
//
// Per tile of TILE = 128 keys: (1) thread t reads key t's row straight from the cache and scores it
// against every vector; (2) a tree reduction gives each vector's tile max, every thread rescales its
// own share of the running sum; (3) thread t owns storage word t % ROW_WORDS of the value rows (all
// vectors, in registers) for keys ≡ subset (mod SUBSETS). Subsets are summed once, at the end.
//
// Bindings: 0 params,
//   1 q: array<f32> [tokens, q_heads, HEAD_DIM],
//   2 k_cache: array<u32>, one layer's keys (layout in kv_cache_write.wgsl), 3 v_cache: values,
//   4 batch: array<u32>: per sequence s at 4s: query_start, query_length, context_length, table_at
//     (the sequence's block table is batch[table_at …]); work items at items_at + 3i: sequence,
//     first row (within the sequence), row count,
//   5 out: array<f32> [tokens, q_heads, HEAD_DIM] (written when partitions == 1),
//   6 partials: array<f32> [tokens, q_heads, partitions, HEAD_DIM + 2]: Σ p·v, max score, Σ p
//     (written when partitions > 1).
// Workgroup: 128 threads; x = partition, y = work item, z = kv head · head_chunks + head chunk.

override STORAGE: u32;   // 0 f32, 1 f16, 2 quantized
override BITS: u32 = 8u; // quantized only
override HEAD_DIM: u32;
override MAX_VECTORS: u32; // query vectors per workgroup, ≤ 16; MAX_VECTORS·WORDS_PER_THREAD·VALUES_PER_WORD ≤ 64

override VALUES_PER_WORD: u32 = select(select(32u / BITS, 2u, STORAGE == 1u), 1u, STORAGE == 0u);
override ROW_WORDS: u32 = HEAD_DIM / VALUES_PER_WORD;
override GROUPS: u32 = select(0u, HEAD_DIM / 64u, STORAGE == 2u);
// Phase 3: value words per pass of the workgroup, key subsets, and words each thread owns.
override LANE_WORDS: u32 = min(ROW_WORDS, WORKGROUP);
override SUBSETS: u32 = WORKGROUP / LANE_WORDS;
override WORDS_PER_THREAD: u32 = (ROW_WORDS + WORKGROUP - 1u) / WORKGROUP;
// true: loops over vectors and values have constant trip counts, so a GPU compiler may unroll them
// and keep the per-vector arrays in registers (on an H200 through Dawn it times the same either way:
// the arrays appear to stay in local memory). false, for lavapipe (Vulkan on the CPU), whose LLVM
// takes minutes over the unrolled code: the same loops run to uniform bounds.
override UNROLL: bool = true;
override PROBABILITY_FLOATS: u32 = MAX_VECTORS * max(TILE, HEAD_DIM);

const WORKGROUP: u32 = 128u;
const TILE: u32 = 128u; // keys per tile: one per thread
const MAX_OWN_VECTORS: u32 = 16u;
const MAX_ACCUMULATORS: u32 = 64u;
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
  // ROW_WORDS again, as a uniform: a loop bounded by it is not unrolled, which keeps pipeline creation
  // on lavapipe (Vulkan on the CPU) from taking tens of seconds.
  row_words: u32,
  max_vectors: u32,     // MAX_VECTORS, as a uniform (see UNROLL)
  values_per_word: u32, // VALUES_PER_WORD, likewise
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read> batch: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

var<workgroup> query_tile: array<f32, MAX_VECTORS * HEAD_DIM>;
// Scores for the max, then the sums, tree-reduced: [vector, key].
var<workgroup> reduction: array<f32, MAX_VECTORS * TILE>;
// exp(score − max) per [vector, key]; at the end, one key subset's Σ p·v per [vector, dim].
var<workgroup> probabilities: array<f32, PROBABILITY_FLOATS>;
// Word offsets of each key's value row and of its scale/bias words in the head block.
var<workgroup> row_at: array<u32, TILE>;
var<workgroup> groups_at: array<u32, TILE>;

fn vector_bound() -> u32 { return select(params.max_vectors, MAX_VECTORS, UNROLL); }
fn value_bound() -> u32 { return select(params.values_per_word, VALUES_PER_WORD, UNROLL); }

// The `index`-th value of a storage word (and, quantized, its group's scale/bias word).
fn decode(word: u32, group_word: u32, index: u32) -> f32 {
  if (STORAGE == 0u) { return bitcast<f32>(word); }
  if (STORAGE == 1u) { return unpack2x16float(word)[index]; }
  let scale_bias = unpack2x16float(group_word);
  return scale_bias.x * f32((word >> (index * BITS)) & ((1u << BITS) - 1u)) + scale_bias.y;
}

// First key position a query at `position` may see.
fn window_start(position: u32) -> u32 {
  if (params.window == 0u || position < params.window) { return 0u; }
  return position - params.window + 1u;
}

// Tree reduction over the keys of every vector's row of `reduction`; the result lands at key 0.
fn reduce_keys(local: u32, maximum: bool) {
  let vector_loop = vector_bound();
  for (var stride = TILE / 2u; stride > 0u; stride >>= 1u) {
    if (local < stride) {
      for (var v = 0u; v < vector_loop; v++) {
        let a = reduction[v * TILE + local];
        let b = reduction[v * TILE + local + stride];
        reduction[v * TILE + local] = select(a + b, max(a, b), maximum);
      }
    }
    workgroupBarrier();
  }
}

@compute @workgroup_size(128)
fn attend(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let vector_loop = vector_bound();
  let value_loop = value_bound();
  let partition_index = wg.x;
  let item_at = params.items_at + wg.y * 3u;
  let sequence_at = batch[item_at] * 4u;
  let first_row = batch[item_at + 1u];
  let row_count = batch[item_at + 2u];
  let query_start = batch[sequence_at];
  let query_length = batch[sequence_at + 1u];
  let context_length = batch[sequence_at + 2u];
  let table_at = batch[sequence_at + 3u];
  let kv_head = wg.z / params.head_chunks;
  let chunk = wg.z % params.head_chunks;
  let group_size = params.q_heads / params.kv_heads;
  let first_head = kv_head * group_size + chunk * params.heads_per_chunk;
  let heads = min(params.heads_per_chunk, group_size - chunk * params.heads_per_chunk);
  let vectors = row_count * heads;
  let head_block_words = params.block_size * (ROW_WORDS + GROUPS);

  let first_position = context_length - query_length + first_row;
  let lowest = window_start(first_position);
  let partition_start = (lowest / params.partition_size + partition_index) * params.partition_size;
  let partition_end = min(partition_start + params.partition_size, first_position + row_count);

  for (var index = local; index < vectors * HEAD_DIM; index += WORKGROUP) {
    let vector = index / HEAD_DIM;
    let row = query_start + first_row + vector / heads;
    let head = first_head + vector % heads;
    query_tile[index] = q[(row * params.q_heads + head) * HEAD_DIM + index % HEAD_DIM] * params.scale;
  }
  // Every thread keeps each vector's running max (the same in all threads) and its own keys' share
  // of the running sum; a thread's value words accumulate Σ p·v for every vector.
  var running_max: array<f32, MAX_OWN_VECTORS>;
  var own_sum: array<f32, MAX_OWN_VECTORS>;
  var scores: array<f32, MAX_OWN_VECTORS>;
  var accumulators: array<f32, MAX_ACCUMULATORS>;
  for (var v = 0u; v < vector_loop; v++) {
    running_max[v] = NO_SCORE;
    own_sum[v] = 0.0;
  }
  for (var a = 0u; a < WORDS_PER_THREAD * vector_loop * value_loop; a++) { accumulators[a] = 0.0; }
  let lane_word = local % LANE_WORDS;
  let subset = local / LANE_WORDS;
  workgroupBarrier();

  for (var tile_start = max(partition_start, lowest / TILE * TILE); tile_start < partition_end; tile_start += TILE) {
    let tile_keys = min(TILE, partition_end - tile_start);
    // (1) Key `local` of the tile against every vector.
    let position = tile_start + local;
    for (var v = 0u; v < vector_loop; v++) { scores[v] = 0.0; }
    if (local < tile_keys) {
      let block = batch[table_at + position / params.block_size];
      let offset = position % params.block_size;
      let head_block = (block * params.kv_heads + kv_head) * head_block_words;
      let row = head_block + offset * ROW_WORDS;
      let groups = head_block + params.block_size * ROW_WORDS + offset * GROUPS;
      row_at[local] = row;
      groups_at[local] = groups;
      // Four words per step, loaded before they are used, so their latencies overlap.
      for (var w = 0u; w < params.row_words; w += 4u) {
        let words = vec4<u32>(k_cache[row + w], k_cache[row + w + 1u], k_cache[row + w + 2u], k_cache[row + w + 3u]);
        var group_word = 0u;
        if (STORAGE == 2u) { group_word = k_cache[groups + w * VALUES_PER_WORD / 64u]; }
        for (var j = 0u; j < 4u; j++) {
          for (var u = 0u; u < value_loop; u++) {
            let key_value = decode(words[j], group_word, u);
            let d = (w + j) * VALUES_PER_WORD + u;
            for (var v = 0u; v < vector_loop; v++) { scores[v] += query_tile[v * HEAD_DIM + d] * key_value; }
          }
        }
      }
    }
    for (var v = 0u; v < vector_loop; v++) {
      let vector_position = first_position + v / max(heads, 1u);
      let visible = local < tile_keys && v < vectors && position >= window_start(vector_position) &&
        position <= vector_position;
      scores[v] = select(NO_SCORE, scores[v], visible);
      reduction[v * TILE + local] = scores[v];
    }
    workgroupBarrier();

    // (2) Tile max per vector; rescale what was summed so far.
    reduce_keys(local, true);
    var correction: array<f32, MAX_OWN_VECTORS>;
    for (var v = 0u; v < vector_loop; v++) {
      let new_max = max(running_max[v], reduction[v * TILE]);
      correction[v] = exp(running_max[v] - new_max);
      running_max[v] = new_max;
      var p = 0.0;
      if (scores[v] > NO_SCORE) { p = exp(scores[v] - new_max); }
      probabilities[v * TILE + local] = p;
      own_sum[v] = own_sum[v] * correction[v] + p;
    }
    workgroupBarrier();

    // (3) Σ p·v over this thread's subset of keys, for its value words.
    for (var i = 0u; i < WORDS_PER_THREAD; i++) {
      for (var v = 0u; v < vector_loop; v++) {
        for (var u = 0u; u < value_loop; u++) {
          accumulators[(i * MAX_VECTORS + v) * VALUES_PER_WORD + u] *= correction[v];
        }
      }
    }
    if (subset < SUBSETS) {
      // Four keys per step, their words loaded first; keys past the tile read as 0 with p = 0.
      for (var key = subset; key < tile_keys; key += 4u * SUBSETS) {
        for (var i = 0u; i < WORDS_PER_THREAD; i++) {
          let w = lane_word + i * LANE_WORDS;
          if (w >= ROW_WORDS) { break; }
          var words = vec4<u32>(0u);
          var group_words = vec4<u32>(0u);
          for (var j = 0u; j < 4u; j++) {
            let this_key = min(key + j * SUBSETS, TILE - 1u);
            if (key + j * SUBSETS < tile_keys) {
              words[j] = v_cache[row_at[this_key] + w];
              if (STORAGE == 2u) { group_words[j] = v_cache[groups_at[this_key] + w * VALUES_PER_WORD / 64u]; }
            }
          }
          for (var j = 0u; j < 4u; j++) {
            let this_key = min(key + j * SUBSETS, TILE - 1u);
            for (var u = 0u; u < value_loop; u++) {
              let value = decode(words[j], group_words[j], u);
              for (var v = 0u; v < vector_loop; v++) {
                let a = (i * MAX_VECTORS + v) * VALUES_PER_WORD + u;
                accumulators[a] += probabilities[v * TILE + this_key] * value;
              }
            }
          }
        }
      }
    }
    workgroupBarrier();
  }

  // Totals: the running sums across threads, then Σ p·v across key subsets, in a fixed order.
  for (var v = 0u; v < vector_loop; v++) { reduction[v * TILE + local] = own_sum[v]; }
  workgroupBarrier();
  reduce_keys(local, false);
  for (var source = 1u; source < SUBSETS; source++) {
    if (subset == source) { store_accumulators(lane_word, &accumulators); }
    workgroupBarrier();
    if (subset == 0u) { add_accumulators(lane_word, &accumulators); }
    workgroupBarrier();
  }
  if (subset != 0u) { return; }
  for (var i = 0u; i < WORDS_PER_THREAD; i++) {
    let w = lane_word + i * LANE_WORDS;
    if (w >= ROW_WORDS) { break; }
    for (var v = 0u; v < vector_loop; v++) {
      if (v >= vectors) { break; }
      let query = (query_start + first_row + v / heads) * params.q_heads + first_head + v % heads;
      let sum = reduction[v * TILE];
      let at = (query * params.partitions + partition_index) * (HEAD_DIM + 2u);
      for (var u = 0u; u < value_loop; u++) {
        let d = w * VALUES_PER_WORD + u;
        let accumulated = accumulators[(i * MAX_VECTORS + v) * VALUES_PER_WORD + u];
        if (params.partitions == 1u) {
          out[query * HEAD_DIM + d] = select(0.0, accumulated / sum, sum > 0.0);
        } else {
          partials[at + d] = accumulated;
        }
      }
      if (params.partitions > 1u && w == 0u) {
        partials[at + HEAD_DIM] = running_max[v];
        partials[at + HEAD_DIM + 1u] = sum;
      }
    }
  }
}

fn store_accumulators(lane_word: u32, accumulators: ptr<function, array<f32, MAX_ACCUMULATORS>>) {
  let vector_loop = vector_bound();
  let value_loop = value_bound();
  for (var i = 0u; i < WORDS_PER_THREAD; i++) {
    let w = lane_word + i * LANE_WORDS;
    if (w >= ROW_WORDS) { break; }
    for (var v = 0u; v < vector_loop; v++) {
      for (var u = 0u; u < value_loop; u++) {
        probabilities[v * HEAD_DIM + w * VALUES_PER_WORD + u] = (*accumulators)[(i * MAX_VECTORS + v) * VALUES_PER_WORD + u];
      }
    }
  }
}

fn add_accumulators(lane_word: u32, accumulators: ptr<function, array<f32, MAX_ACCUMULATORS>>) {
  let vector_loop = vector_bound();
  let value_loop = value_bound();
  for (var i = 0u; i < WORDS_PER_THREAD; i++) {
    let w = lane_word + i * LANE_WORDS;
    if (w >= ROW_WORDS) { break; }
    for (var v = 0u; v < vector_loop; v++) {
      for (var u = 0u; u < value_loop; u++) {
        (*accumulators)[(i * MAX_VECTORS + v) * VALUES_PER_WORD + u] += probabilities[v * HEAD_DIM + w * VALUES_PER_WORD + u];
      }
    }
  }
}
