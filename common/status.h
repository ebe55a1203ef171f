// Status and StatusOr<T>: how every layer below the FUSE adapter reports failure.
//
// A Status carries a code (what kind of failure, which decides retry and errno), a message
// that names the file and the step, and an optional errno cause. Statuses are cheap to copy.
// Thread safety: values; no shared state.
#pragma once

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace ingestfs {

enum class Code {
  kOk = 0,
  kInvalidArgument,    // bad input from a user or a peer; retrying does not help
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,   // 403
  kUnauthenticated,    // 401
  kFailedPrecondition,
  kResourceExhausted,  // disk full, cache full, quota
  kUnavailable,        // transient: retry with backoff
  kBadAnswer,          // a peer answered, but not as its protocol says (garbage): transient,
                       // as kUnavailable, until it has lasted too long (RetryPolicy::bad_answers_for)
  kDeadlineExceeded,
  kCancelled,
  kDataLoss,           // corruption detected
  kIoError,            // local I/O failure; errno() says which
  kInternal,
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message, int sys_errno = 0)
      : code_(code), message_(std::move(message)), errno_(sys_errno) {}

  static Status Ok() { return Status(); }
  // A Status for a failed system call: kIoError (or a better code for common errnos),
  // "what: strerror(err)".
  static Status FromErrno(int err, const std::string& what);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  int sys_errno() const { return errno_; }
  // A peer's "retry after" hint (HTTP Retry-After) in milliseconds, or -1.
  int64_t retry_after_ms() const { return retry_after_ms_; }
  Status WithRetryAfter(int64_t ms) const {
    Status s = *this;
    s.retry_after_ms_ = ms;
    return s;
  }
  // "NotFound: message" (or "OK").
  std::string ToString() const;
  // Prefixes context ("uploading plate1/A01.tif: ...") and keeps code and cause.
  Status Annotate(const std::string& context) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  int errno_ = 0;
  int64_t retry_after_ms_ = -1;
};

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design
  StatusOr(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T value_or(T fallback) && { return ok() ? std::get<T>(std::move(v_)) : std::move(fallback); }

 private:
  std::variant<Status, T> v_;
};

#define INGESTFS_CONCAT_INNER(a, b) a##b
#define INGESTFS_CONCAT(a, b) INGESTFS_CONCAT_INNER(a, b)

// Returns from the current function when `expr` (a Status) is not ok.
#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    ::ingestfs::Status _st = (expr);          \
    if (!_st.ok()) return _st;                \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, StatusOrExpr)`.
#define ASSIGN_OR_RETURN(lhs, expr)                                     \
  auto INGESTFS_CONCAT(_sor_, __LINE__) = (expr);                       \
  if (!INGESTFS_CONCAT(_sor_, __LINE__).ok())                           \
    return INGESTFS_CONCAT(_sor_, __LINE__).status();                   \
  lhs = std::move(INGESTFS_CONCAT(_sor_, __LINE__)).value()

}  // namespace ingestfs
