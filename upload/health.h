// PlatformHealth: whether the platform's control API answers, as every call finds it (ApiClient
// tells it), for the mount's status and its check at mount time. Three states: answering;
// unreachable (no HTTP answer, or a 5xx: the platform or a proxy in front of it is down);
// refusing the token (401). Each keeps when it began, and the reason of the latest failure.
// Thread safety: thread-safe.
#pragma once

#include <cstdint>
#include <ctime>
#include <mutex>
#include <string>

namespace ingestfs::upload {

class PlatformHealth {
 public:
  enum class State { kUnknown, kAnswering, kUnreachable, kTokenRefused };
  struct View {
    State state = State::kUnknown;
    std::time_t since = 0;        // when the state began
    std::time_t last_answer = 0;  // the latest HTTP answer of any kind (0: none yet)
    std::time_t last_try = 0;     // the latest call
    std::string reason;           // of the latest failure ("" while answering)
  };

  // A call got the HTTP answer `http_code`, or none (0) for `why` (connection refused, timeout).
  void Saw(int http_code, const std::string& why);
  View Get() const;
  // One line: "answering (last answer 12 s ago)", "unreachable since 2026-12-03T10:00:00Z:
  // connection refused", "refusing the token since ...: HTTP 401 ...", "not tried yet".
  std::string Describe() const;
  static const char* Name(State s);

 private:
  mutable std::mutex mu_;
  View v_;  // GUARDED_BY(mu_)
};

}  // namespace ingestfs::upload
