#include "upload/metrics.h"

#include <algorithm>
#include <ctime>

namespace ingestfs::upload {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double v) {
  size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i]++;
  sum_ += v;
  count_++;
}

const char* FailureClass(Code code) {
  switch (code) {
    case Code::kPermissionDenied:
    case Code::kUnauthenticated:
      return "refused";
    case Code::kInvalidArgument:
    case Code::kNotFound:
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition:
      return "rejected";
    case Code::kDataLoss:
      return "integrity";
    case Code::kIoError:
    case Code::kResourceExhausted:
      return "local";
    case Code::kUnavailable:
    case Code::kBadAnswer:
    case Code::kDeadlineExceeded:
      return "platform";
    default:
      return "other";
  }
}

UploadMetrics::UploadMetrics() {
  // From a small file on loopback to an instrument's run held a day by an absent platform.
  s_.close_to_confirm = Histogram({0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400});
  s_.part_seconds = Histogram({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300});
  for (const char* c : {"refused", "rejected", "integrity", "local", "platform", "other"}) s_.failed[c] = 0;
}

void UploadMetrics::Confirmed(uint64_t bytes, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.confirmed++;
  s_.confirmed_bytes += bytes;
  s_.last_confirmation_unix = std::time(nullptr);
  if (seconds >= 0) s_.close_to_confirm.Observe(seconds);
}

void UploadMetrics::Failed(Code code) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.failed[FailureClass(code)]++;
}

void UploadMetrics::Retried() {
  std::lock_guard<std::mutex> lock(mu_);
  s_.retries++;
}

void UploadMetrics::PartSent(uint64_t bytes, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.parts++;
  s_.sent_bytes += bytes;
  s_.part_seconds.Observe(seconds);
}

UploadMetrics::Snapshot UploadMetrics::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return s_;
}

}  // namespace ingestfs::upload
