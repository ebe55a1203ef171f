#include "fs/fuse_ops.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "common/interrupt.h"
#include "common/log.h"
#include "fs/killed_writer.h"

namespace ingestfs::fs {

namespace {

constexpr double kAttrTimeout = 1.0;
constexpr double kEntryTimeout = 1.0;
constexpr double kNegativeTimeout = 1.0;

IngestFs& Fs(fuse_req_t req) { return *static_cast<IngestFs*>(fuse_req_userdata(req)); }

pid_t CallerPid(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return ctx != nullptr ? ctx->pid : 0;
}

struct stat ToStat(const Attr& a) {
  struct stat st {};
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_size = static_cast<off_t>(a.size);
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_blksize = 1 << 20;
  st.st_blocks = static_cast<blkcnt_t>((a.size + 511) / 512);
  st.st_mtim.tv_sec = a.mtime;
  st.st_ctim.tv_sec = a.mtime;
  st.st_atim.tv_sec = a.mtime;
  return st;
}

fuse_entry_param ToEntry(const Attr& a) {
  fuse_entry_param e{};
  e.ino = a.ino;
  e.attr = ToStat(a);
  e.attr_timeout = a.changing ? 0 : kAttrTimeout;
  e.entry_timeout = kEntryTimeout;
  return e;
}

// Runs `fn`, replying with an error for a failed Status or an escaping exception. Work it does
// for the request sees the request's interruption (common/interrupt.h).
template <typename F>
void Guard(fuse_req_t req, const char* op, F fn) {
  InterruptScope scope([req] { return fuse_req_interrupted(req) != 0; });
  try {
    fn();
  } catch (const std::exception& e) {
    LOG_ERROR("%s: internal error: %s", op, e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    LOG_ERROR("%s: internal error", op);
    fuse_reply_err(req, EIO);
  }
}

void Init(void*, fuse_conn_info* conn) {
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  // No writeback cache: every write reaches the cache copy at once, so close and fsync mean
  // what they say.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  if (conn->capable & FUSE_CAP_SPLICE_READ) conn->want |= FUSE_CAP_SPLICE_READ;
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, "lookup", [&] {
    auto a = Fs(req).Lookup(parent, name);
    if (!a.ok() && ErrnoOf(a.status()) == ENOENT) {
      // A negative entry the kernel may keep briefly: `cp` and rsync look a name up before
      // creating it, and the create itself would otherwise ask again. Names that appear on
      // the platform meanwhile show after at most this delay (listings are cached longer).
      fuse_entry_param none{};
      none.entry_timeout = kNegativeTimeout;
      return (void)fuse_reply_entry(req, &none);
    }
    if (!a.ok()) return (void)fuse_reply_err(req, ErrnoOf(a.status()));
    fuse_entry_param e = ToEntry(*a);
    fuse_reply_entry(req, &e);
  });
}

void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  try {
    Fs(req).Forget(ino, n);
  } catch (...) {
  }
  fuse_reply_none(req);
}

void ForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  try {
    std::vector<std::pair<uint64_t, uint64_t>> all;
    all.reserve(count);
    for (size_t i = 0; i < count; ++i) all.emplace_back(forgets[i].ino, forgets[i].nlookup);
    Fs(req).ForgetMany(all);
  } catch (...) {
  }
  fuse_reply_none(req);
}

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guard(req, "getattr", [&] {
    auto a = Fs(req).GetAttr(ino);
    if (!a.ok()) return (void)fuse_reply_err(req, ErrnoOf(a.status()));
    struct stat st = ToStat(*a);
    fuse_reply_attr(req, &st, a->changing ? 0 : kAttrTimeout);
  });
}

void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Guard(req, "setattr", [&] {
    std::optional<uint64_t> size, fh;
    std::optional<int64_t> mtime;
    if (to_set & FUSE_SET_ATTR_SIZE) size = static_cast<uint64_t>(attr->st_size);
    if (to_set & FUSE_SET_ATTR_MTIME) mtime = attr->st_mtim.tv_sec;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) mtime = static_cast<int64_t>(time(nullptr));
    if (fi != nullptr) fh = fi->fh;
    // Mode, owner and atime are accepted and not kept: the mount shows fixed ones (uid, gid, umask).
    auto a = Fs(req).SetAttr(ino, size, mtime, fh);
    if (!a.ok()) return (void)fuse_reply_err(req, ErrnoOf(a.status()));
    struct stat st = ToStat(*a);
    fuse_reply_attr(req, &st, a->changing ? 0 : kAttrTimeout);
  });
}

void Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t) {
  Guard(req, "mkdir", [&] {
    auto a = Fs(req).Mkdir(parent, name);
    if (!a.ok()) return (void)fuse_reply_err(req, ErrnoOf(a.status()));
    fuse_entry_param e = ToEntry(*a);
    fuse_reply_entry(req, &e);
  });
}

// The platform stores plain files: links and special files have no place there. They are
// refused (EPERM, as on filesystems without them) with a log line that says what to do instead.
void Symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  Guard(req, "symlink", [&] {
    fuse_reply_err(req, ErrnoOf(Fs(req).RefuseSpecial(parent, name, std::string("a symbolic link to ") + target)));
  });
}

void Link(fuse_req_t req, fuse_ino_t, fuse_ino_t parent, const char* name) {
  Guard(req, "link", [&] { fuse_reply_err(req, ErrnoOf(Fs(req).RefuseSpecial(parent, name, "a hard link"))); });
}

void Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t) {
  Guard(req, "mknod", [&] {
    const char* kind = S_ISFIFO(mode) ? "a named pipe" : S_ISSOCK(mode) ? "a socket" : "a device or special file";
    fuse_reply_err(req, ErrnoOf(Fs(req).RefuseSpecial(parent, name, kind)));
  });
}

void Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, "rmdir", [&] { fuse_reply_err(req, ErrnoOf(Fs(req).Rmdir(parent, name))); });
}

void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, "unlink", [&] { fuse_reply_err(req, ErrnoOf(Fs(req).Unlink(parent, name))); });
}

void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
            unsigned int flags) {
  Guard(req, "rename", [&] { fuse_reply_err(req, ErrnoOf(Fs(req).Rename(parent, name, newparent, newname, flags))); });
}

void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t, fuse_file_info* fi) {
  Guard(req, "create", [&] {
    auto r = Fs(req).Create(parent, name, fi->flags, CallerPid(req));
    if (!r.ok()) return (void)fuse_reply_err(req, ErrnoOf(r.status()));
    fi->fh = r->second;
    if (Fs(req).Uncached(fi->fh)) fi->direct_io = 1;  // see IngestFs::NewHandle
    fuse_entry_param e = ToEntry(r->first);
    if (fuse_reply_create(req, &e, fi) != 0) (void)Fs(req).Release(r->second);
  });
}

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, "open", [&] {
    auto fh = Fs(req).Open(ino, fi->flags, CallerPid(req));
    if (!fh.ok()) return (void)fuse_reply_err(req, ErrnoOf(fh.status()));
    fi->fh = *fh;
    fi->keep_cache = 0;
    // .ingestfs/ files change on their own: read them from the daemon every time.
    if (IngestFs::IsStatusFile(ino)) fi->direct_io = 1;
    if (Fs(req).Uncached(*fh)) fi->direct_io = 1;  // see IngestFs::NewHandle
    if (fuse_reply_open(req, fi) != 0) (void)Fs(req).Release(*fh);
  });
}

void Read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, "read", [&] {
    // The worker's own buffer, kept between reads: a read of up to 1 MiB allocates nothing (and
    // the allocator serves such blocks by mmap, see HeapTrimmer::ConfigureAllocator).
    thread_local std::vector<char> buf;
    if (buf.size() < size) buf.resize(size);
    auto n = Fs(req).Read(fi->fh, buf.data(), size, static_cast<uint64_t>(off));
    if (!n.ok()) return (void)fuse_reply_err(req, ErrnoOf(n.status()));
    fuse_reply_buf(req, buf.data(), *n);
  });
}

// The reply goes out as soon as the bytes are in the cache copy; hashing them for the running
// digest follows while the writer sends its next write (`buf` stays ours until we return).
void ReplyWrite(fuse_req_t req, uint64_t fh, const char* buf, size_t size, off_t off) {
  auto n = Fs(req).Write(fh, buf, size, static_cast<uint64_t>(off), [req](size_t done) { fuse_reply_write(req, done); });
  if (!n.ok()) fuse_reply_err(req, ErrnoOf(n.status()));
}

void Write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, "write", [&] { ReplyWrite(req, fi->fh, buf, size, off); });
}

// Zero-copy writes: libfuse moves the data from /dev/fuse into the cache copy with splice(2)
// where it can, instead of copying it through our memory.
void WriteBuf(fuse_req_t req, fuse_ino_t, fuse_bufvec* in, off_t off, fuse_file_info* fi) {
  Guard(req, "write", [&] {
    size_t size = fuse_buf_size(in);
    if (in->count == 1 && !(in->buf[0].flags & FUSE_BUF_IS_FD)) {
      // The request's bytes are in memory already: written from there (direct where it suits).
      return ReplyWrite(req, fi->fh, static_cast<const char*>(in->buf[0].mem), size, off);
    }
    auto t = Fs(req).PrepareWrite(fi->fh, static_cast<uint64_t>(off), size);
    if (!t.ok()) return (void)fuse_reply_err(req, ErrnoOf(t.status()));
    fuse_bufvec out = FUSE_BUFVEC_INIT(size);
    out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    out.buf[0].fd = t->fd;
    out.buf[0].pos = static_cast<off_t>(t->offset);
    ssize_t n = fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
    if (n < 0) {
      LOG_ERROR("writing the cache copy failed: %s", strerror(static_cast<int>(-n)));
      return (void)fuse_reply_err(req, static_cast<int>(-n));
    }
    Fs(req).Wrote(t->ino);
    if (t->digest) t->digest->Invalidate();  // bytes that were not hashed
    fuse_reply_write(req, static_cast<size_t>(n));
  });
}

void Flush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  // Errors the user must see at close(2) come from here: the kernel drops release's errors.
  Guard(req, "flush", [&] {
    const fuse_ctx* ctx = fuse_req_ctx(req);
    // Only the close of a version's last writer can decide its fate; other closes are not asked.
    std::string killed = ctx != nullptr && Fs(req).IsLastWriter(fi->fh)
                             ? KilledWriter(ctx->pid, std::chrono::milliseconds(200))
                             : "";
    fuse_reply_err(req, ErrnoOf(Fs(req).Flush(fi->fh, CallerPid(req), killed)));
  });
}

void Release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Guard(req, "release", [&] { fuse_reply_err(req, ErrnoOf(Fs(req).Release(fi->fh))); });
}

void Fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) {
  Guard(req, "fsync", [&] { fuse_reply_err(req, ErrnoOf(Fs(req).Fsync(fi->fh))); });
}

struct DirSnapshot {
  std::vector<DirEntry> entries;
};

void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, "opendir", [&] {
    auto entries = Fs(req).ReadDir(ino);
    if (!entries.ok()) return (void)fuse_reply_err(req, ErrnoOf(entries.status()));
    auto* snap = new DirSnapshot{std::move(entries).value()};
    fi->fh = reinterpret_cast<uint64_t>(snap);
    if (fuse_reply_open(req, fi) != 0) delete snap;
  });
}

// One page of a directory snapshot. With `plus` (readdirplus) each entry carries its
// attributes, so that `ls -l` needs no lookup per file; each entry handed to the kernel that
// way (but "." and "..") counts as a lookup, taken only once it fits in the reply.
void FillDir(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  auto* snap = reinterpret_cast<DirSnapshot*>(fi->fh);
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < snap->entries.size(); ++i) {
    const DirEntry& d = snap->entries[i];
    bool dot = d.name == "." || d.name == "..";
    fuse_entry_param e{};
    e.attr.st_ino = d.ino;
    e.attr.st_mode = d.is_dir ? S_IFDIR : S_IFREG;
    if (plus && !dot) {
      auto a = Fs(req).GetAttr(d.ino);
      if (!a.ok()) continue;  // gone since opendir
      e = ToEntry(*a);
    }
    auto next = static_cast<off_t>(i + 1);
    size_t need = plus ? fuse_add_direntry_plus(req, buf.data() + used, size - used, d.name.c_str(), &e, next)
                       : fuse_add_direntry(req, buf.data() + used, size - used, d.name.c_str(), &e.attr, next);
    if (need > size - used) break;
    if (plus && !dot) Fs(req).AddLookup(d.ino);
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void ReadDir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, "readdir", [&] { FillDir(req, size, off, fi, false); });
}

void ReadDirPlus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, "readdirplus", [&] { FillDir(req, size, off, fi, true); });
}

void ReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  auto* snap = reinterpret_cast<DirSnapshot*>(fi->fh);
  Guard(req, "releasedir", [&] { Fs(req).DirDone(snap->entries); });
  delete snap;
  fuse_reply_err(req, 0);
}

void StatFs(fuse_req_t req, fuse_ino_t) {
  Guard(req, "statfs", [&] {
    auto st = Fs(req).Statfs();
    if (!st.ok()) return (void)fuse_reply_err(req, ErrnoOf(st.status()));
    fuse_reply_statfs(req, &*st);
  });
}

void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guard(req, "getxattr", [&] {
    auto v = Fs(req).GetXattr(ino, name);
    if (!v.ok()) return (void)fuse_reply_err(req, ErrnoOf(v.status()));
    if (size == 0) return (void)fuse_reply_xattr(req, v->size());
    if (size < v->size()) return (void)fuse_reply_err(req, ERANGE);
    fuse_reply_buf(req, v->data(), v->size());
  });
}

void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guard(req, "listxattr", [&] {
    auto names = Fs(req).ListXattr(ino);
    if (!names.ok()) return (void)fuse_reply_err(req, ErrnoOf(names.status()));
    std::string all;
    for (const std::string& n : *names) {
      all += n;
      all.push_back('\0');
    }
    if (size == 0) return (void)fuse_reply_xattr(req, all.size());
    if (size < all.size()) return (void)fuse_reply_err(req, ERANGE);
    fuse_reply_buf(req, all.data(), all.size());
  });
}

void SetXattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) { fuse_reply_err(req, ENOTSUP); }
void RemoveXattr(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, ENOTSUP); }

}  // namespace

int ErrnoOf(const Status& st) {
  if (st.ok()) return 0;
  if (st.sys_errno() != 0) return st.sys_errno();
  switch (st.code()) {
    case Code::kNotFound: return ENOENT;
    case Code::kAlreadyExists: return EEXIST;
    case Code::kPermissionDenied: return EACCES;
    case Code::kUnauthenticated: return EACCES;
    case Code::kInvalidArgument: return EINVAL;
    case Code::kResourceExhausted: return ENOSPC;
    case Code::kUnavailable: return EAGAIN;
    case Code::kCancelled: return EINTR;
    case Code::kDeadlineExceeded: return ETIMEDOUT;
    default: return EIO;
  }
}

const fuse_lowlevel_ops* FuseOps() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o{};
    o.init = Init;
    o.lookup = Lookup;
    o.forget = Forget;
    o.forget_multi = ForgetMulti;
    o.getattr = GetAttr;
    o.setattr = SetAttr;
    o.mkdir = Mkdir;
    o.rmdir = Rmdir;
    o.symlink = Symlink;
    o.link = Link;
    o.mknod = Mknod;
    o.unlink = Unlink;
    o.rename = Rename;
    o.create = Create;
    o.open = Open;
    o.read = Read;
    o.write = Write;
    o.write_buf = WriteBuf;
    o.flush = Flush;
    o.release = Release;
    o.fsync = Fsync;
    o.opendir = OpenDir;
    o.readdir = ReadDir;
    o.readdirplus = ReadDirPlus;
    o.releasedir = ReleaseDir;
    o.statfs = StatFs;
    o.getxattr = GetXattr;
    o.listxattr = ListXattr;
    o.setxattr = SetXattr;
    o.removexattr = RemoveXattr;
    return o;
  }();
  return &ops;
}

void KernelPrune::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = false;
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void KernelPrune::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void KernelPrune::Add(uint64_t ino) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || !supported_ || queue_.size() >= kMaxQueued) return;
    queue_.push_back(ino);
  }
  cv_.notify_one();
}

uint64_t KernelPrune::asked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return asked_;
}

bool KernelPrune::supported() const {
  std::lock_guard<std::mutex> lock(mu_);
  return supported_;
}

namespace {
// The notification as the kernel reads it (include/uapi/linux/fuse.h, protocol 7.45): the
// header (unique 0, the code in `error`), the count, then the node ids. Debian's headers of
// libfuse 3.14 predate it.
constexpr int32_t kFuseNotifyPrune = 9;
struct OutHeader {
  uint32_t len;
  int32_t error;
  uint64_t unique;
};
struct PruneOut {
  uint32_t count;
  uint32_t padding;
  uint64_t spare;
};
}  // namespace

void KernelPrune::Loop() {
  std::vector<uint64_t> batch;
  std::vector<char> msg;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      size_t n = std::min(queue_.size(), kBatch);
      batch.assign(queue_.end() - static_cast<std::ptrdiff_t>(n), queue_.end());
      queue_.resize(queue_.size() - n);
      asked_ += n;
    }
    OutHeader head{};
    PruneOut out{};
    out.count = static_cast<uint32_t>(batch.size());
    head.len = static_cast<uint32_t>(sizeof(head) + sizeof(out) + batch.size() * sizeof(uint64_t));
    head.error = kFuseNotifyPrune;
    head.unique = 0;
    msg.resize(head.len);
    std::memcpy(msg.data(), &head, sizeof(head));
    std::memcpy(msg.data() + sizeof(head), &out, sizeof(out));
    std::memcpy(msg.data() + sizeof(head) + sizeof(out), batch.data(), batch.size() * sizeof(uint64_t));
    ssize_t w = ::write(fuse_session_fd(se_), msg.data(), msg.size());
    if (w < 0 && (errno == EINVAL || errno == ENOSYS)) {
      LOG_INFO("the kernel does not take prune notifications (Linux 6.18 does): confirmed files leave memory "
               "on its own reclaim only");
      std::lock_guard<std::mutex> lock(mu_);
      supported_ = false;
      queue_.clear();
      return;
    }
    // ENOENT and the like: nothing to drop (the mount is going away, or the inode is gone).
  }
}

}  // namespace ingestfs::fs
