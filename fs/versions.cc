// A file version's life, driven from both sides (see the table in ingest_fs.h): begun by an open
// for write, written, finished by its writer's close (or interrupted), queued, uploaded,
// confirmed; reopened, truncated, accepted.

#include "fs/ingest_fs.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string>

#include "common/log.h"
#include "common/names.h"
#include "common/strings.h"
#include "fs/internal.h"

namespace ingestfs::fs {

void IngestFs::RestoreFromJournal() {
  std::lock_guard<std::mutex> lock(mu_);
  for (const cache::Entry& e : journal_.Unfinished()) {
    if (ValidateDatasetName(e.dataset).ok() == false || ValidateFileName(e.name).ok() == false) continue;
    Node* ds = DatasetNode(e.dataset);
    Node* n = EnsurePath(ds, e.name, false);
    if (n == nullptr) continue;
    n->entry_id = e.id;
    n->last_entry_id = e.id;
    n->data_path = e.data_path;
    n->mtime = Now();
  }
}

void IngestFs::OnConfirmed(const cache::Entry& entry, const upload::UploadOutcome& outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  // The entry's dataset and name are the file's current ones (renames are journaled).
  Node* n = Child(Find(kRootIno), entry.dataset);
  for (const std::string& part : Split(entry.name, '/')) {
    if (n == nullptr) break;
    n = Child(n, part);
  }
  if (n == nullptr || n->unlinked) return;  // unlinked meanwhile
  // A newer local version (begun while this one was being confirmed) stays the file's content;
  // the platform has a version now either way, so the next upload is an overwrite.
  bool current = n->entry_id == entry.id;
  n->remote = true;
  n->remote_size = entry.size;
  n->remote_tag = dialect_.ContentTag(entry.sha256, entry.size);
  if (!current) return;
  n->entry_id.clear();
  n->read_path = outcome.kept_path;
  if (mtimes_ != nullptr) mtimes_->Put(entry.dataset, entry.name, n->remote_tag, n->mtime);
  // The file is the platform's now: the kernel is asked to forget it (a prune, which skips what
  // is in use), and once it has, the node goes onto its folder's shelf. (An entry invalidation,
  // notify_inval_entry, was tried first: a daemon killed while such a call waited for the
  // folder's lock, held by a request it would never answer, could not exit, and the mount hung.)
  MaybeFree(n, /*ask_kernel=*/true);
}

Status IngestFs::AcceptPartial(const std::string& path) {
  std::shared_lock<std::shared_mutex> ns(ns_mu_);
  uint64_t ino = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(kRootIno);
    for (const std::string& part : Split(path, '/')) {
      if (n == nullptr) break;
      if (!part.empty()) n = Child(n, part);
    }
    if (n == nullptr || n->special != Special::kNone || n->ino == kRootIno) {
      return Status(Code::kNotFound, path + ": no such file in the mount", ENOENT);
    }
    if (n->is_dir) return Errno(EISDIR, path + " is a folder");
    ino = n->ino;
  }
  auto version = VersionMutex(ino);
  std::lock_guard<std::mutex> vlock(*version);
  std::string id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(ino);
    if (n == nullptr) return Status(Code::kNotFound, path + ": no such file in the mount", ENOENT);
    if (n->writers > 0) return Status(Code::kFailedPrecondition, path + " is open for writing", EBUSY);
    id = n->entry_id;
  }
  auto e = id.empty() ? std::nullopt : journal_.Get(id);
  if (!e || !e->interrupted) {
    return Status(Code::kFailedPrecondition, path + " has no interrupted version to accept", EINVAL);
  }
  RETURN_IF_ERROR(scheduler_->AcceptPartial(id));
  LOG_INFO("%s: the interrupted version (%llu bytes) was accepted; uploading it", path.c_str(),
           static_cast<unsigned long long>(e->size));
  return Status::Ok();
}

std::vector<std::string> IngestFs::OpenFiles() {
  std::vector<std::pair<std::string, std::string>> candidates;  // (entry id, label)
  std::vector<std::string> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [ino, n] : nodes_) {
      if (n->is_dir || n->entry_id.empty() || n->unlinked || IsTemporaryName(n->name)) continue;
      if (n->writers > 0 || n->closing) out.push_back(n->dataset + "/" + n->rel);
      else candidates.emplace_back(n->entry_id, n->dataset + "/" + n->rel);
    }
  }
  for (const auto& [id, label] : candidates) {
    auto e = journal_.Get(id);
    if (e && !e->closed && !e->interrupted) out.push_back(label);  // released, being fsynced and hashed
  }
  return out;
}

StatusOr<std::string> IngestFs::BeginWrite(uint64_t ino, bool truncate) {
  for (int round = 0; round < 5; ++round) {
    std::string entry_id, dataset, rel;
    bool remote;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Node* n = Find(ino);
      if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
      if (n->is_dir) return Errno(EISDIR, n->rel);
      entry_id = n->entry_id;
      dataset = n->dataset;
      rel = n->rel;
      remote = n->remote;
      if (!entry_id.empty() && n->writers > 0) {
        auto e = journal_.Get(entry_id);
        if (e) {
          // Already being written; O_TRUNC empties it as it would on a local disk.
          if (truncate) {
            if (n->digest) n->digest->Invalidate();
            if (::truncate(e->data_path.c_str(), 0) != 0) return Status::FromErrno(errno, "truncate");
          }
          return e->data_path;
        }
      }
    }
    if (!entry_id.empty()) {
      // A closed local version: stop its upload, then write the same cache copy again.
      bool committed = scheduler_->Hold(entry_id) == upload::Scheduler::HoldResult::kCommitted;
      auto e = journal_.Get(entry_id);
      if (!e) continue;  // it was confirmed meanwhile: now it is a platform file
      if (committed || e->completed) {
        // The platform was told to take that version and will hold it, confirmed or not: the
        // name is the platform's now (the next upload overwrites; unlink and rename refuse).
        std::lock_guard<std::mutex> lock(mu_);
        if (Node* n = Find(ino)) {
          n->remote = true;
          n->remote_size = e->size;
          n->remote_tag = dialect_.ContentTag(e->sha256, e->size);
        }
      }
      RETURN_IF_ERROR(journal_.RecordReopened(entry_id));
      if (e->interrupted) scheduler_->Hold(entry_id);  // written again: no longer shown interrupted
      if (truncate && ::truncate(e->data_path.c_str(), 0) != 0) return Status::FromErrno(errno, "truncate");
      // No writer has it open: an emptied copy can be hashed as it is written again.
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (Node* n = Find(ino)) n->digest = truncate ? std::make_shared<cache::SequentialDigest>() : nullptr;
      }
      return e->data_path;
    }
    // A platform file (or a new empty one): a new local version, starting from the platform's
    // bytes unless truncated.
    std::string initial;
    if (remote && !truncate) {
      auto copy = LocalCopy(ino);
      if (!copy.ok()) return copy.status();
      initial = *copy;
      struct stat st;
      if (space_ != nullptr && ::stat(initial.c_str(), &st) == 0) {
        RETURN_IF_ERROR(space_->Reserve(static_cast<uint64_t>(st.st_size), dataset + "/" + rel));
      }
    }
    cache::Entry meta;
    meta.api = cfg_.api;
    meta.dialect = cfg_.dialect;
    meta.dataset = dataset;
    meta.name = rel;
    meta.remote_hint = remote;
    auto e = journal_.AddOpen(meta, initial);
    if (!e.ok()) {
      LOG_ERROR("%s/%s: cannot start a local version: %s", dataset.c_str(), rel.c_str(), e.status().message().c_str());
      return e.status();
    }
    scheduler_->Hold(e->id);
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(ino);
    if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
    n->entry_id = e->id;
    n->last_entry_id = e->id;
    n->data_path = e->data_path;
    n->digest = initial.empty() ? std::make_shared<cache::SequentialDigest>() : nullptr;
    return e->data_path;
  }
  return Status(Code::kUnavailable, "the file kept changing state; try again", EAGAIN);
}

std::string IngestFs::EndWrite(uint64_t ino, std::optional<std::chrono::milliseconds> delay) {
  // Until the version is scheduled (or known not to be), `ingestfs wait` counts it as open.
  struct ClearClosing {
    IngestFs* fs;
    uint64_t ino;
    ~ClearClosing() {
      std::lock_guard<std::mutex> lock(fs->mu_);
      if (Node* n = fs->Find(ino)) n->closing = false;
    }
  } clear_closing{this, ino};
  std::string id, base, label, write_failed;
  std::shared_ptr<cache::SequentialDigest> digest;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(ino);
    if (n == nullptr || n->entry_id.empty()) return "";
    id = n->entry_id;
    base = n->name;
    label = n->dataset + "/" + n->rel;
    if (n->unlinked) return "";
    write_failed = std::move(n->write_failed);
    n->write_failed.clear();
    n->flushed = false;  // `closed` (or `interrupted`) supersedes it
    digest = std::move(n->digest);
  }
  auto e = journal_.Get(id);
  if (e && e->closed) return "";  // already closed and sent by a sync_upload flush
  auto interrupted = [&](const std::string& why) {
    // What is in the cache copy is not the file the writer meant: kept, shown, never uploaded.
    LOG_ERROR("%s: %s", label.c_str(), why.c_str());
    Status st = journal_.RecordInterrupted(id, why);
    if (!st.ok()) LOG_WARN("journaling the interruption of %s: %s", label.c_str(), st.message().c_str());
    scheduler_->MarkInterrupted(id, why);
    return std::string();
  };
  if (!write_failed.empty()) return interrupted(write_failed);
  std::string big = TooLarge(e ? e->data_path : "", base);
  auto closed = journal_.Close(id, digest.get());
  if (!closed.ok()) {
    return interrupted("closing it failed: " + closed.status().message() + " (not uploaded: write the file again)");
  }
  if (!big.empty()) {
    LOG_ERROR("%s: %s", label.c_str(), big.c_str());
    Status st = journal_.RecordFailed(id, big);
    if (!st.ok()) LOG_WARN("recording the failure of %s: %s", label.c_str(), st.message().c_str());
    scheduler_->MarkFailed(id, big);
    return "";
  }
  if (IsTemporaryName(base)) return "";  // stays local until renamed to a real name
  scheduler_->Schedule(id, delay.value_or(cfg_.settle));
  return id;
}

Status IngestFs::SyncUpload(uint64_t fh) {
  uint64_t ino;
  std::string label;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end() || !it->second->writable || it->second->synced) return Status::Ok();
    ino = it->second->ino;
    Node* n = Find(ino);
    if (n == nullptr || n->writers != 1) return Status::Ok();  // another writer still has it open
    label = n->dataset + "/" + n->rel;
  }
  if (::fdatasync(HandleFd(fh)) != 0) return Status::FromErrno(errno, "fsync the cache copy");
  std::string id;
  {
    std::shared_lock<std::shared_mutex> ns(ns_mu_);
    auto version = VersionMutex(ino);
    std::lock_guard<std::mutex> vlock(*version);
    id = EndWrite(ino, std::chrono::milliseconds(0));
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handles_.find(fh);
    if (it != handles_.end()) it->second->synced = true;
  }
  if (id.empty()) return Status::Ok();  // a temporary name: stays local
  auto state = scheduler_->WaitSettled(id, cfg_.sync_timeout);
  if (state == upload::FileState::kCompleted) return Status::Ok();
  auto st = scheduler_->Get(id);
  std::string why = !state ? "timed out waiting for the platform" : st ? st->error : "upload failed";
  LOG_ERROR("close of %s with sync_upload: %s", label.c_str(), why.c_str());
  return Errno(EIO, label + ": " + why);
}

std::string IngestFs::TooLarge(const std::string& path, const std::string& label) {
  struct stat st;
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return "";
  uint64_t size = static_cast<uint64_t>(st.st_size);
  return size > dialect_.MaxFileSize() ? upload::TooLargeMessage(dialect_, label, size) : "";
}

Status IngestFs::Flush(uint64_t fh, pid_t closer, const std::string& writer_killed) {
  std::string path, label, id;
  int fd = -1;
  uint64_t ino = 0;
  bool last_writer = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handles_.find(fh);
    Node* n = it != handles_.end() && it->second->writable ? Find(it->second->ino) : nullptr;
    if (n != nullptr && !n->entry_id.empty()) {
      path = n->data_path;
      label = n->dataset + "/" + n->rel;
      if (!writer_killed.empty() && n->write_failed.empty()) {
        n->write_failed = "interrupted: " + writer_killed + " (not uploaded: write the file again, or ingestfs retry "
                          "--accept-partial)";
      }
      // The last writer's close, journaled (below) so that a crash before its release is handled
      // still knows the file was finished. Not after a failed write: that version is not the file.
      last_writer = n->writers == 1 && !n->unlinked && n->write_failed.empty() &&
                    (it->second->opener == 0 || it->second->opener == closer);
      if (last_writer) {
        id = n->entry_id;
        ino = n->ino;
        fd = it->second->fd.get();
        n->flushed = true;
      }
    }
  }
  if (std::string big = TooLarge(path, label); !big.empty()) {
    LOG_ERROR("close of %s: %s", label.c_str(), big.c_str());
    return Errno(EFBIG, big);
  }
  if (cfg_.sync_upload) return SyncUpload(fh);
  if (last_writer) {
    struct stat st;
    Status rec = ::fstat(fd, &st) == 0 ? journal_.RecordFlushed(id, static_cast<uint64_t>(st.st_size))
                                       : Status::FromErrno(errno, "stat the cache copy");
    if (!rec.ok()) {
      // Not journaled: a crash before the release would leave it interrupted. Say so now.
      LOG_WARN("close of %s: %s", label.c_str(), rec.message().c_str());
      std::lock_guard<std::mutex> lock(mu_);
      if (Node* n = Find(ino)) n->flushed = false;
    }
  }
  return Status::Ok();  // writes are in the cache copy already
}

StatusOr<std::pair<Attr, uint64_t>> IngestFs::Create(uint64_t parent, const std::string& name, int flags,
                                                     pid_t opener) {
  std::shared_lock<std::shared_mutex> ns(ns_mu_);
  uint64_t existing = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* p = Find(parent);
    if (p == nullptr || !p->is_dir) return Errno(ENOTDIR, "create in a non-folder");
    RETURN_IF_ERROR(RefuseStatus(p, "create", name));
    if (parent == kRootIno) {
      LOG_WARN("create %s refused: files go inside a dataset folder (mkdir one first)", name.c_str());
      return Errno(EPERM, "files go inside a dataset folder");
    }
    std::string rel = RelFor(p, name);
    RETURN_IF_ERROR(CheckName("create", p->dataset, rel));
    Node* c = Child(p, name);
    if (c != nullptr) {
      if (flags & O_EXCL) return Status(Code::kAlreadyExists, name, EEXIST);
      if (c->is_dir) return Errno(EISDIR, name);
      existing = c->ino;
    }
  }
  uint64_t ino = existing;
  if (ino == 0) {
    std::lock_guard<std::mutex> lock(mu_);
    Node* c = AddChild(Find(parent), name, false);
    ino = c->ino;
  }
  auto version = VersionMutex(ino);
  std::lock_guard<std::mutex> vlock(*version);
  auto path = BeginWrite(ino, true);
  std::lock_guard<std::mutex> lock(mu_);
  Node* c = Find(ino);
  if (!path.ok()) {
    if (existing == 0 && c != nullptr) {
      Detach(c);
      MaybeFree(c);
    }
    return path.status();
  }
  ASSIGN_OR_RETURN(uint64_t fh, NewWriteHandle(c, *path, flags, opener));
  c->mtime = Now();
  c->nlookup++;
  return std::make_pair(AttrOf(*c), fh);
}

StatusOr<uint64_t> IngestFs::NewWriteHandle(Node* n, const std::string& path, int flags, pid_t opener) {
  Handle h;
  h.ino = n->ino;
  h.opener = opener;
  h.fd = UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!h.fd.valid()) return Status::FromErrno(errno, "open " + path);
  h.writable = true;
  h.write_only = (flags & O_ACCMODE) == O_WRONLY;
  h.append = (flags & O_APPEND) != 0;
  n->writers++;
  return NewHandle(std::move(h));
}

StatusOr<uint64_t> IngestFs::Open(uint64_t ino, int flags, pid_t opener) {
  bool write = (flags & O_ACCMODE) != O_RDONLY;
  if (ino == kStatusDirIno || IsStatusFile(ino)) {
    Special kind;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Node* n = Find(ino);
      if (write) return RefuseStatus(n, "write", n->name);
      kind = n->special;
    }
    Handle h;
    h.ino = ino;
    if (kind == Special::kReceiptsCsv) {
      h.fd = UniqueFd(::open(journal_.ReceiptsPath().c_str(), O_RDONLY | O_CLOEXEC));
      if (!h.fd.valid() && errno != ENOENT) return Status::FromErrno(errno, "open " + journal_.ReceiptsPath());
    }
    if (!h.fd.valid()) {
      // A snapshot in memory: what one open reads does not change under it.
      RefreshStatus(true);
      std::string text = kind == Special::kReceiptsCsv ? std::string(cache::ReceiptLog::kHeader) : StatusContent(kind);
      h.fd = UniqueFd(::memfd_create("ingestfs-status", MFD_CLOEXEC));
      if (!h.fd.valid()) return Status::FromErrno(errno, "memfd_create");
      RETURN_IF_ERROR(WriteAll(h.fd.get(), text.data(), text.size(), "status snapshot"));
    }
    std::lock_guard<std::mutex> lock(mu_);
    return NewHandle(std::move(h));
  }
  if (write) {
    std::shared_lock<std::shared_mutex> ns(ns_mu_);
    auto version = VersionMutex(ino);
    std::lock_guard<std::mutex> vlock(*version);
    auto path = BeginWrite(ino, (flags & O_TRUNC) != 0);
    if (!path.ok()) return path.status();
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(ino);
    if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
    if (flags & O_TRUNC) n->mtime = Now();
    return NewWriteHandle(n, *path, flags, opener);
  }
  std::string path;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(ino);
    if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
    if (n->is_dir) return Errno(EISDIR, n->rel);
    path = LocalVersionPath(*n);
  }
  if (path.empty()) {
    auto copy = LocalCopy(ino);
    if (!copy.ok()) return copy.status();
    path = *copy;
  }
  if (path.rfind(cfg_.cache_dir + "/read/", 0) == 0) cache::CacheSpace::Touch(path);
  std::lock_guard<std::mutex> lock(mu_);
  Handle h;
  h.ino = ino;
  h.fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!h.fd.valid()) return Status::FromErrno(errno, "open " + path);
  return NewHandle(std::move(h));
}

StatusOr<size_t> IngestFs::Read(uint64_t fh, char* buf, size_t size, uint64_t off) {
  int fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end()) return Errno(EBADF, "bad handle");
    fd = it->second->fd.get();
  }
  return PreadAll(fd, buf, size, off, "the cache copy");
}

StatusOr<IngestFs::WriteTarget> IngestFs::PrepareWrite(uint64_t fh, uint64_t off, uint64_t size) {
  WriteTarget t;
  bool append;
  bool synced = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handles_.find(fh);
    if (it != handles_.end()) {
      synced = it->second->synced;
      t.ino = it->second->ino;
    }
  }
  if (synced) {
    // sync_upload sent this version at a flush, and the descriptor (a dup) writes again: the
    // writes belong to a new version, starting from what was sent.
    std::shared_lock<std::shared_mutex> ns(ns_mu_);
    auto version = VersionMutex(t.ino);
    std::lock_guard<std::mutex> vlock(*version);
    auto path = BeginWrite(t.ino, false);
    if (!path.ok()) return path.status();
    UniqueFd fd(::open(path->c_str(), O_RDWR | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno(errno, "open " + *path);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handles_.find(fh);
    if (it != handles_.end()) {
      it->second->fd = std::move(fd);
      it->second->direct.reset();
      it->second->direct_tried = false;
      it->second->synced = false;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end()) return Errno(EBADF, "bad handle");
    if (!it->second->writable) return Errno(EBADF, "not open for writing");
    Handle& h = *it->second;
    t.fd = h.fd.get();
    t.ino = h.ino;
    append = h.append;
    if (cfg_.direct_writes && size >= cache::DirectWriter::kMinSize && !h.direct_tried) {
      h.direct_tried = true;
      auto w = cache::DirectWriter::Open(t.fd);
      if (w.valid()) h.direct = std::make_unique<cache::DirectWriter>(std::move(w));
    }
    t.direct = h.direct.get();
    if (Node* n = Find(h.ino)) t.digest = n->digest;
  }
  Rewriting(t.ino);
  t.offset = off;
  struct stat st;
  if ((append || space_ != nullptr) && ::fstat(t.fd, &st) != 0) return Status::FromErrno(errno, "stat the cache copy");
  if (append) t.offset = static_cast<uint64_t>(st.st_size);
  if (space_ != nullptr && t.offset + size > static_cast<uint64_t>(st.st_size)) {
    std::string label;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Node* n = Find(t.ino);
      label = n != nullptr ? n->dataset + "/" + n->rel : "a file";
    }
    Status room = space_->Reserve(t.offset + size - static_cast<uint64_t>(st.st_size), label);
    if (!room.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      Node* n = Find(t.ino);
      if (n != nullptr && n->write_failed.empty()) {
        n->write_failed = "write failed: cache full after cache_wait (not uploaded: write the file again)";
      }
      return room;
    }
  }
  return t;
}

void IngestFs::Rewriting(uint64_t ino) {
  std::string id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(ino);
    if (n == nullptr || !n->flushed) return;
    n->flushed = false;
    id = n->entry_id;
  }
  Status st = journal_.RecordWriting(id);
  if (!st.ok()) LOG_WARN("journaling a write after close: %s", st.message().c_str());
}

void IngestFs::WriteFailed(uint64_t ino, const Status& why) {
  std::lock_guard<std::mutex> lock(mu_);
  Node* n = Find(ino);
  if (n == nullptr || !n->write_failed.empty()) return;
  n->write_failed = "write failed: " + why.message() + " (not uploaded: write the file again)";
  LOG_ERROR("%s/%s: %s", n->dataset.c_str(), n->rel.c_str(), n->write_failed.c_str());
}

void IngestFs::Wrote(uint64_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  Node* n = Find(ino);
  if (n != nullptr) n->mtime = Now();
}

StatusOr<size_t> IngestFs::Write(uint64_t fh, const char* buf, size_t size, uint64_t off,
                                 const std::function<void(size_t)>& written) {
  ASSIGN_OR_RETURN(WriteTarget t, PrepareWrite(fh, off, size));
  auto done = cache::WriteAt(t.fd, t.direct, buf, size, t.offset);
  if (!done.ok()) {
    if (t.digest) t.digest->Invalidate();
    WriteFailed(t.ino, done.status());
    return done.status();
  }
  Wrote(t.ino);
  if (t.digest) {
    t.digest->Add(t.offset, buf, *done, [&] {
      if (written) written(*done);
    });
  } else if (written) {
    written(*done);
  }
  return done;
}

Status IngestFs::Fsync(uint64_t fh) {
  int fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end()) return Errno(EBADF, "bad handle");
    fd = it->second->fd.get();
  }
  if (::fdatasync(fd) != 0) return Status::FromErrno(errno, "fsync the cache copy");
  if (cfg_.sync_upload) return SyncUpload(fh);
  // The version's journal record (written unsynced at create) and file names become durable.
  std::string id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handles_.find(fh);
    Node* n = it == handles_.end() ? nullptr : Find(it->second->ino);
    if (n != nullptr) id = n->entry_id;
  }
  return id.empty() ? Status::Ok() : journal_.Sync(id);
}

bool IngestFs::IsLastWriter(uint64_t fh) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = handles_.find(fh);
  if (it == handles_.end() || !it->second->writable) return false;
  Node* n = Find(it->second->ino);
  return n != nullptr && !n->entry_id.empty() && n->writers == 1 && n->write_failed.empty();
}

Status IngestFs::Release(uint64_t fh) {
  std::shared_lock<std::shared_mutex> ns(ns_mu_);
  std::shared_ptr<std::mutex> version;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end()) return Status::Ok();
    Node* n = Find(it->second->ino);
    version = n != nullptr ? n->version_mu : std::make_shared<std::mutex>();
  }
  std::lock_guard<std::mutex> vlock(*version);
  std::unique_ptr<Handle> h;
  bool last_writer = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handles_.find(fh);
    if (it == handles_.end()) return Status::Ok();
    h = std::move(it->second);
    handles_.erase(it);
    Node* n = Find(h->ino);
    if (n != nullptr) {
      n->open_handles--;
      if (h->uncached) n->uncached_handles--;
      if (h->writable && --n->writers == 0) last_writer = n->closing = true;
    }
  }
  h->fd.Reset();
  if (last_writer) EndWrite(h->ino);
  std::string discard;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(h->ino);
    if (n != nullptr && n->unlinked && n->open_handles == 0 && !n->entry_id.empty()) {
      discard = n->entry_id;  // unlinked while open: gone with its last descriptor
      n->entry_id.clear();
    }
    if (n != nullptr) MaybeFree(n);
  }
  if (!discard.empty()) {
    Status st = journal_.Discard(discard);
    if (!st.ok()) LOG_WARN("discarding an unlinked file: %s", st.message().c_str());
  }
  return Status::Ok();
}

StatusOr<Attr> IngestFs::SetAttr(uint64_t ino, std::optional<uint64_t> size, std::optional<int64_t> mtime,
                                 std::optional<uint64_t> fh) {
  if (ino == kStatusDirIno || IsStatusFile(ino)) {
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(ino);
    return RefuseStatus(n, "setattr", n->name);
  }
  if (size && *size > dialect_.MaxFileSize()) {
    // Refused before anything changes: no version is begun for a size no upload can have.
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(ino);
    std::string label = n != nullptr ? n->dataset + "/" + n->rel : "a file";
    LOG_WARN("truncate of %s to %llu bytes refused: %s", label.c_str(), static_cast<unsigned long long>(*size),
             upload::TooLargeMessage(dialect_, label, *size).c_str());
    return Errno(EFBIG, upload::TooLargeMessage(dialect_, label, *size));
  }
  if (size) {
    int fd = -1;
    if (fh) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = handles_.find(*fh);
      if (it != handles_.end() && it->second->writable) fd = it->second->fd.get();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      Node* n = Find(ino);
      if (n != nullptr && n->digest) n->digest->Invalidate();  // bytes change outside the writes
    }
    if (fd >= 0) {
      Rewriting(ino);
      if (::ftruncate(fd, static_cast<off_t>(*size)) != 0) return Status::FromErrno(errno, "truncate");
    } else {
      // truncate(2) without an open handle: a write of its own.
      std::shared_lock<std::shared_mutex> ns(ns_mu_);
      auto version = VersionMutex(ino);
      std::lock_guard<std::mutex> vlock(*version);
      bool writing;
      {
        std::lock_guard<std::mutex> lock(mu_);
        Node* n = Find(ino);
        if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
        writing = n->writers > 0;
      }
      auto path = BeginWrite(ino, *size == 0);
      if (!path.ok()) return path.status();
      int err = ::truncate(path->c_str(), static_cast<off_t>(*size)) != 0 ? errno : 0;
      // Closed again either way: a failed truncate changed nothing, and must not leave it open.
      if (!writing) EndWrite(ino);
      if (err != 0) return Status::FromErrno(err, "truncate");
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  Node* n = Find(ino);
  if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
  if (mtime) {
    n->mtime = *mtime;
    if (mtimes_ != nullptr && n->entry_id.empty() && n->remote) {
      mtimes_->Put(n->dataset, n->rel, n->remote_tag, n->mtime);
    }
  } else if (size) {
    n->mtime = Now();
  }
  return AttrOf(*n);
}

}  // namespace ingestfs::fs
