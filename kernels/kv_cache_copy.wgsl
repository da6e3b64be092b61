// Copy one whole block of one layer of the paged KV cache (keys and values), e.g. before a sequence
// writes into a block another sequence shares. A kernel rather than copyBufferToBuffer, which may not
// copy within one buffer.
//
// Bindings: 0 params, 1 k_cache: array<u32> [block_count, block_words] (layout in
//   kv_cache_write.wgsl), 2 v_cache: same.
// Workgroup: 256 threads, one word each: x = 256-word chunk of the block.

struct Params {
  block_words: u32, // words of one block in one layer's key (or value) buffer
  source: u32,      // block to copy from
  destination: u32, // block to copy to (never the source)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(2) var<storage, read_write> v_cache: array<u32>;

@compute @workgroup_size(256)
fn copy_block(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let word = wg.x * 256u + local;
  if (word >= params.block_words) { return; }
  let source = params.source * params.block_words + word;
  let destination = params.destination * params.block_words + word;
  k_cache[destination] = k_cache[source];
  v_cache[destination] = v_cache[source];
}
