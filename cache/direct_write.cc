#include "cache/direct_write.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace ingestfs::cache {
namespace {

// One reused buffer per thread (FUSE worker), so the pages are warm after the first write.
struct AlignedBuffer {
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> data;
  size_t size = 0;
  size_t align = 0;

  char* Get(size_t want, size_t alignment) {
    if (want > size || alignment > align) {
      void* p = nullptr;
      if (::posix_memalign(&p, alignment, want) != 0) return nullptr;
      data.reset(static_cast<char*>(p));
      size = want;
      align = alignment;
    }
    return data.get();
  }
};

thread_local AlignedBuffer tls_buffer;

}  // namespace

DirectWriter DirectWriter::Open(int fd) {
  DirectWriter w;
  struct statx sx{};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) != 0 || !(sx.stx_mask & STATX_DIOALIGN) ||
      sx.stx_dio_mem_align == 0 || sx.stx_dio_offset_align == 0) {
    return w;  // no direct I/O here (or no word on its alignment)
  }
  // The same open file again; /proc names it even when the cache copy was renamed meanwhile.
  std::string self = "/proc/self/fd/" + std::to_string(fd);
  w.fd_ = UniqueFd(::open(self.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC));
  w.mem_align_ = std::max<uint32_t>(sx.stx_dio_mem_align, 4096);
  w.off_align_ = sx.stx_dio_offset_align;
  return w;
}

bool DirectWriter::Suits(uint64_t off, size_t size) const {
  return valid() && off >= kFromOffset && size >= kMinSize && off % off_align_ == 0 && size % off_align_ == 0;
}

StatusOr<size_t> DirectWriter::Write(const char* buf, size_t size, uint64_t off) {
  const char* src = buf;
  if (reinterpret_cast<uintptr_t>(buf) % mem_align_ != 0) {
    char* aligned = tls_buffer.Get(size, mem_align_);
    if (aligned == nullptr) return size_t{0};
    std::memcpy(aligned, buf, size);
    src = aligned;
  }
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pwrite(fd_.get(), src + done, size - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL) {
      fd_.Reset();  // the filesystem refuses after all: buffered from now on
      break;
    }
    if (n < 0) return Status::FromErrno(errno, "write the cache copy");
    if (n == 0 || static_cast<size_t>(n) % off_align_ != 0) {
      done += static_cast<size_t>(n);
      break;  // short: the rest, unaligned now, goes buffered
    }
    done += static_cast<size_t>(n);
  }
  return done;
}

StatusOr<size_t> WriteAt(int fd, DirectWriter* direct, const char* buf, size_t size, uint64_t off) {
  size_t done = 0;
  if (direct != nullptr && direct->Suits(off, size)) {
    auto n = direct->Write(buf, size, off);
    if (!n.ok()) return n.status();
    done = *n;
  }
  while (done < size) {
    ssize_t n = ::pwrite(fd, buf + done, size - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "write the cache copy");
    }
    done += static_cast<size_t>(n);
  }
  if (direct != nullptr && size >= DirectWriter::kMinSize && done > 0) {
    // A hint: failure only means the writeback starts later.
    (void)::sync_file_range(fd, static_cast<off_t>(off), static_cast<off_t>(size), SYNC_FILE_RANGE_WRITE);
  }
  return done;
}

}  // namespace ingestfs::cache
