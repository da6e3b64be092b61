#include "kv_cache.h"

#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>

#include <mlx/fast.h>
#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ops.h"

namespace agent_memory {

namespace {

constexpr int kGroup = 64;

size_t bytesOf(const mx::Shape& shape, mx::Dtype dtype) {
  size_t count = 1;
  for (int dim : shape) count *= static_cast<size_t>(dim);
  return count * dtype.size();
}

}  // namespace

KvStore::KvStore(const KvSpec& spec) : spec_(spec) {
  const int rows = spec.blockCount * spec.blockSize;
  auto shapes = partShapes(rows);
  auto dtypes = partDtypes();
  std::vector<mx::array> all;
  for (int layer = 0; layer < spec.layers; layer++) {
    std::array<Parts, 2> kv;
    for (auto& parts : kv) {
      for (size_t i = 0; i < shapes.size(); i++) parts.push_back(mx::zeros(shapes[i], dtypes[i]));
      all.insert(all.end(), parts.begin(), parts.end());
    }
    layers_.push_back(std::move(kv));
  }
  mx::eval(all);
}

std::vector<mx::Shape> KvStore::partShapes(int rows) const {
  if (spec_.storage != 2) return {{rows, spec_.kvHeads, spec_.headDim}};
  return {
      {rows, spec_.kvHeads, spec_.headDim * spec_.bits / 32},
      {rows, spec_.kvHeads, spec_.headDim / kGroup},
      {rows, spec_.kvHeads, spec_.headDim / kGroup}};
}

std::vector<mx::Dtype> KvStore::partDtypes() const {
  switch (spec_.storage) {
    case 0:
      return {mx::float32};
    case 1:
      return {mx::float16};
    default:
      return {mx::uint32, mx::float16, mx::float16};
  }
}

size_t KvStore::bytesPerBlock() const {
  size_t bytes = 0;
  auto dtypes = partDtypes();
  auto shapes = partShapes(spec_.blockSize);
  for (size_t i = 0; i < shapes.size(); i++) bytes += bytesOf(shapes[i], dtypes[i]);
  return bytes * 2 * spec_.layers;
}

/**
 * The stored form of f32 rows [T, kvHeads, headDim], as the contract defines affine quantization:
 * per group of 64 values scale = (max − min)/(2^bits − 1) and bias = min, both rounded to f16, then
 * q = round((x − bias)/scale) (ties to even) clamped to the levels, packed low bits first.
 */
std::vector<mx::array> KvStore::encode(const mx::array& x) const {
  if (spec_.storage == 0) return {mx::astype(x, mx::float32)};
  if (spec_.storage == 1) return {mx::astype(x, mx::float16)};
  const int tokens = x.shape(0);
  const int heads = spec_.kvHeads;
  const int groups = spec_.headDim / kGroup;
  const float top = static_cast<float>((1 << spec_.bits) - 1);
  auto grouped = mx::reshape(x, {tokens, heads, groups, kGroup});
  auto low = mx::min(grouped, -1, true);
  auto high = mx::max(grouped, -1, true);
  auto scales = mx::astype(mx::divide(mx::subtract(high, low), mx::array(top)), mx::float16);
  auto biases = mx::astype(low, mx::float16);
  auto scale = mx::astype(scales, mx::float32);
  auto bias = mx::astype(biases, mx::float32);
  auto levels = mx::clip(mx::round(mx::divide(mx::subtract(grouped, bias), scale)), mx::array(0.0f), mx::array(top));
  levels = mx::where(mx::greater(scale, mx::array(0.0f)), levels, mx::array(0.0f));
  const int perWord = 32 / spec_.bits;
  auto codes = mx::reshape(mx::astype(levels, mx::uint32), {tokens, heads, spec_.headDim / perWord, perWord});
  auto shifts = mx::multiply(mx::arange(perWord, mx::uint32), mx::array(static_cast<uint32_t>(spec_.bits)));
  auto packed = mx::sum(mx::left_shift(codes, shifts), -1);
  return {
      mx::astype(packed, mx::uint32),
      mx::reshape(scales, {tokens, heads, groups}),
      mx::reshape(biases, {tokens, heads, groups})};
}

mx::array KvStore::decode(const Parts& parts, const mx::array& rows) const {
  if (spec_.storage != 2) return asFloat32(mx::take(parts[0], rows, 0));
  return mx::dequantize(
      mx::take(parts[0], rows, 0),
      mx::astype(mx::take(parts[1], rows, 0), mx::float32),
      mx::astype(mx::take(parts[2], rows, 0), mx::float32),
      kGroup,
      spec_.bits,
      "affine",
      std::nullopt,
      mx::float32);
}

void KvStore::write(int layer, const mx::array& keys, const mx::array& values, const mx::array& slots) {
  const int tokens = keys.shape(0);
  if (tokens == 0) return;
  auto& kv = layers_.at(layer);
  for (int side = 0; side < 2; side++) {
    auto encoded = encode(side == 0 ? keys : values);
    for (size_t i = 0; i < encoded.size(); i++) {
      auto updates = mx::expand_dims(encoded[i], 1);
      kv[side][i] = mx::scatter(kv[side][i], slots, updates, 0);
    }
  }
}

void KvStore::copyBlocks(const std::vector<std::pair<int, int>>& pairs) {
  const int rows = spec_.blockSize;
  for (auto& kv : layers_) {
    for (auto& parts : kv) {
      for (auto& part : parts) {
        for (auto [source, destination] : pairs) {
          mx::Shape start{source * rows, 0, 0};
          mx::Shape stop{(source + 1) * rows, part.shape(1), part.shape(2)};
          auto block = mx::slice(part, start, stop);
          part = mx::slice_update(
              part,
              block,
              mx::Shape{destination * rows, 0, 0},
              mx::Shape{(destination + 1) * rows, part.shape(1), part.shape(2)});
        }
      }
    }
  }
}

std::vector<uint8_t> KvStore::exportBlock(int block) {
  if (!error_.empty()) throw std::runtime_error(error_);
  const int rows = spec_.blockSize;
  std::vector<mx::array> pieces;
  for (auto& kv : layers_) {
    for (auto& parts : kv) {
      for (auto& part : parts) {
        pieces.push_back(mx::contiguous(
            mx::slice(part, {block * rows, 0, 0}, {(block + 1) * rows, part.shape(1), part.shape(2)})));
      }
    }
  }
  mx::eval(pieces);
  std::vector<uint8_t> bytes;
  bytes.reserve(bytesPerBlock());
  for (auto& piece : pieces) {
    auto* data = piece.data<uint8_t>();
    bytes.insert(bytes.end(), data, data + piece.nbytes());
  }
  return bytes;
}

void KvStore::importBlock(int block, const std::vector<uint8_t>& bytes) {
  if (bytes.size() != bytesPerBlock()) throw std::invalid_argument("KV cache importBlock: wrong length");
  const int rows = spec_.blockSize;
  auto shapes = partShapes(rows);
  auto dtypes = partDtypes();
  size_t at = 0;
  for (auto& kv : layers_) {
    for (auto& parts : kv) {
      for (size_t i = 0; i < parts.size(); i++) {
        size_t size = bytesOf(shapes[i], dtypes[i]);
        void* copy = std::malloc(size);
        std::memcpy(copy, bytes.data() + at, size);
        at += size;
        mx::array piece(copy, shapes[i], dtypes[i], [](void* pointer) { std::free(pointer); });
        auto& part = parts[i];
        part = mx::slice_update(
            part, piece, mx::Shape{block * rows, 0, 0}, mx::Shape{(block + 1) * rows, part.shape(1), part.shape(2)});
      }
    }
  }
}

std::pair<mx::array, mx::array> KvStore::gather(int layer, const mx::array& rows) const {
  const auto& kv = layers_.at(layer);
  return {decode(kv[0], rows), decode(kv[1], rows)};
}

void KvStore::collectPending(std::vector<mx::array>& out) const {
  for (const auto& kv : layers_) {
    for (const auto& parts : kv) {
      for (const auto& part : parts) {
        if (!part.is_available()) out.push_back(part);
      }
    }
  }
}

AttentionBatch::AttentionBatch(std::vector<AttentionSequence> sequences) : sequences_(std::move(sequences)) {
  Group decoding;
  for (int i = 0; i < static_cast<int>(sequences_.size()); i++) {
    const auto& sequence = sequences_[i];
    totalQueries_ += sequence.queryLength;
    if (sequence.queryLength == 0) continue;
    if (sequence.queryLength == 1) {
      decoding.members.push_back(i);
      continue;
    }
    groups_.push_back(Group{{i}, sequence.queryLength, sequence.contextLength});
  }
  if (!decoding.members.empty()) {
    decoding.maxQuery = 1;
    for (int i : decoding.members) decoding.maxContext = std::max(decoding.maxContext, sequences_[i].contextLength);
    groups_.push_back(std::move(decoding));
  }
  // Where each flattened query row lands in the groups' concatenated outputs.
  std::vector<int32_t> order(totalQueries_, 0);
  int at = 0;
  for (const auto& group : groups_) {
    for (int member : group.members) {
      const auto& sequence = sequences_[member];
      for (int row = 0; row < sequence.queryLength; row++) order[sequence.queryStart + row] = at + row;
      at += group.maxQuery;
    }
  }
  bool identity = at == totalQueries_;
  for (int i = 0; identity && i < totalQueries_; i++) identity = order[i] == i;
  if (!identity) order_ = mx::array(order.begin(), {totalQueries_}, mx::int32);
}

const std::vector<AttentionBatch::GroupIndices>& AttentionBatch::indicesFor(int blockSize) {
  auto found = indices_.find(blockSize);
  if (found != indices_.end()) return found->second;
  std::vector<GroupIndices> all;
  for (const auto& group : groups_) {
    const int count = static_cast<int>(group.members.size());
    std::vector<int32_t> queryRows, keyRows, positions;
    for (int member : group.members) {
      const auto& sequence = sequences_[member];
      for (int row = 0; row < group.maxQuery; row++) {
        int clamped = std::min(row, sequence.queryLength - 1);
        queryRows.push_back(sequence.queryStart + clamped);
        positions.push_back(sequence.contextLength - sequence.queryLength + clamped);
      }
      for (int key = 0; key < group.maxContext; key++) {
        bool inside = key < sequence.contextLength;
        keyRows.push_back(
            inside ? sequence.blockTable[key / blockSize] * blockSize + key % blockSize : 0);
      }
    }
    all.push_back(GroupIndices{
        mx::array(queryRows.begin(), {count * group.maxQuery}, mx::int32),
        mx::array(keyRows.begin(), {count * group.maxContext}, mx::int32),
        mx::array(positions.begin(), {count, 1, group.maxQuery, 1}, mx::int32)});
  }
  return indices_.emplace(blockSize, std::move(all)).first->second;
}

/** Key k is visible from a query at position p when k ≤ p and, with a window w, k > p − w. */
const std::vector<mx::array>& AttentionBatch::masksFor(int blockSize, int window) {
  auto key = std::make_pair(blockSize, window);
  auto found = masks_.find(key);
  if (found != masks_.end()) return found->second;
  const auto& indices = indicesFor(blockSize);
  std::vector<mx::array> masks;
  for (size_t g = 0; g < groups_.size(); g++) {
    auto keys = mx::reshape(mx::arange(groups_[g].maxContext, mx::int32), {1, 1, 1, -1});
    const auto& positions = indices[g].queryPositions;
    auto mask = mx::less_equal(keys, positions);
    if (window > 0) mask = mx::logical_and(mask, mx::greater(keys, mx::subtract(positions, mx::array(window))));
    masks.push_back(mask);
  }
  return masks_.emplace(key, std::move(masks)).first->second;
}

mx::array AttentionBatch::attend(const mx::array& q, const KvStore& cache, int layer, float scale, int window) {
  const int qHeads = q.shape(1);
  const int headDim = q.shape(2);
  const int kvHeads = cache.spec().kvHeads;
  if (!cache.error().empty()) throw std::runtime_error(cache.error());
  if (totalQueries_ == 0) return mx::zeros({0, qHeads, headDim}, mx::float32);
  const auto& indices = indicesFor(cache.spec().blockSize);
  const auto& masks = masksFor(cache.spec().blockSize, window);
  std::vector<mx::array> outputs;
  for (size_t g = 0; g < groups_.size(); g++) {
    const auto& group = groups_[g];
    const int count = static_cast<int>(group.members.size());
    auto queries = mx::take(q, indices[g].queryRows, 0);
    queries = mx::transpose(mx::reshape(queries, {count, group.maxQuery, qHeads, headDim}), {0, 2, 1, 3});
    auto [keys, values] = cache.gather(layer, indices[g].keyRows);
    keys = mx::transpose(mx::reshape(keys, {count, group.maxContext, kvHeads, headDim}), {0, 2, 1, 3});
    values = mx::transpose(mx::reshape(values, {count, group.maxContext, kvHeads, headDim}), {0, 2, 1, 3});
    auto out = mx::fast::scaled_dot_product_attention(queries, keys, values, scale, "", masks[g]);
    outputs.push_back(mx::reshape(mx::transpose(out, {0, 2, 1, 3}), {count * group.maxQuery, qHeads, headDim}));
  }
  auto joined = outputs.size() == 1 ? outputs[0] : mx::concatenate(outputs, 0);
  return order_ ? mx::take(joined, *order_, 0) : joined;
}

}  // namespace agent_memory
