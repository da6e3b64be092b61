// Merge the per-partition results of split attention (attention.wgsl, attention_prefill.wgsl:
// flash-decoding): with m_p the max score, l_p the sum of exp(score − m_p) and a_p = Σ exp(score −
// m_p)·v of partition p, the output is Σ_p exp(m_p − M)·a_p / Σ_p exp(m_p − M)·l_p with M = max_p
// m_p. Empty partitions hold m_p = −3e38, l_p = 0, a_p = 0 and add exactly nothing.
//
// One pass over the partitions in order, rescaling what was summed whenever the max grows (as the
// attention kernels do over keys), four partitions per step with their reads issued together: a
// decode step at 32K tokens of context has 128 partitions, and a loop that waits for each read in
// turn took longer than the attention itself.
//
// Bindings: 0 params, 1 partials: array<f32> [tokens, q_heads, partitions, head_dim + 2] (a_p, then m_p
//   and l_p), 2 out: array<f32> [tokens, q_heads, head_dim].
// Workgroup: 128 threads, one per dimension (several when head_dim > 128), for one query vector:
//   x = q head, y = token.

struct Params {
  q_heads: u32,
  head_dim: u32,
  partitions: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const NO_SCORE: f32 = -3.0e38;

@compute @workgroup_size(128)
fn combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let query = wg.y * params.q_heads + wg.x;
  let stride = params.head_dim + 2u;
  let first = query * params.partitions * stride;
  let stats = params.head_dim;
  for (var d = local; d < params.head_dim; d += 128u) {
    var best = NO_SCORE;
    var total = 0.0;
    var sum = 0.0;
    var p = 0u;
    for (; p + 4u <= params.partitions; p += 4u) {
      let at = vec4<u32>(first + p * stride) + vec4<u32>(0u, 1u, 2u, 3u) * stride;
      let maxima = vec4<f32>(partials[at.x + stats], partials[at.y + stats], partials[at.z + stats],
        partials[at.w + stats]);
      let sums = vec4<f32>(partials[at.x + stats + 1u], partials[at.y + stats + 1u],
        partials[at.z + stats + 1u], partials[at.w + stats + 1u]);
      let values = vec4<f32>(partials[at.x + d], partials[at.y + d], partials[at.z + d], partials[at.w + d]);
      let new_best = max(best, max(max(maxima.x, maxima.y), max(maxima.z, maxima.w)));
      let rescale = exp(best - new_best);
      let weights = exp(maxima - new_best);
      total = total * rescale + dot(sums, weights);
      sum = sum * rescale + dot(values, weights);
      best = new_best;
    }
    for (; p < params.partitions; p++) {
      let at = first + p * stride;
      let new_best = max(best, partials[at + stats]);
      let rescale = exp(best - new_best);
      let weight = exp(partials[at + stats] - new_best);
      total = total * rescale + partials[at + stats + 1u] * weight;
      sum = sum * rescale + partials[at + d] * weight;
      best = new_best;
    }
    out[query * params.head_dim + d] = select(0.0, sum / total, total > 0.0);
  }
}
