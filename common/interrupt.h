// A FUSE request's interruption, seen by the work it started. The FUSE adapter marks the thread
// that serves a request with a predicate (libfuse's fuse_req_interrupted); long work done for
// that request (a listing's pages, a download's transfer) asks Interrupted() between steps and
// stops, so the request is answered soon after its caller gave up (a signal, Ctrl-C).
// Thread safety: the mark is per thread; the predicate is called on the marking thread only.
#pragma once

#include <functional>

namespace ingestfs {

class InterruptScope {
 public:
  explicit InterruptScope(std::function<bool()> interrupted);
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  std::function<bool()> interrupted_;
  const std::function<bool()>* outer_;
};

// True when the request this thread serves was interrupted; false outside any scope.
bool Interrupted();

}  // namespace ingestfs
