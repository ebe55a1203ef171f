// RetryPolicy: capped exponential backoff with jitter, honouring a server's Retry-After.
// The clock and the sleep are injectable so the policy is unit-tested without waiting.
// Thread safety: a policy is immutable; Backoff draws from a thread-local generator.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

#include "common/status.h"

namespace ingestfs::upload {

struct RetryPolicy {
  std::chrono::milliseconds initial{200};
  std::chrono::milliseconds max_backoff{30000};
  // Give up on transient failures of one step after this long (0: never).
  std::chrono::milliseconds give_up_after{std::chrono::hours(1)};
  // A step whose every answer has been garbage (kBadAnswer) for this long fails for good
  // (kFailedPrecondition), so that a person hears of a platform that is reachable but broken;
  // an unreachable one (kUnavailable) only waits. 0: never.
  std::chrono::milliseconds bad_answers_for{std::chrono::minutes(10)};

  // The pause before attempt `attempt` (1 = the first retry): min(max, initial * 2^(attempt-1)),
  // scaled by a random factor in [0.5, 1]; a Retry-After hint wins when it is larger (capped at
  // max_backoff * 4).
  std::chrono::milliseconds Backoff(int attempt, int64_t retry_after_ms, double jitter01) const;
};

struct RetryHooks {
  std::function<void(std::chrono::milliseconds)> sleep;  // default: std::this_thread::sleep_for
  std::function<std::chrono::steady_clock::time_point()> now;
  std::function<double()> jitter;  // in [0,1]
  std::function<bool()> cancelled;  // stop waiting early (shutdown)
};

// Runs `attempt_fn` until it succeeds, fails permanently, or transient failures have lasted
// longer than give_up_after. `on_retry` sees each transient failure (attempt count, status).
// Returns the last status; the attempt count is written to *attempts when given.
Status RunWithRetry(const RetryPolicy& policy, const std::function<Status()>& attempt_fn,
                    const std::function<void(int, const Status&)>& on_retry, int* attempts = nullptr,
                    const RetryHooks& hooks = {});

// Sleeps `d` in slices no longer than `slice`, so that a cancellation is noticed: false (at once)
// once `cancelled` (may be empty) says so, true when the whole time has passed.
bool SleepUnlessCancelled(std::chrono::steady_clock::duration d, std::chrono::steady_clock::duration slice,
                          const std::function<bool()>& cancelled);

// How long after `complete` the first look at the job goes. A platform takes about the same
// time for files of one kind, and a look that finds the job still running is a request spent on
// both sides for nothing. The delay learns: it grows by a quarter (at least 200 us) when the
// first look came too early and shrinks by a twentieth when it found the job done, which settles
// where about one first look in six is early. Thread-safe.
class FirstLookDelay {
 public:
  explicit FirstLookDelay(std::chrono::microseconds max) : max_us_(max.count()) {}
  std::chrono::microseconds Get() const { return std::chrono::microseconds(us_.load(std::memory_order_relaxed)); }
  void Observe(bool found_done);

 private:
  std::atomic<int64_t> us_{0};
  int64_t max_us_;
};

// How long a platform takes to process a multipart upload, per MiB, learned from the jobs it
// finished (an average leaning a quarter towards each new one). A large file's job takes seconds
// (the platform reads the object back for its sha256): rather than pauses doubling up to a second,
// which find such a job done up to a second late, the first look goes at about eight tenths of
// the time expected and the next ones a tenth of it apart. Thread-safe.
class JobPace {
 public:
  // What a job of `bytes` is expected to take; zero while nothing was learnt.
  std::chrono::microseconds Expected(uint64_t bytes) const;
  // A job of `bytes` was found done `elapsed` after it began; the look before was `gap` earlier
  // (it ended somewhere in between: counted at the middle).
  void Observe(uint64_t bytes, std::chrono::microseconds elapsed, std::chrono::microseconds gap);

 private:
  std::atomic<int64_t> ns_per_mib_{0};
};

}  // namespace ingestfs::upload
