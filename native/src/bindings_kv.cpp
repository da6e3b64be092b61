// The KV cache and attention bindings: caches and prepared batches live on the compute thread (in
// Arrays, worker.h), named by handles like tensors. A failed write, copy or import marks the cache
// failed with the reason, so the next attention over it reports that instead of reading bad blocks.
#include <napi.h>

#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

#include "bridge.h"
#include "kv_cache.h"
#include "worker.h"

namespace agent_memory {
namespace {

// kvCreate([layers, kvHeads, headDim, blockSize, blockCount, storage, bits]) → handle
Napi::Value KvCreate(const Napi::CallbackInfo& info) {
  auto fields = numbers(info[0]);
  KvSpec spec{
      static_cast<int>(fields.at(0)),
      static_cast<int>(fields.at(1)),
      static_cast<int>(fields.at(2)),
      static_cast<int>(fields.at(3)),
      static_cast<int>(fields.at(4)),
      static_cast<int>(fields.at(5)),
      static_cast<int>(fields.at(6))};
  Handle cache = Worker::instance().reserve();
  Worker::instance().enqueue([cache, spec](Arrays& arrays) {
    try {
      arrays.caches.emplace(cache, std::make_unique<KvStore>(spec));
    } catch (const std::exception& error) {
      // Out of memory, typically: a cache that exists and says why, rather than one that is missing.
      auto failed = std::make_unique<KvStore>(KvSpec{0, spec.kvHeads, spec.headDim, spec.blockSize, 0, spec.storage, spec.bits});
      failed->fail("KV cache could not be created: " + describe(error));
      arrays.caches.emplace(cache, std::move(failed));
    }
  });
  return Napi::Number::New(info.Env(), static_cast<double>(cache));
}

KvStore& cacheOf(Arrays& arrays, Handle cache) {
  auto found = arrays.caches.find(cache);
  if (found == arrays.caches.end()) throw TaskError("KV cache: used after dispose()");
  return *found->second;
}

// kvWrite(cache, layer, keys, values, slots)
Napi::Value KvWrite(const Napi::CallbackInfo& info) {
  Handle cache = handleAt(info, 0);
  int layer = intAt(info, 1);
  Handle keys = handleAt(info, 2), values = handleAt(info, 3), slots = handleAt(info, 4);
  Worker::instance().enqueue([=](Arrays& arrays) {
    auto found = arrays.caches.find(cache);
    if (found == arrays.caches.end()) return;
    try {
      found->second->write(layer, arrays.get(keys), arrays.get(values), arrays.get(slots));
    } catch (const std::exception& error) {
      found->second->fail("KV cache write failed: " + describe(error));
    }
  });
  return info.Env().Undefined();
}

// kvCopy(cache, [source, destination, source, destination, …])
Napi::Value KvCopy(const Napi::CallbackInfo& info) {
  Handle cache = handleAt(info, 0);
  auto flat = numbers(info[1]);
  std::vector<std::pair<int, int>> pairs;
  for (size_t i = 0; i + 1 < flat.size(); i += 2) pairs.emplace_back(static_cast<int>(flat[i]), static_cast<int>(flat[i + 1]));
  Worker::instance().enqueue([cache, pairs](Arrays& arrays) {
    auto found = arrays.caches.find(cache);
    if (found == arrays.caches.end()) return;
    try {
      found->second->copyBlocks(pairs);
    } catch (const std::exception& error) {
      found->second->fail("KV cache copyBlocks failed: " + describe(error));
    }
  });
  return info.Env().Undefined();
}

// kvExport(cache, block) → Promise<ArrayBuffer>
Napi::Value KvExport(const Napi::CallbackInfo& info) {
  Handle cache = handleAt(info, 0);
  int block = intAt(info, 1);
  auto completion = promise(info.Env());
  auto completions = state(info.Env()).completions;
  Worker::instance().enqueue([cache, block, completion, completions](Arrays& arrays) {
    try {
      completion->bytes = cacheOf(arrays, cache).exportBlock(block);
      completion->withBytes = true;
      completion->resolved = true;
    } catch (const std::exception& error) {
      completion->error = describe(error);
    }
    settle(completions, completion);
  });
  return completion->deferred.Promise();
}

// kvImport(cache, block, bytes)
Napi::Value KvImport(const Napi::CallbackInfo& info) {
  Handle cache = handleAt(info, 0);
  int block = intAt(info, 1);
  auto [data, size] = copyBytes(info[2]);
  auto bytes = std::make_shared<std::vector<uint8_t>>(static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  std::free(data);
  Worker::instance().enqueue([cache, block, bytes](Arrays& arrays) {
    auto found = arrays.caches.find(cache);
    if (found == arrays.caches.end()) return;
    try {
      found->second->importBlock(block, *bytes);
    } catch (const std::exception& error) {
      found->second->fail("KV cache importBlock failed: " + describe(error));
    }
  });
  return info.Env().Undefined();
}

Napi::Value KvFree(const Napi::CallbackInfo& info) {
  Handle cache = handleAt(info, 0);
  Worker::instance().enqueue([cache](Arrays& arrays) { arrays.caches.erase(cache); });
  return info.Env().Undefined();
}

// attentionPrepare(Int32Array: count, then per sequence queryStart, queryLength, contextLength,
// tableLength, table…) → handle
Napi::Value AttentionPrepare(const Napi::CallbackInfo& info) {
  auto words = info[0].As<Napi::Int32Array>();
  std::vector<AttentionSequence> sequences;
  size_t at = 0;
  const size_t count = static_cast<size_t>(words[at++]);
  for (size_t i = 0; i < count; i++) {
    AttentionSequence sequence{words[at], words[at + 1], words[at + 2], {}};
    const int tableLength = words[at + 3];
    at += 4;
    for (int b = 0; b < tableLength; b++) sequence.blockTable.push_back(words[at++]);
    sequences.push_back(std::move(sequence));
  }
  Handle batch = Worker::instance().reserve();
  auto shared = std::make_shared<std::vector<AttentionSequence>>(std::move(sequences));
  Worker::instance().enqueue([batch, shared](Arrays& arrays) {
    arrays.batches.emplace(batch, std::make_unique<AttentionBatch>(std::move(*shared)));
  });
  return Napi::Number::New(info.Env(), static_cast<double>(batch));
}

// attention(q, cache, layer, batch, scale, window) → handle
Napi::Value Attention(const Napi::CallbackInfo& info) {
  Handle q = handleAt(info, 0), cache = handleAt(info, 1);
  int layer = intAt(info, 2);
  Handle batch = handleAt(info, 3);
  float scale = static_cast<float>(info[4].As<Napi::Number>().DoubleValue());
  int window = intAt(info, 5);
  Handle out = Worker::instance().reserve();
  Worker::instance().enqueue([=](Arrays& arrays) {
    try {
      auto found = arrays.batches.find(batch);
      if (found == arrays.batches.end()) throw TaskError("attention: the prepared batch was used after dispose()");
      arrays.put(out, found->second->attend(arrays.get(q), cacheOf(arrays, cache), layer, scale, window));
    } catch (const std::exception& error) {
      arrays.fail(out, describe(error));
    }
  });
  return Napi::Number::New(info.Env(), static_cast<double>(out));
}

Napi::Value AttentionFree(const Napi::CallbackInfo& info) {
  Handle batch = handleAt(info, 0);
  Worker::instance().enqueue([batch](Arrays& arrays) { arrays.batches.erase(batch); });
  return info.Env().Undefined();
}

}  // namespace

void exportKvBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("kvCreate", Napi::Function::New(env, KvCreate));
  exports.Set("kvWrite", Napi::Function::New(env, KvWrite));
  exports.Set("kvCopy", Napi::Function::New(env, KvCopy));
  exports.Set("kvExport", Napi::Function::New(env, KvExport));
  exports.Set("kvImport", Napi::Function::New(env, KvImport));
  exports.Set("kvFree", Napi::Function::New(env, KvFree));
  exports.Set("attentionPrepare", Napi::Function::New(env, AttentionPrepare));
  exports.Set("attention", Napi::Function::New(env, Attention));
  exports.Set("attentionFree", Napi::Function::New(env, AttentionFree));
}

}  // namespace agent_memory
