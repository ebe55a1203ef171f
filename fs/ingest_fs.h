// IngestFs: the mount's logic, without FUSE types (the adapter in fuse_ops.cc turns its results
// into replies; errors become errno in one place there).
//
// The view: the root lists datasets (the platform's, cached briefly, plus ones made with mkdir);
// inside a dataset, folders are name prefixes and files are the platform's files merged with
// local versions not yet confirmed. A file written here lives in its cache copy (the journal
// entry's data file), written in place; when its last writer closes it is fsynced, hashed and
// recorded, and after `settle` it is uploaded by the scheduler. Temporary names (rsync's
// .name.XXXXXX, ~$*, *.tmp, ...) stay local until renamed to a real name.
//
// A file version's states and every transition (versions.cc; unlink and rename in
// namespace_ops.cc). FUSE operations and upload workers both move a version; the scheduler's
// lock makes the one contested step atomic: Commit, just before `complete` is sent, after which
// the platform will hold the version whatever the mount does.
//
//  from                  event                                   to                    by                journaled
//  -                     create, open for write, truncate        writing               FUSE (BeginWrite) add (open)
//  closed/queued/failed/ open for write                          writing               FUSE (BeginWrite) reopened
//    interrupted           (an upload is stopped; a committed one
//                          leaves the name the platform's)
//  writing               a write into the cache copy fails,      writing, failed-write FUSE              -
//                          or the closer is dying of a signal
//  writing               last writer's close(2) by its opener    writing, flushed      FUSE (Flush)      flushed (+boot id)
//  writing, flushed      write or ftruncate                      writing               FUSE (Rewriting)  writing
//  writing               last release                            closed, then queued   FUSE (EndWrite)   closed (synced)
//                                                                  after settle
//  writing, failed-write last release                            interrupted           FUSE (EndWrite)   interrupted
//  writing               the daemon died: flushed in this boot,  closed, queued        Journal::Open     closed
//                          copy of that size
//  writing               the daemon died: otherwise              interrupted           Journal::Open     interrupted
//  interrupted           retry --accept-partial                  closed, queued        control           closed, accepted
//  queued                due                                     uploading             worker            session, part
//  uploading             Commit (complete about to be sent)      committed             worker            completed
//  queued, uploading     unlink / rename                         held: discarded /     FUSE              discarded /
//                                                                  renamed, queued                         renamed
//  committed             unlink / rename                         unchanged (EPERM)     FUSE              -
//  committed             job done, same sha256                   confirmed             worker            receipt, confirmed
//  committed             job not done within job_timeout         queued (new session)  worker            session
//  uploading             permanent error                         failed                worker            failed
//  failed                retry                                   queued                control           retry
//  any, open somewhere   unlink                                  unlinked; discarded   FUSE (Release)    unlinked
//                                                                  at the last close
//  any, temporary name   any queueing (close, resume, retry)     stays local           scheduler         -
//
// Thread safety: every method is thread-safe. Locks:
//   ns_mu_       shared by operations on one file (create, open for write, release, truncate,
//                mkdir); exclusive for the ones that move or remove names (rename, unlink, rmdir).
//   version_mu   one per file node: serialises changes of which version the file has.
//   mu_          guards the tree and the handle table; held only briefly, never across I/O.
// LOCK ORDER: ns_mu_, then a node's version_mu, then mu_. None is held while waiting on the
// network, except during Scheduler::Hold (bounded by the part in flight) and mkdir's dataset
// creation. The kernel already serialises create/mkdir/unlink/rename within one directory.
#pragma once

#include <sys/statvfs.h>
#include <sys/types.h>

#include <chrono>
#include <ctime>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/cache_space.h"
#include "cache/direct_write.h"
#include "cache/journal.h"
#include "cache/listing_shelf.h"
#include "cache/mtime_store.h"
#include "common/file_util.h"
#include "common/status.h"
#include "upload/bw_timetable.h"
#include "upload/dialect.h"
#include "upload/health.h"
#include "upload/scheduler.h"

namespace ingestfs::fs {

struct FsConfig {
  std::string api;
  std::string dialect = "ingest";
  std::string cache_dir;
  std::chrono::milliseconds settle{2000};
  std::vector<std::string> temp_patterns;  // fnmatch(3) patterns on the base name
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t umask = 022;
  std::chrono::milliseconds listing_ttl{30000};
  // Bound on the platform files kept as listing entries (not held by anything), all datasets
  // together; past it, the datasets listed longest ago are listed again when next needed.
  size_t listing_cache_max = 1000000;
  std::string control_socket;  // shown as user.ingestfs.control on the root
  // close(2) (and fsync) return only once the platform confirmed the file; EIO if it failed.
  bool sync_upload = false;
  std::chrono::milliseconds sync_timeout{std::chrono::hours(1)};
  // Shown in the status (the scheduler flags files waiting longer than this as stalled).
  std::chrono::milliseconds stale_after{std::chrono::hours(1)};
  // Shown in the status: how long a platform job may take before the file is sent again.
  std::chrono::milliseconds job_timeout{std::chrono::minutes(5)};
  // Large aligned writes go into the cache copy with O_DIRECT (cache_writes=direct), where
  // the cache's filesystem offers it.
  bool direct_writes = true;
  // Shown in the status: where -o metrics= serves (http://HOST:PORT/metrics), or "".
  std::string metrics_url;
  // Shown in the status: the upload cap's timetable (-o bwlimit=), if any.
  std::optional<upload::BwTimetable> bwlimit;
};

// The default temporary-name patterns.
std::vector<std::string> DefaultTempPatterns();

struct Attr {
  uint64_t ino = 0;
  bool is_dir = false;
  uint64_t size = 0;
  int64_t mtime = 0;
  mode_t mode = 0;
  uint32_t nlink = 1;
  uid_t uid = 0;
  gid_t gid = 0;
  bool changing = false;  // a file of .ingestfs/: its size changes on its own (no caching)
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  bool is_dir = false;
};

class IngestFs {
 public:
  static constexpr uint64_t kRootIno = 1;
  // The read-only status folder at the root (never a dataset; a platform dataset of that name
  // is not shown).
  static constexpr char kStatusDir[] = ".ingestfs";
  static constexpr uint64_t kStatusDirIno = 2, kFirstStatusFileIno = 3, kLastStatusFileIno = 6;
  static constexpr size_t kMaxNameBytes = 255;  // NAME_MAX, as Statfs says

  // `mtimes` may be null (then mtimes are kept only while mounted).
  IngestFs(FsConfig cfg, upload::Dialect& dialect, cache::Journal& journal, cache::MtimeStore* mtimes = nullptr);
  // The scheduler is built after the filesystem (it calls OnConfirmed); attach it before use.
  void AttachScheduler(upload::Scheduler* scheduler) { scheduler_ = scheduler; }
  // The cache's bounds (cache_max, cache_min_free); writes and downloads ask it for room.
  void AttachCacheSpace(cache::CacheSpace* space) { space_ = space; }
  // How the platform answers, shown in the status (when attached).
  void AttachHealth(const upload::PlatformHealth* health) { health_ = health; }
  // Puts every unfinished journal entry into the tree (after a crash, reboot or unmount).
  void RestoreFromJournal();
  // A file was confirmed by the platform (called by the scheduler's workers).
  void OnConfirmed(const cache::Entry& entry, const upload::UploadOutcome& outcome);
  bool IsTemporaryName(const std::string& base) const;
  // A platform file that only the kernel's cache holds: the kernel may be asked to drop it, so
  // that its node can go (set by the FUSE adapter, which asks from a thread of its own).
  // `state` tells the status whether the kernel takes them and how many were asked.
  void SetPruneHint(std::function<void(uint64_t ino)> hint, std::function<std::pair<bool, uint64_t>()> state);
  // An operation refused because the platform cannot express it (mv, rm of what it holds): kept
  // (the latest kRefusedKept) for failed.txt and the status, so that someone who only sees the
  // share learns why. Thread-safe; takes only refused_mu_.
  void NoteRefused(const std::string& what, const std::string& why);
  static constexpr size_t kRefusedKept = 100;
  // A directory snapshot (opendir) was let go: nodes made for it that the kernel never took are
  // shelved again.
  void DirDone(const std::vector<DirEntry>& entries);
  // Nodes in memory and shelved listing entries (shown in the status, for figures and tests).
  std::pair<size_t, size_t> MemoryCounts();
  // Files (not temporary) open for writing, or closed but not yet recorded: "dataset/name".
  std::vector<std::string> OpenFiles();
  // The mount's status as JSON: files open, pending, uploading, processing, failed, completed
  // (what `ingestfs status --json` prints and .ingestfs/status.json holds).
  std::string StatusJson();
  // True for the files of .ingestfs/ (the adapter serves them with direct I/O).
  static bool IsStatusFile(uint64_t ino) { return ino >= kFirstStatusFileIno && ino <= kLastStatusFileIno; }

  StatusOr<Attr> Lookup(uint64_t parent, const std::string& name);
  void Forget(uint64_t ino, uint64_t n);
  // Several forgets at once (FORGET_MULTI): (ino, n) pairs.
  void ForgetMany(const std::vector<std::pair<uint64_t, uint64_t>>& forgets);
  // For readdirplus: the kernel now holds one more lookup of `ino`. False if it is gone.
  bool AddLookup(uint64_t ino);
  StatusOr<Attr> GetAttr(uint64_t ino);
  StatusOr<Attr> SetAttr(uint64_t ino, std::optional<uint64_t> size, std::optional<int64_t> mtime,
                         std::optional<uint64_t> fh);
  StatusOr<std::vector<DirEntry>> ReadDir(uint64_t ino);
  StatusOr<Attr> Mkdir(uint64_t parent, const std::string& name);
  Status Rmdir(uint64_t parent, const std::string& name);
  // symlink, link and mknod: EPERM, with a log line naming the file and `what` it would be.
  Status RefuseSpecial(uint64_t parent, const std::string& name, const std::string& what);
  Status Unlink(uint64_t parent, const std::string& name);
  Status Rename(uint64_t parent, const std::string& name, uint64_t new_parent, const std::string& new_name,
                unsigned flags);
  // `opener`: the calling process (see Flush).
  StatusOr<std::pair<Attr, uint64_t>> Create(uint64_t parent, const std::string& name, int flags, pid_t opener = 0);
  StatusOr<uint64_t> Open(uint64_t ino, int flags, pid_t opener = 0);
  // Whether the kernel must not cache this handle's I/O (the open's reply says FOPEN_DIRECT_IO).
  bool Uncached(uint64_t fh);
  StatusOr<size_t> Read(uint64_t fh, char* buf, size_t size, uint64_t off);
  // Writes into the cache copy. `written(n)` (when given) is called as soon as the bytes are
  // there, before they are added to the version's running digest, so that the writer can go on
  // meanwhile; it is not called when the write fails.
  StatusOr<size_t> Write(uint64_t fh, const char* buf, size_t size, uint64_t off,
                         const std::function<void(size_t)>& written = {});
  // For zero-copy writes: the cache copy's fd and the offset to write at (the end of the file
  // for O_APPEND). The fd stays valid until the handle is released. Call Wrote() afterwards,
  // and Invalidate() the digest: these bytes were not hashed.
  struct WriteTarget {
    int fd = -1;
    cache::DirectWriter* direct = nullptr;  // the handle's, when this write may go direct
    std::shared_ptr<cache::SequentialDigest> digest;  // the version's
    uint64_t offset = 0;
    uint64_t ino = 0;
  };
  // `size` bytes are about to be written: room for what they add is asked of the cache first
  // (they wait, or fail with ENOSPC, when it is full; that version is then not uploaded).
  StatusOr<WriteTarget> PrepareWrite(uint64_t fh, uint64_t off, uint64_t size);
  void Wrote(uint64_t ino);
  Status Fsync(uint64_t fh);
  // close(2) of a descriptor by process `closer`: with sync_upload, the last writer's flush
  // uploads and waits. Only the close by the process that opened the handle counts as its writer
  // finishing the file (a forked child closing its inherited copy does not). `writer_killed`
  // (when not empty) says the closing process is dying of a signal: the version it was writing
  // is interrupted, not the file.
  Status Flush(uint64_t fh, pid_t closer = 0, const std::string& writer_killed = "");
  // Whether `fh` writes a version and is its only writer (its close may finish the version).
  bool IsLastWriter(uint64_t fh);
  // A write into the cache copy of `ino` failed (ENOSPC, EIO, ...): this version is not uploaded.
  void WriteFailed(uint64_t ino, const Status& why);
  // `ingestfs retry --accept-partial`: uploads what the interrupted version of "dataset/name"
  // holds.
  Status AcceptPartial(const std::string& path);
  Status Release(uint64_t fh);
  StatusOr<std::string> GetXattr(uint64_t ino, const std::string& name);
  StatusOr<std::vector<std::string>> ListXattr(uint64_t ino);
  StatusOr<struct statvfs> Statfs();

 private:
  enum class Special { kNone, kStatusDir, kStatusTxt, kStatusJson, kFailedTxt, kReceiptsCsv };
  struct Node {
    uint64_t ino = 0;
    Special special = Special::kNone;
    uint64_t parent = 0;
    std::string name;
    bool is_dir = false;
    std::string dataset;  // "" for the root
    std::string rel;      // path inside the dataset; "" for a dataset folder
    std::map<std::string, uint64_t> children;
    uint64_t nlookup = 0;
    int open_handles = 0;
    int uncached_handles = 0;  // handles whose I/O skips the kernel's page cache (see NewHandle)
    bool unlinked = false;
    int64_t mtime = 0;
    // Files:
    bool remote = false;  // the platform has a version
    uint64_t remote_size = 0;
    std::string remote_tag;
    std::string entry_id;       // a local version not yet confirmed
    std::string data_path;      // its cache copy (journal's data_path, or KeptPath once confirmed)
    // The version's SHA-256 as it is written (null or unknown when it was not written in order).
    std::shared_ptr<cache::SequentialDigest> digest;
    std::string last_entry_id;  // the most recent upload, for status after confirmation
    std::string read_path;      // local copy of the platform's version, if any
    int writers = 0;
    bool closing = false;  // the last writer left; EndWrite has not scheduled the version yet
    std::string write_failed;  // why a write of this version failed (the version is not uploaded)
    bool flushed = false;  // its last writer's close(2) is journaled, with nothing written since
    std::shared_ptr<std::mutex> version_mu = std::make_shared<std::mutex>();
    // Dataset folders:
    std::chrono::steady_clock::time_point listed_at{};
    bool listing = false;
    // Folders: platform files that nothing holds (no lookup by the kernel, no descriptor, no
    // local version) are kept only as listing entries in shelf_ (on disk, keyed by the folder's
    // inode); a node is made again when one is looked up (Child). This is what keeps the mount's
    // memory flat in files written.
  };
  struct Handle {
    uint64_t ino = 0;
    UniqueFd fd;
    std::unique_ptr<cache::DirectWriter> direct;  // opened at the first large write
    bool direct_tried = false;
    bool writable = false;
    bool write_only = false;
    bool uncached = false;  // the kernel is told not to cache this handle's I/O (FOPEN_DIRECT_IO)
    bool append = false;
    bool synced = false;  // sync_upload: the version was uploaded by flush/fsync; writes start a new one
    pid_t opener = 0;     // the process that opened it (0: unknown)
  };

  Node* Find(uint64_t ino);                                        // REQUIRES: mu_
  // The child `name` of `dir`, made again from the folder's shelf if it is shelved there.
  Node* Child(Node* dir, const std::string& name);                 // REQUIRES: mu_
  Node* AddChild(Node* dir, const std::string& name, bool is_dir);  // REQUIRES: mu_
  Node* EnsurePath(Node* dataset, const std::string& rel, bool leaf_is_dir);  // REQUIRES: mu_
  Node* DatasetNode(const std::string& dataset);                   // REQUIRES: mu_
  Attr AttrOf(const Node& n);                                      // REQUIRES: mu_
  // The file holding a node's local version: its data_path, or where confirmation moved it.
  std::string LocalVersionPath(const Node& n) const;              // REQUIRES: mu_
  // Frees a node nothing refers to any more: an unlinked one, or a platform file nothing holds,
  // which goes onto its folder's shelf (then the listing cache's bound is kept). A platform file
  // that only the kernel's cache holds is handed to the prune hint when `ask_kernel` or when more
  // than kNodesKernelKeeps nodes are kept. REQUIRES: mu_
  void MaybeFree(Node* n, bool ask_kernel = false);
  static constexpr size_t kNodesKernelKeeps = 4096;
  // Merges one file of dataset `ds`'s listing (`name`: the dataset's) into the tree: a node is
  // updated, anything else is an entry on its folder's shelf. REQUIRES: mu_
  void MergeListed(Node* ds, const std::string& name, const upload::RemoteFile& f);
  static constexpr size_t kListingPage = 1000;  // listed files merged per taking of the lock
  // Keeps the shelved entries of all folders within cfg_.listing_cache_max: the datasets listed
  // longest ago lose theirs and are listed again when next needed. REQUIRES: mu_
  void BoundShelves(const Node* keep);
  size_t DropShelves(Node* dir);  // REQUIRES: mu_; returns how many entries it dropped
  // Whether a folder holds a file at any depth. REQUIRES: mu_
  bool HasFiles(const Node* dir);
  // Sets dataset and rel of `n` and everything below it from its parent. REQUIRES: mu_
  void Repath(Node* n);
  // Stops the upload of version `id` before an unlink or rename: Ok when it is only local now;
  // EPERM (rm and rename), with nothing changed, when the platform is already taking it.
  // REQUIRES: ns_mu_ exclusive, not mu_.
  Status HoldForNamespace(const std::string& id, const std::string& label, const char* op);
  // Forgets version `id` and discards it, or, while a descriptor has it open, journals that it
  // is unlinked (Release discards it at the last close). REQUIRES: not mu_.
  void DropVersion(const std::string& id, bool still_open, const std::string& label);
  void Detach(Node* n);                                            // REQUIRES: mu_
  std::string RelFor(const Node* dir, const std::string& name) const;

  // Refreshes the listing behind folder `dir` when it is stale (the root's, or its dataset's).
  Status RefreshFor(uint64_t dir);
  void RefreshRoot();
  void RefreshDataset(uint64_t dataset_ino);
  // A local file holding the platform's bytes of `ino` (downloaded into the read cache if needed).
  StatusOr<std::string> LocalCopy(uint64_t ino);
  // The version is about to change after its last writer's close was journaled: says so
  // (RecordWriting), so that a crash now leaves it interrupted. REQUIRES: not mu_.
  void Rewriting(uint64_t ino);
  // Makes `ino` have a writable local version (reopening or creating one). REQUIRES: ns_mu_
  // shared and the node's version_mu.
  StatusOr<std::string> BeginWrite(uint64_t ino, bool truncate);
  // The last writer closed: fsync, hash, record, schedule (after `delay`, or the settle time).
  // Returns the entry scheduled, if any. REQUIRES: as BeginWrite.
  // The "too large for the platform" message when the file at `path` is, else "".
  std::string TooLarge(const std::string& path, const std::string& label);
  std::string EndWrite(uint64_t ino, std::optional<std::chrono::milliseconds> delay = std::nullopt);
  // sync_upload: closes the version now, uploads it at once and waits for the platform.
  Status SyncUpload(uint64_t fh);
  uint64_t NewHandle(Handle h);                                    // REQUIRES: mu_
  // A handle writing `path` for node `n` (O_APPEND kept), counted as a writer. REQUIRES: mu_.
  StatusOr<uint64_t> NewWriteHandle(Node* n, const std::string& path, int flags, pid_t opener);
  int HandleFd(uint64_t fh);
  // The content of a .ingestfs/ file, as last rendered.
  // Rendered outside mu_, at most once a second unless `now` (an open renders afresh, so that
  // the fstat after it agrees with what it reads); AttrOf and Open read the cached text.
  void RefreshStatus(bool now = false);
  std::string StatusContent(Special kind);  // REQUIRES: not status_mu_
  // A name the platform would reject: EINVAL or ENAMETOOLONG, with a log line naming it.
  static Status CheckName(const char* op, const std::string& dataset, const std::string& rel);
  // EROFS (with a log line) when `n` is .ingestfs/ or in it. REQUIRES: mu_
  Status RefuseStatus(const Node* n, const char* op, const std::string& name);

  FsConfig cfg_;
  upload::Dialect& dialect_;
  cache::Journal& journal_;
  cache::MtimeStore* mtimes_;
  upload::Scheduler* scheduler_ = nullptr;
  cache::CacheSpace* space_ = nullptr;
  const upload::PlatformHealth* health_ = nullptr;
  std::function<void(uint64_t)> prune_hint_;                   // GUARDED_BY(mu_)
  std::function<std::pair<bool, uint64_t>()> prune_state_;      // GUARDED_BY(mu_)

  // The version lock of `ino` (a copy, so that it outlives the node if need be).
  std::shared_ptr<std::mutex> VersionMutex(uint64_t ino);

  std::shared_mutex ns_mu_;
  std::mutex mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Node>> nodes_;  // GUARDED_BY(mu_)
  std::map<std::string, std::string> dataset_ids_;             // GUARDED_BY(mu_): name -> id
  uint64_t next_ino_ = 2;                                      // GUARDED_BY(mu_)
  std::unique_ptr<cache::ListingShelf> shelf_;                 // GUARDED_BY(mu_): the folders' shelves
  size_t shelved_ = 0;                                         // GUARDED_BY(mu_): entries on all shelves
  std::unordered_map<uint64_t, std::unique_ptr<Handle>> handles_;  // GUARDED_BY(mu_)
  uint64_t next_fh_ = 1;                                           // GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point root_listed_at_{};         // GUARDED_BY(mu_)
  bool root_listing_ = false;                                      // GUARDED_BY(mu_)
  struct Refused {
    std::time_t at;
    std::string what, why;
  };
  std::mutex refused_mu_;                 // guards the two below; taken last
  std::deque<Refused> refused_;           // GUARDED_BY(refused_mu_): the latest kRefusedKept
  uint64_t refused_total_ = 0;            // GUARDED_BY(refused_mu_)
  std::mutex status_mu_;                  // guards the two below; taken without other locks
  std::map<Special, std::string> status_text_;  // GUARDED_BY(status_mu_)
  std::chrono::steady_clock::time_point status_at_{};  // GUARDED_BY(status_mu_)
};

}  // namespace ingestfs::fs
