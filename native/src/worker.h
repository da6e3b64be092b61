// The compute thread: MLX is not thread-safe, so every MLX call — building graphs, evaluating them,
// destroying arrays — happens on this one thread, in the order the JS side asked for it. The main
// thread only enqueues tasks and reads the counters the worker publishes, so the event loop never
// waits on compute.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>

#include <mlx/array.h>

#include "ops.h"

namespace agent_memory {

namespace mx = mlx::core;

using Handle = int64_t;

/** An array the JS side holds a handle to, or why it could not be made. */
struct Slot {
  std::optional<mx::array> value;
  std::string error;
};

class KvStore;
class AttentionBatch;

/** What the worker owns; only ever touched from the worker thread. */
class Arrays {
 public:
  void put(Handle handle, mx::array value);
  void fail(Handle handle, const std::string& error);
  /** The array behind a handle; throws (naming the first failure) when it was freed or failed. */
  const mx::array& get(Handle handle) const;
  void erase(Handle handle);
  size_t size() const { return slots_.size(); }
  /** Every array not yet evaluated. */
  std::vector<mx::array> pending() const;
  void clear() { slots_.clear(); }

  std::unordered_map<Handle, std::unique_ptr<KvStore>> caches;
  std::unordered_map<Handle, std::unique_ptr<AttentionBatch>> batches;
  RopeAngles ropeAngles;

 private:
  std::unordered_map<Handle, Slot> slots_;
};

/** Raised by a task for its output handles: becomes the error a read of them rejects with. */
struct TaskError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct MemoryCounters {
  std::atomic<uint64_t> active{0};
  std::atomic<uint64_t> peak{0};
  std::atomic<uint64_t> cache{0};
  std::atomic<uint64_t> limit{0};
  std::atomic<uint64_t> handles{0};
};

class Worker {
 public:
  using Task = std::function<void(Arrays&)>;

  static Worker& instance();

  /** A fresh handle id (never reused), reserved `count` at a time for multi-output ops. */
  Handle reserve(int count = 1) { return next_.fetch_add(count); }

  /** Run `task` on the compute thread after everything enqueued before it. */
  void enqueue(Task task);

  /** Stop the thread after the current task; pending tasks are dropped and every array released. */
  void stop();

  const MemoryCounters& counters() const { return counters_; }
  /** Copy MLX's memory figures into the counters the main thread reads (worker thread only). */
  void publish(const Arrays& arrays);
  /** Set when the thread died of something no task could catch; the backend is then unusable. */
  std::string fatal() const;

 private:
  Worker();
  void run();

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Task> queue_;
  bool stopping_ = false;
  std::atomic<Handle> next_{1};
  MemoryCounters counters_;
  mutable std::mutex fatal_mutex_;
  std::string fatal_;
  std::thread thread_;
};

}  // namespace agent_memory
