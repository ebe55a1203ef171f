// UploadMetrics: what the uploads of a mount did since it started, for the Prometheus endpoint
// (-o metrics=): files confirmed and failed (by reason class), retries, bytes sent, and two
// latency histograms (close to confirmation, one part's request). Counters only grow; a mount
// that restarts starts them again at zero, as Prometheus expects of a process.
//
// Thread safety: all methods are thread-safe (one mutex; an upload calls in a few times per part).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace ingestfs::upload {

// A Prometheus histogram: counts per upper bound (cumulative when rendered), sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // counts()[i]: observations <= bounds()[i] and > bounds()[i-1] (not cumulative); the last entry
  // counts those above every bound.
  const std::vector<uint64_t>& counts() const { return counts_; }
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

// The class of a failure's reason, a label value: "refused" (401/403: token or rights),
// "rejected" (the platform turned the request or the file down), "integrity" (bytes or ETags
// that did not match), "local" (the cache's disk), "platform" (unreachable, garbage or too slow
// for longer than the retry budget) or "other".
const char* FailureClass(Code code);

class UploadMetrics {
 public:
  struct Snapshot {
    uint64_t confirmed = 0, confirmed_bytes = 0, retries = 0, sent_bytes = 0, parts = 0;
    std::map<std::string, uint64_t> failed;  // by FailureClass
    int64_t last_confirmation_unix = 0;      // 0: none yet
    Histogram close_to_confirm{{}};
    Histogram part_seconds{{}};
  };
  UploadMetrics();

  // A file confirmed by the platform, `seconds` after it was closed (negative: unknown).
  void Confirmed(uint64_t bytes, double seconds);
  void Failed(Code code);
  void Retried();
  // A part (or a whole single-request body) stored, its request taking `seconds`.
  void PartSent(uint64_t bytes, double seconds);
  Snapshot Get() const;

 private:
  mutable std::mutex mu_;
  Snapshot s_;  // GUARDED_BY(mu_)
};

}  // namespace ingestfs::upload
