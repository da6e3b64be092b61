// Paged KV storage and attention over it. Each layer keeps its keys and values as token rows
// [blockCount · blockSize, kvHeads, …]: block b holds rows b·blockSize … (b+1)·blockSize − 1, so a slot
// (block · blockSize + offset) is a row index, a write is one scatter of rows and attention gathers a
// sequence's rows through its block table. Quantized storage keeps MLX's affine layout per row and
// kv head: uint32-packed values [.., headDim·bits/32], f16 scales and biases [.., headDim/64].
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>

namespace agent_memory {

namespace mx = mlx::core;

struct KvSpec {
  int layers;
  int kvHeads;
  int headDim;
  int blockSize;
  int blockCount;
  /** 0: f32, 1: f16, 2: quantized (bits 4 or 8, group 64). */
  int storage;
  int bits;
};

class KvStore {
 public:
  explicit KvStore(const KvSpec& spec);

  const KvSpec& spec() const { return spec_; }
  /** Store keys/values [T, kvHeads, headDim] (f32) of one layer at rows `slots` (u32 [T]). */
  void write(int layer, const mx::array& keys, const mx::array& values, const mx::array& slots);
  void copyBlocks(const std::vector<std::pair<int, int>>& pairs);
  /** Layer 0 keys, layer 0 values, layer 1 keys, …; each part's rows of the block as stored. */
  std::vector<uint8_t> exportBlock(int block);
  void importBlock(int block, const std::vector<uint8_t>& bytes);
  size_t bytesPerBlock() const;
  /** Keys and values of `layer` at token rows `rows` (int32 [n]) as f32 [n, kvHeads, headDim]. */
  std::pair<mx::array, mx::array> gather(int layer, const mx::array& rows) const;
  void collectPending(std::vector<mx::array>& out) const;
  /** A write whose inputs had failed leaves the cache unusable; attention and export report why. */
  void fail(const std::string& error) {
    if (error_.empty()) error_ = error;
  }
  const std::string& error() const { return error_; }

 private:
  /** The arrays of one layer's keys or values: one for float storage; packed, scales, biases when quantized. */
  using Parts = std::vector<mx::array>;
  std::vector<mx::array> encode(const mx::array& x) const;
  mx::array decode(const Parts& parts, const mx::array& rows) const;
  std::vector<mx::Shape> partShapes(int rows) const;
  std::vector<mx::Dtype> partDtypes() const;

  KvSpec spec_;
  std::vector<std::array<Parts, 2>> layers_;
  std::string error_;
};

struct AttentionSequence {
  int queryStart;
  int queryLength;
  int contextLength;
  std::vector<int> blockTable;
};

/**
 * One forward's ragged batch, prepared once and used by every layer. Sequences are grouped so each
 * group is one padded scaled_dot_product_attention: every decoding sequence (one query row) together,
 * each prefill chunk alone, so padding never multiplies a long prefill by the batch size.
 */
class AttentionBatch {
 public:
  explicit AttentionBatch(std::vector<AttentionSequence> sequences);

  mx::array attend(
      const mx::array& q,
      const KvStore& cache,
      int layer,
      float scale,
      int window);

 private:
  struct Group {
    std::vector<int> members;
    int maxQuery = 0;
    int maxContext = 0;
  };
  /** Index arrays of one group for one block size (the cache's), built on first use. */
  struct GroupIndices {
    mx::array queryRows;       // int32 [B·maxQuery]: rows of q, padded rows repeat the last
    mx::array keyRows;         // int32 [B·maxContext]: cache rows, padded keys read row 0
    mx::array queryPositions;  // int32 [B, 1, maxQuery, 1]
  };
  const std::vector<GroupIndices>& indicesFor(int blockSize);
  const std::vector<mx::array>& masksFor(int blockSize, int window);

  std::vector<AttentionSequence> sequences_;
  std::vector<Group> groups_;
  int totalQueries_ = 0;
  /** Flattened query row → row of the groups' concatenated outputs; empty when they coincide. */
  std::optional<mx::array> order_;
  std::map<int, std::vector<GroupIndices>> indices_;
  std::map<std::pair<int, int>, std::vector<mx::array>> masks_;
};

}  // namespace agent_memory
