// Journal: the durable truth about what must still be uploaded.
//
// Layout of a cache dir:
//   lock                 flock'ed by the one process using the dir
//   data/<id>            the bytes of one version of one file (the cache copy)
//   spare/               emptied files of finished uploads, reused for new ones (spare_files.h)
//   journal/<id>.jnl     that upload's records (common/record_log framing), appended in order:
//                          add        dataset, name, content type, seq, ... and, for a copied
//                                     file, size and sha256 (a file written through the mount
//                                     gets them with `closed`)
//                          flushed    the last writer's close(2): the size then and this boot's id
//                                     (not synced: it only has to outlive this process)
//                          writing    written again after `flushed` (not synced)
//                          closed     the writer closed it: size, sha256
//                          interrupted  its writer never closed it, or a write failed: the
//                                     reason and the size that reached the cache; never uploaded
//                                     unless `accepted`
//                          accepted   the user chose to upload what an interrupted version holds
//                          unlinked   unlinked while still open: removed when its last
//                                     descriptor closes, or at the next open
//                          reopened   opened for write again: the upload so far is void
//                          renamed    new dataset and name (the upload so far is void)
//                          discarded  unlinked before it reached the platform (then removed)
//                          session    what the platform handed out: job id, upload id, part plan
//                          part       part N is stored, with its ETag
//                          completed  `complete` was accepted
//                          confirmed  the platform holds the bytes (sha256, version)
//                          failed     a permanent error, with the reason
//                          retry      a failed upload goes back in the queue
// An upload's bytes are durable in data/ before its `add` record is written, and its cache copy
// and journal file are removed only after `confirmed` is durable. Presigned URLs are never
// journaled (they are secrets and expire); a resumed upload asks for fresh ones.
//
// A version still open when the process died is what the writer left behind: it is `closed`
// at the next open only when its last writer had closed it (`flushed`) in this same boot (the
// page cache still holds every byte it wrote) and the copy still has that size; otherwise it is
// `interrupted`, and stays in the cache, shown, until it is written again or accepted.
//
// Thread safety: all methods are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cache/sequential_digest.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/sync_group.h"
#include "cache/receipts.h"
#include "common/spare_files.h"
#include "common/status.h"

namespace ingestfs::cache {

// What the platform handed out for one upload attempt (never URLs).
struct UploadSession {
  std::string job_id;
  std::string upload_id;  // empty for a single PUT
  uint64_t part_size = 0;
  uint32_t num_parts = 1;
  bool overwrite = false;  // the reupload endpoint was used
};

struct Entry {
  std::string id;
  int64_t seq = 0;  // arrival order: lower is older
  std::string api;
  std::string dialect = "ingest";
  std::string dataset;  // name
  std::string name;     // file name inside the dataset
  std::string content_type = "application/octet-stream";
  std::string source;  // where the bytes came from, for messages
  uint64_t size = 0;
  std::string sha256;
  std::string created_at;
  std::string data_path;
  // The name was the platform's when this version began (the mount knew it from a listing or an
  // earlier upload): its upload starts with the reupload endpoint. Only a hint: Begin goes the
  // other way when the platform says the file is not there (or is).
  bool remote_hint = false;

  std::optional<UploadSession> session;
  std::map<uint32_t, std::string> parts;  // done parts: number -> ETag
  bool completed = false;
  bool confirmed = false;
  std::string remote_sha256;
  int64_t remote_version = 0;
  bool failed = false;
  std::string error;
  bool closed = true;  // false while a writer has it open (mount)
  // Never uploaded while set (the writer did not finish it: `error` says why); `size` is what
  // reached the cache.
  bool interrupted = false;
  bool flushed = false;      // its last writer closed it (`flushed` with nothing written after)
  std::string flushed_boot;  // the boot that happened in
  uint64_t flushed_size = 0;
  bool unlinked = false;     // unlinked while open: to be removed, never uploaded
};

// This boot's id (/proc/sys/kernel/random/boot_id); "" where the kernel does not say.
std::string BootId();

class Journal {
 public:
  // Opens (creating) `cache_dir`, takes its lock, and replays every journal file. Damaged records,
  // missing cache copies and orphans are reported in `warnings`, never fatal and never silently
  // dropped: an entry whose bytes are gone is kept as failed with that reason.
  static StatusOr<std::unique_ptr<Journal>> Open(const std::string& cache_dir, std::vector<std::string>* warnings);
  ~Journal();

  // Copies `source` into the cache (SHA-256 computed on the way, fsynced, published by rename)
  // and then records the entry. `meta` gives api, dialect, dataset, name, content type.
  // `copied` (when given) hears the bytes copied so far, from another thread, as the copy goes.
  StatusOr<Entry> AddCopy(const std::string& source, Entry meta, const std::function<void(uint64_t)>& copied = nullptr);

  // Makes everything recorded for `id` durable (its journal file, and the names of its files):
  // fsync(2) of a file being written through the mount.
  Status Sync(const std::string& id);
  // Records a new local version whose bytes will be written in place at the returned entry's
  // data_path (the mount). With `initial_content` the data file starts as a copy of that file
  // (modifying a file without truncating it); otherwise empty. Nothing is synced yet: a version
  // becomes durable when it is closed (Close), as the contract asks of closed files.
  StatusOr<Entry> AddOpen(Entry meta, const std::string& initial_content = "");
  // The writer closed it: fsyncs the data file and both directories, measures and hashes it,
  // and records `closed` durably. The hash comes from `known` when that followed every byte
  // written; otherwise the file is read.
  StatusOr<Entry> Close(const std::string& id, SequentialDigest* known = nullptr);
  // Opened for write again: the session so far is void (and an interruption forgotten).
  Status RecordReopened(const std::string& id);
  // The last writer closed the file (close(2)) with `size` bytes in it. Not synced: it only has
  // to outlive this process (see the top of this file). Writing again after it: RecordWriting.
  Status RecordFlushed(const std::string& id, uint64_t size);
  Status RecordWriting(const std::string& id);
  // The writer did not finish this version (`reason`): it is never uploaded unless accepted.
  // Recorded durably, with the size the cache copy has.
  Status RecordInterrupted(const std::string& id, const std::string& reason);
  // The user wants what an interrupted version holds uploaded: closes it (hashing what is there)
  // and records the choice.
  StatusOr<Entry> AcceptPartial(const std::string& id);
  // Unlinked while a descriptor still has it open: recorded durably, so that a crash before the
  // last close removes it instead of uploading it; Discard follows at that close.
  Status RecordUnlinked(const std::string& id);
  Status RecordRenamed(const std::string& id, const std::string& dataset, const std::string& name);
  // Unlinked before it reached the platform: removes the cache copy and the journal file.
  Status Discard(const std::string& id);

  // `session` and `part` records are written but not synced: they only spare work on a resume
  // (after a power loss without them the upload starts over), and the `completed` record, which
  // is synced, makes them durable with it (same file).
  Status RecordSession(const std::string& id, const UploadSession& session);  // forgets done parts
  Status RecordPart(const std::string& id, uint32_t part_number, const std::string& etag);
  Status RecordCompleted(const std::string& id);
  Status RecordFailed(const std::string& id, const std::string& error);
  Status RecordRetry(const std::string& id);
  // Appends the receipt (receipts.csv) durably, records the confirmation, then removes the
  // journal file and the cache copy, or, with `kept_path`, moves the copy to read/ (a plain cache
  // of platform content) and says where. When the receipt cannot be written (a full disk), nothing
  // is recorded and the error is returned: never a confirmed upload without its receipt.
  Status RecordConfirmed(const std::string& id, const std::string& remote_sha256, int64_t remote_version,
                         std::string* kept_path = nullptr);

  std::optional<Entry> Get(const std::string& id) const;
  // Where RecordConfirmed(id, ..., &kept) moves the cache copy. The move is one rename, so at
  // any moment the bytes are at the entry's data_path or here.
  std::string KeptPath(const std::string& id) const { return dir_ + "/read/" + id; }
  // Entries not yet confirmed, oldest first. Failed ones are included.
  std::vector<Entry> Unfinished() const;
  const std::string& dir() const { return dir_; }
  // Writes this process's pid into the cache dir's lock file: after a daemon's fork, the pid that
  // now holds the lock (`ingestfs unmount` waits for that process to exit).
  void RecordPid();
  // Keeps about `n` spare files made ahead in idle time (a mount, where bursts of new files
  // meet a person waiting).
  void MakeSparesAhead(size_t n) { spares_->StartFiller(n); }
  // <cache dir>/receipts.csv: one line per confirmed upload (see receipts.h).
  std::string ReceiptsPath() const { return dir_ + "/receipts.csv"; }

 private:
  Journal() = default;
  Status Append(const std::string& id, const std::string& record, bool durable = true);  // thread-safe
  // Assigns seq and created_at, writes the `add` record (synced when `durable`), and adds the
  // entry.
  Status RecordAdd(Entry& meta, bool durable);
  // Appends `record` to entry `id` (durably unless `durable` is false), then applies it to the
  // in-memory entry.
  Status Update(const std::string& id, const std::string& record, bool durable = true);
  std::string JournalPath(const std::string& id) const { return dir_ + "/journal/" + id + ".jnl"; }
  // Makes the empty journal file of a new entry (a spare when there is one).
  Status NewJournalFile(const std::string& id);

  std::string dir_;
  UniqueFd lock_fd_;
  std::unique_ptr<ReceiptLog> receipts_;
  std::unique_ptr<SpareFiles> spares_;
  std::unique_ptr<DurableDir> data_dir_, journal_dir_;  // names made there become durable
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;  // GUARDED_BY(mu_)
  int64_t next_seq_ = 1;                  // GUARDED_BY(mu_)
};

// Applies one journal record to `e` (exposed for tests). Unknown types are ignored.
void ApplyRecord(const json::Value& record, Entry* e);

}  // namespace ingestfs::cache
