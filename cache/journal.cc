#include "cache/journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <thread>
#include <ctime>
#include <vector>

#include "common/log.h"
#include "common/crypto.h"
#include "common/record_log.h"
#include "common/strings.h"
#include "common/time_util.h"

namespace ingestfs::cache {

namespace {

// Enough for a burst of a few thousand small files between two mounts; each is an empty inode.
constexpr size_t kMaxSpares = 4096;

// Copies src to dst (a new file) and fsyncs it, while this thread computes the SHA-256 of the
// source: the kernel copies (copy_file_range) as we hash, so the two costs overlap. A source that
// changes meanwhile (size or mtime) is an error: the copy and the hash would disagree.
StatusOr<std::string> CopyAndHash(const std::string& src, const std::string& dst, uint64_t* size,
                                  const std::function<void(uint64_t)>& on_copied = nullptr) {
  UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return Status::FromErrno(errno, "open " + src);
  struct stat before;
  if (::fstat(in.get(), &before) != 0) return Status::FromErrno(errno, "stat " + src);
  UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out.valid()) return Status::FromErrno(errno, "create " + dst);
  uint64_t total = static_cast<uint64_t>(before.st_size);
  Status copy_status;
  std::thread copier([&] {
    UniqueFd cin(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
    if (!cin.valid()) {
      copy_status = Status::FromErrno(errno, "open " + src);
      return;
    }
    loff_t off_in = 0, off_out = 0;
    bool fallback = false;
    while (static_cast<uint64_t>(off_in) < total) {
      ssize_t n = ::copy_file_range(cin.get(), &off_in, out.get(), &off_out,
                                    static_cast<size_t>(std::min<uint64_t>(total - off_in, 64 << 20)), 0);
      if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
        fallback = true;
        break;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        copy_status = Status::FromErrno(errno, "copy " + src + " to " + dst);
        return;
      }
      if (n == 0) break;  // shorter than it was: caught by the checks below
      if (on_copied) on_copied(static_cast<uint64_t>(off_in));
    }
    if (fallback) {  // filesystems without copy_file_range: a plain read/write loop
      std::vector<char> buf(1 << 20);
      for (;;) {
        auto n = PreadAll(cin.get(), buf.data(), buf.size(), static_cast<uint64_t>(off_in), src);
        if (!n.ok()) {
          copy_status = n.status();
          return;
        }
        if (*n == 0) break;
        copy_status = WriteAll(out.get(), buf.data(), *n, dst);
        if (!copy_status.ok()) return;
        off_in += static_cast<loff_t>(*n);
        if (on_copied) on_copied(static_cast<uint64_t>(off_in));
      }
    }
    if (::fsync(out.get()) != 0) copy_status = Status::FromErrno(errno, "fsync " + dst);
  });
  Digest sha(Digest::Kind::kSha256);
  auto hashed_or = DigestRange(in.get(), 0, total, sha, src);
  copier.join();
  RETURN_IF_ERROR(hashed_or.status());
  uint64_t hashed = *hashed_or;
  RETURN_IF_ERROR(copy_status);
  struct stat after, copied;
  if (::fstat(in.get(), &after) != 0) return Status::FromErrno(errno, "stat " + src);
  if (::fstat(out.get(), &copied) != 0) return Status::FromErrno(errno, "stat " + dst);
  if (after.st_size != before.st_size || after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
      after.st_mtim.tv_nsec != before.st_mtim.tv_nsec || hashed != total ||
      static_cast<uint64_t>(copied.st_size) != total) {
    return Status(Code::kFailedPrecondition, src + " changed while it was being copied into the cache; try again "
                                                   "once whatever writes it has finished");
  }
  *size = total;
  return HexEncode(sha.Finish());
}

}  // namespace

std::string BootId() {
  static const std::string id = [] {
    auto text = ReadFileToString("/proc/sys/kernel/random/boot_id");
    return text.ok() ? std::string(Trim(*text)) : std::string();
  }();
  return id;
}

void ApplyRecord(const json::Value& r, Entry* e) {
  std::string t = json::StringOr(r, "t");
  if (t == "add") {
    e->closed = !json::BoolOr(r, "open");
    e->id = json::StringOr(r, "id");
    e->seq = json::IntOr(r, "seq");
    e->api = json::StringOr(r, "api");
    e->dialect = json::StringOr(r, "dialect");
    e->dataset = json::StringOr(r, "dataset");
    e->name = json::StringOr(r, "name");
    e->content_type = json::StringOr(r, "content_type");
    e->source = json::StringOr(r, "source");
    e->size = static_cast<uint64_t>(json::IntOr(r, "size"));
    e->sha256 = json::StringOr(r, "sha256");
    e->created_at = json::StringOr(r, "created_at");
    e->remote_hint = json::BoolOr(r, "remote");
  } else if (t == "closed") {
    e->closed = true;
    e->size = static_cast<uint64_t>(json::IntOr(r, "size"));
    e->sha256 = json::StringOr(r, "sha256");
  } else if (t == "flushed") {
    e->flushed = true;
    e->flushed_boot = json::StringOr(r, "boot");
    e->flushed_size = static_cast<uint64_t>(json::IntOr(r, "size"));
  } else if (t == "writing") {
    e->flushed = false;
  } else if (t == "interrupted") {
    e->interrupted = true;
    e->error = json::StringOr(r, "reason");
    e->size = static_cast<uint64_t>(json::IntOr(r, "size"));
  } else if (t == "accepted") {
    e->interrupted = false;
    e->error.clear();
  } else if (t == "unlinked") {
    e->unlinked = true;
  } else if (t == "reopened") {
    e->closed = false;
    e->interrupted = false;
    e->flushed = false;
    e->session.reset();
    e->parts.clear();
    e->completed = false;
    e->failed = false;
    e->error.clear();
  } else if (t == "renamed") {
    // A job is for one name: the upload so far is void.
    e->dataset = json::StringOr(r, "dataset");
    e->name = json::StringOr(r, "name");
    e->session.reset();
    e->parts.clear();
    e->completed = false;
  } else if (t == "session") {
    UploadSession s;
    s.job_id = json::StringOr(r, "job_id");
    s.upload_id = json::StringOr(r, "upload_id");
    s.part_size = static_cast<uint64_t>(json::IntOr(r, "part_size"));
    s.num_parts = static_cast<uint32_t>(json::IntOr(r, "num_parts"));
    s.overwrite = json::BoolOr(r, "overwrite");
    e->session = s;
    e->parts.clear();
    e->completed = false;
  } else if (t == "part") {
    e->parts[static_cast<uint32_t>(json::IntOr(r, "n"))] = json::StringOr(r, "etag");
  } else if (t == "completed") {
    e->completed = true;
  } else if (t == "confirmed") {
    e->confirmed = true;
    e->remote_sha256 = json::StringOr(r, "sha256");
    e->remote_version = json::IntOr(r, "version");
  } else if (t == "failed") {
    e->failed = true;
    e->error = json::StringOr(r, "error");
  } else if (t == "retry") {
    e->failed = false;
    e->error.clear();
  }
}

StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& cache_dir, std::vector<std::string>* warnings) {
  std::unique_ptr<Journal> j(new Journal());
  j->dir_ = cache_dir;
  j->receipts_ = std::make_unique<ReceiptLog>(j->ReceiptsPath());
  RETURN_IF_ERROR(MakeDirs(cache_dir + "/journal"));
  RETURN_IF_ERROR(MakeDirs(cache_dir + "/data"));
  RETURN_IF_ERROR(MakeDirs(cache_dir + "/read"));
  ::chmod(cache_dir.c_str(), 0700);
  j->spares_ = std::make_unique<SpareFiles>(cache_dir + "/spare", kMaxSpares);
  ASSIGN_OR_RETURN(j->data_dir_, DurableDir::Open(cache_dir + "/data"));
  ASSIGN_OR_RETURN(j->journal_dir_, DurableDir::Open(cache_dir + "/journal"));
  ASSIGN_OR_RETURN(j->lock_fd_, LockDir(cache_dir, "cache dir " + cache_dir, "another ingestfs process"));

  auto warn = [&](const std::string& w) {
    if (warnings != nullptr) warnings->push_back(w);
  };
  std::set<std::string> known;
  for (const std::string& file : ListDir(cache_dir + "/journal").value_or({})) {
    if (!EndsWith(file, ".jnl")) continue;
    std::string id = file.substr(0, file.size() - 4);
    std::string path = j->JournalPath(id);
    auto replay = ReplayRecords(path);
    if (!replay.ok()) {
      warn("cannot read " + path + ": " + replay.status().message());
      continue;
    }
    for (const std::string& w : replay->warnings) warn(w);
    Entry e;
    for (const json::Document& rec : replay->records) ApplyRecord(rec, &e);
    std::string data = cache_dir + "/data/" + id;
    if (e.id != id || e.unlinked) {
      // No readable `add`: the process died while recording it, before the upload could start.
      // Or unlinked while open: its last descriptor went away with the process.
      if (e.id != id) warn(path + ": no add record; the upload was never recorded, removing its leftovers");
      ::unlink(path.c_str());
      ::unlink(data.c_str());
      continue;
    }
    e.data_path = data;
    if (!e.confirmed && !PathExists(data) && PathExists(j->KeptPath(id))) {
      e.confirmed = true;  // moved to read/ after the platform confirmed it (RecordConfirmed)
    }
    if (e.confirmed) {
      j->spares_->Give(path);
      j->spares_->Give(data);
      continue;
    }
    struct stat st;
    bool data_ok = ::stat(data.c_str(), &st) == 0;
    if (data_ok && !e.closed && !e.interrupted) {
      known.insert(id);
      j->entries_[id] = e;
      j->next_seq_ = std::max(j->next_seq_, e.seq + 1);
      uint64_t have = static_cast<uint64_t>(st.st_size);
      if (e.flushed && !e.flushed_boot.empty() && e.flushed_boot == BootId() && have == e.flushed_size) {
        // Its last writer had closed it; the process died before recording that. Every byte it
        // wrote is in the page cache of this same boot: that is the file.
        auto closed = j->Close(id);
        if (!closed.ok()) warn(path + ": closing a version its writer had closed failed: " + closed.status().message());
        continue;
      }
      // The writer never closed it (or a reboot may have lost bytes it wrote): not the file.
      std::string reason = e.flushed && e.flushed_boot != BootId()
                               ? "the machine restarted before this version was synced; " + std::to_string(have) +
                                     " bytes remain and may not be what was written"
                               : "interrupted: the mount stopped while it was being written; " +
                                     std::to_string(have) + " bytes reached the cache";
      reason += " (not uploaded: write the file again, or ingestfs retry --accept-partial)";
      Status rec = j->RecordInterrupted(id, reason);
      if (!rec.ok()) warn(path + ": recording an interrupted write failed: " + rec.message());
      warn(e.dataset + "/" + e.name + ": " + reason);
      continue;
    }
    if (!data_ok || (e.closed && static_cast<uint64_t>(st.st_size) != e.size)) {
      if (!e.failed) {
        e.failed = true;
        e.error = "the cache copy of " + e.name + " is missing or has the wrong size";
        warn(path + ": " + e.error);
      }
    }
    known.insert(id);
    j->next_seq_ = std::max(j->next_seq_, e.seq + 1);
    j->entries_[id] = e;
  }
  for (const std::string& file : ListDir(cache_dir + "/data").value_or({})) {
    if (known.count(file) == 0) {
      warn(cache_dir + "/data/" + file + ": not in the journal (an interrupted add), removed");
      j->spares_->Give(cache_dir + "/data/" + file);
    }
  }
  return j;
}

Journal::~Journal() = default;

void Journal::RecordPid() { WritePid(lock_fd_.get()); }

Status Journal::NewJournalFile(const std::string& id) {
  if (spares_->Take(JournalPath(id))) return Status::Ok();
  UniqueFd fd(::open(JournalPath(id).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::FromErrno(errno, "create " + JournalPath(id));
  return Status::Ok();
}

Status Journal::Append(const std::string& id, const std::string& record, bool durable) {
  ASSIGN_OR_RETURN(RecordWriter w, RecordWriter::Open(JournalPath(id), durable));
  return w.Append(record, durable);
}

StatusOr<Entry> Journal::AddCopy(const std::string& source, Entry meta, const std::function<void(uint64_t)>& copied) {
  std::string id = RandomHex(8);
  std::string data = dir_ + "/data/" + id;
  std::string tmp = data + ".tmp";
  uint64_t size = 0;
  spares_->Take(tmp);
  auto sha = CopyAndHash(source, tmp, &size, copied);
  if (!sha.ok()) {
    ::unlink(tmp.c_str());
    return sha.status().Annotate("copying " + source + " into the cache");
  }
  Status st = RenameDurable(tmp, data);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  meta.id = id;
  meta.size = size;
  meta.sha256 = *sha;
  meta.data_path = data;
  meta.source = meta.source.empty() ? source : meta.source;
  meta.closed = true;
  st = RecordAdd(meta, true);
  if (!st.ok()) {
    ::unlink(data.c_str());
    return st.Annotate("recording " + source + " in the journal");
  }
  return meta;
}

Status Journal::RecordAdd(Entry& meta, bool durable) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    meta.seq = next_seq_++;
  }
  meta.created_at = Iso8601Utc(std::time(nullptr));
  std::string rec = json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "add");
    json::KeyString(w, "id", meta.id);
    json::KeyInt(w, "seq", meta.seq);
    json::KeyString(w, "api", meta.api);
    json::KeyString(w, "dialect", meta.dialect);
    json::KeyString(w, "dataset", meta.dataset);
    json::KeyString(w, "name", meta.name);
    json::KeyString(w, "content_type", meta.content_type);
    json::KeyString(w, "source", meta.source);
    if (meta.closed) {
      json::KeyInt(w, "size", static_cast<int64_t>(meta.size));
      json::KeyString(w, "sha256", meta.sha256);
    } else {
      json::Key(w, "open");
      w.Bool(true);
    }
    json::KeyString(w, "created_at", meta.created_at);
    if (meta.remote_hint) {
      json::Key(w, "remote");
      w.Bool(true);
    }
  });
  Status st = NewJournalFile(meta.id);
  if (st.ok()) st = Append(meta.id, rec, durable);
  if (st.ok() && durable) st = journal_dir_->Sync();  // the file's name
  if (!st.ok()) {
    ::unlink(JournalPath(meta.id).c_str());
    return st;
  }
  std::lock_guard<std::mutex> lock(mu_);
  entries_[meta.id] = meta;
  return Status::Ok();
}

StatusOr<Entry> Journal::AddOpen(Entry meta, const std::string& initial_content) {
  std::string id = RandomHex(8);
  std::string data = dir_ + "/data/" + id;
  if (initial_content.empty()) {
    if (!spares_->Take(data)) {
      UniqueFd fd(::open(data.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!fd.valid()) return Status::FromErrno(errno, "create " + data);
    }
  } else {
    uint64_t size = 0;
    auto sha = CopyAndHash(initial_content, data, &size);
    if (!sha.ok()) {
      ::unlink(data.c_str());
      return sha.status();
    }
  }
  meta.id = id;
  meta.data_path = data;
  meta.closed = false;
  meta.size = 0;
  meta.sha256.clear();
  Status st = RecordAdd(meta, false);
  if (!st.ok()) {
    ::unlink(data.c_str());
    return st;
  }
  return meta;
}

StatusOr<Entry> Journal::Close(const std::string& id, SequentialDigest* known) {
  std::string path;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return Status(Code::kNotFound, "no journal entry " + id);
    path = it->second.data_path;
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + path);
  if (::fsync(fd.get()) != 0) return Status::FromErrno(errno, "fsync " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  std::optional<std::string> hex = known != nullptr ? known->Finish(size) : std::nullopt;
  if (!hex) {  // not hashed as it was written: read it
    Digest sha(Digest::Kind::kSha256);
    ASSIGN_OR_RETURN(size, DigestRange(fd.get(), 0, size, sha, path));
    hex = HexEncode(sha.Finish());
  }
  // The names of the data file and of the journal file were not synced when they were made.
  RETURN_IF_ERROR(data_dir_->Sync());
  RETURN_IF_ERROR(Update(id, json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "closed");
    json::KeyInt(w, "size", static_cast<int64_t>(size));
    json::KeyString(w, "sha256", *hex);
  })));
  RETURN_IF_ERROR(journal_dir_->Sync());
  auto e = Get(id);
  if (!e) return Status(Code::kNotFound, "journal entry " + id + " was removed meanwhile");
  return *e;
}

Status Journal::Sync(const std::string& id) {
  UniqueFd fd(::open(JournalPath(id).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + JournalPath(id));
  if (::fdatasync(fd.get()) != 0) return Status::FromErrno(errno, "fdatasync " + JournalPath(id));
  RETURN_IF_ERROR(data_dir_->Sync());
  return journal_dir_->Sync();
}

Status Journal::RecordReopened(const std::string& id) { return Update(id, R"({"t":"reopened"})"); }

Status Journal::RecordFlushed(const std::string& id, uint64_t size) {
  return Update(id, json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "flushed");
    json::KeyString(w, "boot", BootId());
    json::KeyInt(w, "size", static_cast<int64_t>(size));
  }), false);
}

Status Journal::RecordWriting(const std::string& id) { return Update(id, R"({"t":"writing"})", false); }

Status Journal::RecordInterrupted(const std::string& id, const std::string& reason) {
  std::string path;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return Status(Code::kNotFound, "no journal entry " + id);
    path = it->second.data_path;
  }
  struct stat st;
  uint64_t size = ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  Status rec = Update(id, json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "interrupted");
    json::KeyString(w, "reason", reason);
    json::KeyInt(w, "size", static_cast<int64_t>(size));
  }));
  if (!rec.ok()) {
    // Not recorded (the disk may be full): still never uploaded by this process. A replay finds
    // no `flushed` without a write after it, and counts it interrupted again.
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end()) {
      it->second.interrupted = true;
      it->second.error = reason;
      it->second.size = size;
    }
  }
  return rec;
}

StatusOr<Entry> Journal::AcceptPartial(const std::string& id) {
  auto e = Get(id);
  if (!e) return Status(Code::kNotFound, "no journal entry " + id);
  if (!e->interrupted) return Status(Code::kFailedPrecondition, e->name + " was not interrupted");
  if (!e->closed) RETURN_IF_ERROR(Close(id).status());
  RETURN_IF_ERROR(Update(id, R"({"t":"accepted"})"));
  e = Get(id);
  if (!e) return Status(Code::kNotFound, "journal entry " + id + " was removed meanwhile");
  return *e;
}

Status Journal::RecordUnlinked(const std::string& id) { return Update(id, R"({"t":"unlinked"})"); }

Status Journal::RecordRenamed(const std::string& id, const std::string& dataset, const std::string& name) {
  return Update(id, json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "renamed");
    json::KeyString(w, "dataset", dataset);
    json::KeyString(w, "name", name);
  }));
}

Status Journal::Discard(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return Status(Code::kNotFound, "no journal entry " + id);
  // The journal file goes first: a crash in between leaves an orphan data file, which the next
  // open removes, never a journal entry without its bytes.
  spares_->Give(JournalPath(id));
  if (PathExists(JournalPath(id))) return Status(Code::kInternal, "cannot remove " + JournalPath(id));
  (void)journal_dir_->Sync();
  spares_->Give(it->second.data_path);
  entries_.erase(it);
  return Status::Ok();
}

Status Journal::Update(const std::string& id, const std::string& record, bool durable) {
  // The append (and its fdatasync) runs without the lock, so that files do not queue behind
  // each other's syncs. One file's records come from one thread at a time, except `part`
  // records of parallel workers, which commute; O_APPEND keeps each line whole.
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.count(id) == 0) return Status(Code::kNotFound, "no journal entry " + id);
  }
  RETURN_IF_ERROR(Append(id, record, durable));
  auto doc = json::Parse(record, "record");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return Status(Code::kNotFound, "journal entry " + id + " was removed meanwhile");
  ApplyRecord(*doc, &it->second);
  return Status::Ok();
}

Status Journal::RecordSession(const std::string& id, const UploadSession& s) {
  return Update(id, json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "session");
    json::KeyString(w, "job_id", s.job_id);
    json::KeyString(w, "upload_id", s.upload_id);
    json::KeyInt(w, "part_size", static_cast<int64_t>(s.part_size));
    json::KeyInt(w, "num_parts", s.num_parts);
    json::Key(w, "overwrite");
    w.Bool(s.overwrite);
  }), false);
}

Status Journal::RecordPart(const std::string& id, uint32_t n, const std::string& etag) {
  return Update(id, json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "part");
    json::KeyInt(w, "n", n);
    json::KeyString(w, "etag", etag);
  }), false);
}

Status Journal::RecordCompleted(const std::string& id) {
  return Update(id, R"({"t":"completed"})");
}

Status Journal::RecordFailed(const std::string& id, const std::string& error) {
  return Update(id, json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "failed");
    json::KeyString(w, "error", error);
  }));
}

Status Journal::RecordRetry(const std::string& id) { return Update(id, R"({"t":"retry"})"); }

Status Journal::RecordConfirmed(const std::string& id, const std::string& remote_sha256, int64_t remote_version,
                                std::string* kept_path) {
  if (auto e = Get(id)) {
    Receipt r{std::time(nullptr), e->dataset, e->name, e->size, remote_sha256.empty() ? e->sha256 : remote_sha256,
              e->session ? e->session->job_id : "", remote_version};
    Status st = receipts_->Append(r);
    if (!st.ok()) {
      // Not confirmed here either: the next attempt follows the same job and writes both.
      return st.Annotate("writing the receipt of " + e->dataset + "/" + e->name);
    }
  }
  // A copy kept for reading is moved to read/ only after the platform confirmed it, so finding it
  // there proves the confirmation (see Open): the record need not be synced first. A copy that is
  // removed leaves no such proof, so then the record is made durable before.
  bool keep = kept_path != nullptr;
  RETURN_IF_ERROR(Update(id, json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "confirmed");
    json::KeyString(w, "sha256", remote_sha256);
    json::KeyInt(w, "version", remote_version);
  }), !keep));
  std::string data_path;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return Status(Code::kNotFound, "journal entry " + id + " was removed meanwhile");
    data_path = it->second.data_path;
  }
  bool kept = keep && ::rename(data_path.c_str(), KeptPath(id).c_str()) == 0;
  if (kept) {
    *kept_path = KeptPath(id);
  } else {
    if (keep) RETURN_IF_ERROR(Sync(id));  // no proof in read/: the record itself must be durable
    spares_->Give(data_path);
  }
  spares_->Give(JournalPath(id));
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(id);
  return Status::Ok();
}

std::optional<Entry> Journal::Get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

std::vector<Entry> Journal::Unfinished() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Entry> out;
  for (const auto& [id, e] : entries_) out.push_back(e);
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.seq < b.seq; });
  return out;
}

}  // namespace ingestfs::cache
