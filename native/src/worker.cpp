#include "worker.h"

#include <mlx/memory.h>
#include <mlx/transforms.h>

#include "kv_cache.h"

namespace agent_memory {

void Arrays::put(Handle handle, mx::array value) {
  slots_.insert_or_assign(handle, Slot{std::move(value), {}});
}

void Arrays::fail(Handle handle, const std::string& error) {
  slots_.insert_or_assign(handle, Slot{std::nullopt, error});
}

const mx::array& Arrays::get(Handle handle) const {
  auto found = slots_.find(handle);
  if (found == slots_.end()) throw TaskError("mlx: tensor " + std::to_string(handle) + " was freed");
  if (!found->second.value) throw TaskError(found->second.error);
  return *found->second.value;
}

void Arrays::erase(Handle handle) { slots_.erase(handle); }

std::vector<mx::array> Arrays::pending() const {
  std::vector<mx::array> out;
  for (const auto& [handle, slot] : slots_) {
    if (slot.value && !slot.value->is_available()) out.push_back(*slot.value);
  }
  for (const auto& [handle, cache] : caches) cache->collectPending(out);
  return out;
}

Worker& Worker::instance() {
  // Never destroyed: the thread is stopped by the addon's environment cleanup hook, before static
  // destructors (MLX's own among them) run.
  static Worker* worker = new Worker();
  return *worker;
}

Worker::Worker() : thread_([this] { run(); }) {}

void Worker::enqueue(Task task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    queue_.push_back(std::move(task));
  }
  ready_.notify_one();
}

void Worker::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    queue_.clear();
  }
  ready_.notify_one();
  if (thread_.joinable()) thread_.join();
}

std::string Worker::fatal() const {
  std::lock_guard lock(fatal_mutex_);
  return fatal_;
}

void Worker::publish(const Arrays& arrays) {
  counters_.active.store(mx::get_active_memory(), std::memory_order_relaxed);
  counters_.peak.store(mx::get_peak_memory(), std::memory_order_relaxed);
  counters_.cache.store(mx::get_cache_memory(), std::memory_order_relaxed);
  counters_.limit.store(mx::get_memory_limit(), std::memory_order_relaxed);
  counters_.handles.store(arrays.size(), std::memory_order_relaxed);
}

void Worker::run() {
  Arrays arrays;
  try {
    while (true) {
      Task task;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) break;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      // Tasks catch what they expect (shape errors, failed inputs) and record it on their outputs;
      // anything else is logged against the task and the thread carries on.
      try {
        task(arrays);
      } catch (const std::exception& error) {
        std::lock_guard lock(fatal_mutex_);
        if (fatal_.empty()) fatal_ = std::string("mlx compute thread: ") + error.what();
      }
      publish(arrays);
    }
  } catch (const std::exception& error) {
    std::lock_guard lock(fatal_mutex_);
    fatal_ = std::string("mlx compute thread stopped: ") + error.what();
  }
  arrays.batches.clear();
  arrays.caches.clear();
  arrays.clear();
}

}  // namespace agent_memory
