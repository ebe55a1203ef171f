// Large writes into a cache copy can go around the page cache (O_DIRECT): a file copied in is
// read once more, for its upload, so keeping it in memory buys little, and on many disks (virtual
// ones above all) filling fresh page-cache pages costs more than the write to the device itself.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/file_util.h"
#include "common/status.h"

namespace ingestfs::cache {

// A cache copy's second descriptor, opened with O_DIRECT, with the alignment its filesystem
// asks for (statx STATX_DIOALIGN).
class DirectWriter {
 public:
  // Smaller writes stay buffered: direct I/O waits for the device on every call.
  static constexpr size_t kMinSize = 128 << 10;
  // Nor below this offset: the first MiBs of a file go to the page cache, their writeback started
  // at once (see WriteAt), so that a file of a few MiB (rsync's 1 MiB files, an instrument's
  // images) reaches the disk while its writer goes on, instead of the writer waiting for the
  // device at every call. A larger file's bulk goes direct.
  static constexpr uint64_t kFromOffset = 8 << 20;

  // Opens the file behind `fd` again with O_DIRECT. Not valid where the filesystem offers no
  // direct I/O (or says nothing of its alignment).
  static DirectWriter Open(int fd);

  bool valid() const { return fd_.valid(); }
  // Whether `size` bytes at `off` may be written direct.
  bool Suits(uint64_t off, size_t size) const;
  // Writes `size` bytes at `off` direct, through an aligned buffer of the calling thread when
  // `buf` is not aligned. Returns how many bytes were written: fewer than `size` when the
  // filesystem refused direct I/O (the writer then turns itself off) or wrote short; the caller
  // writes the rest buffered.
  StatusOr<size_t> Write(const char* buf, size_t size, uint64_t off);

 private:
  UniqueFd fd_;
  uint32_t mem_align_ = 0;
  uint32_t off_align_ = 0;
};

// Writes all of `buf` at `off` into the cache copy `fd`: direct through `direct` (may be null)
// where that suits the write, the rest with pwrite(2). With `direct`, a buffered write of kMinSize
// or more has its writeback started at once (sync_file_range), so close's fsync finds little left.
StatusOr<size_t> WriteAt(int fd, DirectWriter* direct, const char* buf, size_t size, uint64_t off);

}  // namespace ingestfs::cache
