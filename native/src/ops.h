// The contract's tensor ops as MLX graphs. Shapes were checked on the JS side (which names them in
// its errors); these functions only build the graph, they never evaluate.
#pragma once

#include <cstdint>
#include <list>
#include <string>
#include <vector>

#include <mlx/array.h>

namespace agent_memory {

namespace mx = mlx::core;

// Keep in step with OP_CODES in backends/mlx/addon.ts.
enum class Op : int {
  Embedding = 0,
  EmbeddingQuantized = 1,
  Matmul = 2,
  MatmulQuantized = 3,
  RmsNorm = 4,
  Rope = 5,
  GeluTanh = 6,
  Silu = 7,
  Add = 8,
  Mul = 9,
  Scale = 10,
  Softmax = 11,
  Argmax = 12,
  TopK = 13,
  Reshape = 14,
  Slice = 15,
  Concat = 16,
  Transpose = 17,
  Copy = 18,
};

/** How many handles an op's results take. */
int outputCount(Op op);

/**
 * cos and sin of rope angles for recent (positions, frequencies) pairs: a layer rotates q and k with
 * the same positions, and every layer of a forward uses the same one or two rope configurations.
 */
class RopeAngles {
 public:
  std::pair<mx::array, mx::array> get(const mx::array& positions, const std::vector<uint64_t>& turns);

 private:
  struct Entry {
    mx::array positions;  // held so its id stays unique while it is a key
    std::vector<uint64_t> turns;
    mx::array cos;
    mx::array sin;
  };
  std::list<Entry> entries_;
};

std::vector<mx::array> runOp(
    Op op,
    const std::vector<mx::array>& inputs,
    const std::vector<double>& params,
    RopeAngles& ropeAngles);

/** f32 (or the integer dtype itself) of a tensor whose dtype may be 16-bit. */
mx::array asFloat32(const mx::array& x);

}  // namespace agent_memory
