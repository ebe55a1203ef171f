// The SHA-256 of a cache copy, computed as its bytes are written, so that closing the file need
// not read it all again (most files are written once, front to back: cp, rsync, dd, instruments).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "common/crypto.h"

namespace ingestfs::cache {

// Known only while every byte of the file came through Add, in order from offset 0. Anything
// else (a write behind or past the end of what was added, a truncate, bytes copied in some other
// way) makes it unknown for good, and close hashes the file as before. Thread-safe.
class SequentialDigest {
 public:
  // For a file that is empty now.
  SequentialDigest() = default;

  // `len` bytes were written at `off`. `then` (when given) runs once their place in the order
  // is taken and before they are hashed: it may answer the writer, whose next write then waits
  // here for this one, never overtaking it. It runs in every case.
  void Add(uint64_t off, const void* data, size_t len, const std::function<void()>& then = {});
  // The file changed some other way.
  void Invalidate();
  // The lowercase hex SHA-256 of the file, when it holds exactly the `size` bytes added; at
  // most once (the digest is spent).
  std::optional<std::string> Finish(uint64_t size);

 private:
  std::mutex mu_;
  Digest sha_{Digest::Kind::kSha256};
  uint64_t next_ = 0;
  bool known_ = true;
};

}  // namespace ingestfs::cache
