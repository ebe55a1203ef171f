#include "upload/health.h"

#include "common/time_util.h"

namespace ingestfs::upload {

void PlatformHealth::Saw(int http_code, const std::string& why) {
  State now = http_code == 0 || http_code >= 500 ? State::kUnreachable
              : http_code == 401                 ? State::kTokenRefused
                                                 : State::kAnswering;
  std::time_t t = std::time(nullptr);
  std::lock_guard<std::mutex> lock(mu_);
  if (now != v_.state) v_.since = t;
  v_.state = now;
  v_.last_try = t;
  if (http_code != 0) v_.last_answer = t;
  v_.reason = now == State::kAnswering ? "" : why;
}

PlatformHealth::View PlatformHealth::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return v_;
}

const char* PlatformHealth::Name(State s) {
  switch (s) {
    case State::kUnknown: return "unknown";
    case State::kAnswering: return "answering";
    case State::kUnreachable: return "unreachable";
    case State::kTokenRefused: return "token refused";
  }
  return "unknown";
}

std::string PlatformHealth::Describe() const {
  View v = Get();
  switch (v.state) {
    case State::kUnknown:
      return "not tried yet";
    case State::kAnswering:
      return "answering (last answer " + std::to_string(std::max<std::time_t>(0, std::time(nullptr) - v.last_answer)) +
             " s ago)";
    case State::kUnreachable:
      return "unreachable since " + Iso8601Utc(v.since) + ": " + v.reason;
    case State::kTokenRefused:
      return "refusing the token since " + Iso8601Utc(v.since) + ": " + v.reason;
  }
  return "unknown";
}

}  // namespace ingestfs::upload
