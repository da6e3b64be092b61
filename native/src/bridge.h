// What every binding shares: Promises the compute thread settles on the main thread through one
// thread-safe function (which keeps the process alive only while one of them is outstanding), and
// readers for the plain arguments the JS side passes (numbers, arrays of numbers, typed arrays); and
// the entry points of the binding files other than addon.cpp.
#pragma once

#include <napi.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "worker.h"

namespace agent_memory {

/** A Promise the compute thread settles: bytes to resolve with (or none), or an error to reject with. */
struct Completion {
  Napi::Promise::Deferred deferred;
  bool resolved = false;
  bool withBytes = false;
  std::vector<uint8_t> bytes;
  std::string error;
};

/** Per Node environment (main thread or worker thread): the completions function and its users. */
struct AddonState {
  Napi::ThreadSafeFunction completions;
  int outstanding = 0;
};

AddonState& state(const Napi::Env& env);

/** A Promise for work the compute thread will finish; `settle` moves its outcome to the main thread. */
std::shared_ptr<Completion> promise(const Napi::Env& env);
void settle(Napi::ThreadSafeFunction completions, std::shared_ptr<Completion> completion);

std::vector<double> numbers(const Napi::Value& value);
std::vector<Handle> handles(const Napi::Value& value);
Handle handleAt(const Napi::CallbackInfo& info, size_t index);
int intAt(const Napi::CallbackInfo& info, size_t index);

/** The bytes of a typed array or Uint8Array, copied (malloc'd): the JS side may reuse its buffer at once. */
std::pair<void*, size_t> copyBytes(const Napi::Value& value);

/** An error's message for JS: a TaskError's as it is, MLX's prefixed with "mlx: ". */
std::string describe(const std::exception& error);

/** The KV-cache and attention bindings (bindings_kv.cpp). */
void exportKvBindings(Napi::Env env, Napi::Object exports);

}  // namespace agent_memory
