#include "upload/retry.h"

#include <algorithm>
#include <random>
#include <thread>

#include "upload/errors.h"

namespace ingestfs::upload {

std::chrono::milliseconds RetryPolicy::Backoff(int attempt, int64_t retry_after_ms, double jitter01) const {
  int64_t base = initial.count();
  for (int i = 1; i < attempt && base < max_backoff.count(); ++i) base *= 2;
  base = std::min<int64_t>(base, max_backoff.count());
  int64_t ms = static_cast<int64_t>(static_cast<double>(base) * (0.5 + 0.5 * std::clamp(jitter01, 0.0, 1.0)));
  if (retry_after_ms >= 0) ms = std::max(ms, std::min<int64_t>(retry_after_ms, max_backoff.count() * 4));
  return std::chrono::milliseconds(std::max<int64_t>(ms, 1));
}

Status RunWithRetry(const RetryPolicy& policy, const std::function<Status()>& attempt_fn,
                    const std::function<void(int, const Status&)>& on_retry, int* attempts,
                    const RetryHooks& hooks) {
  auto now = hooks.now ? hooks.now : [] { return std::chrono::steady_clock::now(); };
  auto jitter = hooks.jitter ? hooks.jitter : [] {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    return std::uniform_real_distribution<double>(0, 1)(rng);
  };
  auto start = now();
  bool bad = false;  // every answer since bad_since was garbage
  std::chrono::steady_clock::time_point bad_since{};
  int n = 0;
  for (;;) {
    ++n;
    if (attempts != nullptr) *attempts = n;
    Status st = attempt_fn();
    if (st.ok() || !IsTransient(st)) return st;
    if (st.code() != Code::kBadAnswer) {
      bad = false;
    } else if (!bad) {
      bad = true;
      bad_since = now();
    } else if (policy.bad_answers_for.count() > 0 && now() - bad_since >= policy.bad_answers_for) {
      auto secs = std::chrono::duration_cast<std::chrono::seconds>(now() - bad_since).count();
      return Status(Code::kFailedPrecondition, "the platform answered garbage for " + std::to_string(secs) +
                                                   " s (" + std::to_string(n) + " attempts), so this is marked failed; " +
                                                   "`ingestfs retry` sends it again: " + st.message());
    }
    if (policy.give_up_after.count() > 0 && now() - start >= policy.give_up_after) {
      return st.Annotate("gave up after " + std::to_string(n) + " attempts");
    }
    if (hooks.cancelled && hooks.cancelled()) return st;
    if (on_retry) on_retry(n, st);
    auto pause = policy.Backoff(n, st.retry_after_ms(), jitter());
    if (hooks.sleep) {
      hooks.sleep(pause);
    } else if (!SleepUnlessCancelled(pause, std::chrono::milliseconds(100), hooks.cancelled)) {
      return st;
    }
  }
}

bool SleepUnlessCancelled(std::chrono::steady_clock::duration d, std::chrono::steady_clock::duration slice,
                          const std::function<bool()>& cancelled) {
  auto until = std::chrono::steady_clock::now() + d;
  for (;;) {
    auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return true;
    if (cancelled && cancelled()) return false;
    std::this_thread::sleep_for(std::min(left, slice));
  }
}

void FirstLookDelay::Observe(bool found_done) {
  int64_t cur = us_.load(std::memory_order_relaxed);
  int64_t next;
  do {
    next = found_done ? cur - cur / 20 : std::min(max_us_, std::max(cur + cur / 4, cur + 200));
  } while (!us_.compare_exchange_weak(cur, next, std::memory_order_relaxed));
}

namespace {
double Mib(uint64_t bytes) { return std::max(1.0, static_cast<double>(bytes) / (1 << 20)); }
}  // namespace

std::chrono::microseconds JobPace::Expected(uint64_t bytes) const {
  double ns = static_cast<double>(ns_per_mib_.load(std::memory_order_relaxed)) * Mib(bytes);
  return std::chrono::microseconds(static_cast<int64_t>(ns / 1000));
}

void JobPace::Observe(uint64_t bytes, std::chrono::microseconds elapsed, std::chrono::microseconds gap) {
  int64_t took_us = std::max<int64_t>(0, elapsed.count() - gap.count() / 2);
  auto seen = static_cast<int64_t>(static_cast<double>(took_us) * 1000 / Mib(bytes));
  int64_t cur = ns_per_mib_.load(std::memory_order_relaxed);
  int64_t next;
  do {
    next = cur == 0 ? std::max<int64_t>(seen, 1) : std::max<int64_t>(cur + (seen - cur) / 4, 1);
  } while (!ns_per_mib_.compare_exchange_weak(cur, next, std::memory_order_relaxed));
}

}  // namespace ingestfs::upload
