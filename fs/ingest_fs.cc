#include "fs/ingest_fs.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "common/crypto.h"
#include "common/log.h"
#include "common/names.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "fs/internal.h"

namespace ingestfs::fs {


std::vector<std::string> DefaultTempPatterns() {
  // rsync's ".name.XXXXXX", Office's "~$name" and ".~lock.name#", editors' swap files,
  // browsers' and downloaders' partial files, and "*.tmp" of many instrument programs.
  return {".*.??????", "~$*", "*.tmp", ".~lock*", "*.swp", "*.part"};
}

IngestFs::IngestFs(FsConfig cfg, upload::Dialect& dialect, cache::Journal& journal, cache::MtimeStore* mtimes)
    : cfg_(std::move(cfg)), dialect_(dialect), journal_(journal), mtimes_(mtimes) {
  auto root = std::make_unique<Node>();
  root->ino = kRootIno;
  root->parent = kRootIno;
  root->is_dir = true;
  root->mtime = Now();
  root->nlookup = 1;
  nodes_[kRootIno] = std::move(root);
  std::string shelf_path = cfg_.cache_dir.empty() ? ":memory:" : cfg_.cache_dir + "/listing.db";
  auto shelf = cache::ListingShelf::Open(shelf_path);
  if (!shelf.ok()) {
    LOG_WARN("listing entries: %s; they are kept in memory", shelf.status().message().c_str());
    shelf = cache::ListingShelf::Open(":memory:");
  }
  shelf_ = std::move(shelf).value();  // an in-memory database opens unless memory is gone
  // .ingestfs/ and its files take inodes 2..6 (kStatusDirIno, kFirstStatusFileIno..).
  Node* dir = AddChild(Find(kRootIno), kStatusDir, true);
  dir->special = Special::kStatusDir;
  dir->dataset.clear();
  for (auto [name, kind] : {std::pair{"status.txt", Special::kStatusTxt}, {"status.json", Special::kStatusJson},
                            {"failed.txt", Special::kFailedTxt}, {"receipts.csv", Special::kReceiptsCsv}}) {
    Node* f = AddChild(dir, name, false);
    f->special = kind;
    f->dataset.clear();
    f->rel.clear();
  }
}

Status IngestFs::CheckName(const char* op, const std::string& dataset, const std::string& rel) {
  Status st = ValidateFileName(rel);
  if (st.ok()) return st;
  // Refused here, with the reason in the log, rather than discovered at upload time.
  LOG_WARN("%s %s/%s refused: %s", op, dataset.c_str(), rel.c_str(), st.message().c_str());
  return Errno(st.message().find("longer") != std::string::npos ? ENAMETOOLONG : EINVAL, st.message());
}

Status IngestFs::RefuseStatus(const Node* n, const char* op, const std::string& name) {
  if (n == nullptr || n->special == Special::kNone) return Status::Ok();
  LOG_WARN("%s %s refused: %s/ is the mount's read-only status folder", op, name.c_str(), kStatusDir);
  return Errno(EROFS, std::string(kStatusDir) + "/ is read-only");
}

bool IngestFs::IsTemporaryName(const std::string& base) const {
  for (const std::string& p : cfg_.temp_patterns) {
    if (::fnmatch(p.c_str(), base.c_str(), 0) == 0) return true;
  }
  return false;
}

IngestFs::Node* IngestFs::Find(uint64_t ino) {
  auto it = nodes_.find(ino);
  return it == nodes_.end() ? nullptr : it->second.get();
}

IngestFs::Node* IngestFs::Child(Node* dir, const std::string& name) {
  auto it = dir->children.find(name);
  if (it != dir->children.end()) return Find(it->second);
  std::optional<cache::ListingShelf::Entry> entry = shelf_->Get(dir->ino, name);
  if (!entry) return nullptr;
  Node* n = AddChild(dir, name, false);  // takes the entry off the shelf
  n->remote = true;
  n->remote_size = entry->size;
  n->remote_tag = std::move(entry->tag);
  n->mtime = entry->mtime;
  if (entry->last_entry != 0) {
    char id[17];
    std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(entry->last_entry));
    n->last_entry_id = id;
    n->read_path = journal_.KeptPath(id);  // used only while it exists (LocalCopy checks)
  }
  return n;
}

IngestFs::Node* IngestFs::AddChild(Node* dir, const std::string& name, bool is_dir) {
  auto n = std::make_unique<Node>();
  n->ino = next_ino_++;
  n->parent = dir->ino;
  n->name = name;
  n->is_dir = is_dir;
  n->dataset = dir->ino == kRootIno ? name : dir->dataset;
  n->rel = dir->ino == kRootIno ? "" : (dir->rel.empty() ? name : dir->rel + "/" + name);
  n->mtime = Now();
  Node* raw = n.get();
  if (shelved_ != 0 && shelf_->Erase(dir->ino, name)) --shelved_;  // a node of that name replaces its entry
  dir->children[name] = raw->ino;
  nodes_[raw->ino] = std::move(n);
  return raw;
}

IngestFs::Node* IngestFs::DatasetNode(const std::string& dataset) {
  Node* root = Find(kRootIno);
  Node* ds = Child(root, dataset);
  return ds != nullptr ? ds : AddChild(root, dataset, true);
}

IngestFs::Node* IngestFs::EnsurePath(Node* dataset, const std::string& rel, bool leaf_is_dir) {
  std::vector<std::string> parts = Split(rel, '/');
  Node* cur = dataset;
  for (size_t i = 0; i < parts.size(); ++i) {
    bool dir = i + 1 < parts.size() || leaf_is_dir;
    Node* next = Child(cur, parts[i]);
    if (next == nullptr) next = AddChild(cur, parts[i], dir);
    if (next->is_dir != dir) return nullptr;  // a file where a folder is needed, or the reverse
    cur = next;
  }
  return cur;
}

std::string IngestFs::RelFor(const Node* dir, const std::string& name) const {
  return dir->rel.empty() ? name : dir->rel + "/" + name;
}

Attr IngestFs::AttrOf(const Node& n) {
  Attr a;
  a.ino = n.ino;
  a.is_dir = n.is_dir;
  a.mtime = n.mtime;
  a.uid = cfg_.uid;
  a.gid = cfg_.gid;
  if (n.special != Special::kNone) {
    a.changing = true;
    a.mtime = Now();
    a.mode = n.is_dir ? S_IFDIR | 0555 : S_IFREG | 0444;
    a.nlink = n.is_dir ? 2 : 1;
    if (n.special == Special::kReceiptsCsv) {
      struct stat st;
      if (::stat(journal_.ReceiptsPath().c_str(), &st) == 0) {
        a.size = static_cast<uint64_t>(st.st_size);
        a.mtime = st.st_mtim.tv_sec;
      }
    } else if (!n.is_dir) {
      a.size = StatusContent(n.special).size();
    }
    return a;
  }
  if (n.is_dir) {
    a.mode = S_IFDIR | (0755 & ~cfg_.umask);
    a.nlink = 2;
    return a;
  }
  a.mode = S_IFREG | (0644 & ~cfg_.umask);
  a.nlink = n.unlinked ? 0 : 1;
  a.size = n.remote_size;
  if (!n.entry_id.empty()) {
    struct stat st;
    std::string path = LocalVersionPath(n);
    if (!path.empty() && ::stat(path.c_str(), &st) == 0) a.size = static_cast<uint64_t>(st.st_size);
  }
  return a;
}

std::string IngestFs::LocalVersionPath(const Node& n) const {
  if (n.entry_id.empty()) return "";
  if (PathExists(n.data_path)) return n.data_path;
  // Confirmed a moment ago: the scheduler has not told us yet, but the bytes moved here.
  std::string kept = journal_.KeptPath(n.entry_id);
  return PathExists(kept) ? kept : "";
}

void IngestFs::Detach(Node* n) {
  Node* parent = Find(n->parent);
  if (parent != nullptr) {
    auto it = parent->children.find(n->name);
    if (it != parent->children.end() && it->second == n->ino) parent->children.erase(it);
  }
  n->unlinked = true;
}

void IngestFs::SetPruneHint(std::function<void(uint64_t ino)> hint,
                            std::function<std::pair<bool, uint64_t>()> state) {
  std::lock_guard<std::mutex> lock(mu_);
  prune_hint_ = std::move(hint);
  prune_state_ = std::move(state);
}

void IngestFs::MaybeFree(Node* n, bool ask_kernel) {
  if (n->open_handles != 0 || n->ino == kRootIno) return;
  if (n->unlinked) {
    if (n->nlookup == 0) nodes_.erase(n->ino);
    return;
  }
  // A platform file nothing holds: only its listing entry stays.
  if (n->is_dir || n->special != Special::kNone || !n->remote || !n->entry_id.empty() || n->writers > 0 ||
      n->closing || !n->write_failed.empty()) {
    return;
  }
  if (n->nlookup != 0) {
    // Only the kernel's cache holds it: it is asked to let go (the FORGET brings us back here),
    // at once for a file just confirmed, else only once many nodes are kept (what the kernel
    // caches of files in use, and of a few thousand more, stays fast).
    if (prune_hint_ && (ask_kernel || nodes_.size() > kNodesKernelKeeps)) prune_hint_(n->ino);
    return;
  }
  Node* parent = Find(n->parent);
  if (parent == nullptr) return;
  auto it = parent->children.find(n->name);
  if (it == parent->children.end() || it->second != n->ino) return;
  // Our upload's id goes with the entry only while the kept copy of that upload is the file's
  // content (someone else's newer version clears read_path): its status and copy come back.
  uint64_t last = 0;
  if (n->last_entry_id.size() == 16 && n->last_entry_id.find_first_not_of("0123456789abcdef") == std::string::npos &&
      n->read_path == journal_.KeptPath(n->last_entry_id)) {
    last = std::strtoull(n->last_entry_id.c_str(), nullptr, 16);
  }
  StatusOr<bool> put = shelf_->Put(parent->ino, n->name, {n->remote_size, n->mtime, n->remote_tag, last});
  if (!put.ok()) return;  // the node stays (logged once by the shelf)
  if (*put) ++shelved_;
  parent->children.erase(it);
  nodes_.erase(n->ino);
  if (shelved_ > cfg_.listing_cache_max) BoundShelves(parent);
}

size_t IngestFs::DropShelves(Node* dir) {
  size_t dropped = shelf_->Clear(dir->ino);
  for (const auto& [name, ino] : dir->children) {
    Node* c = Find(ino);
    if (c != nullptr && c->is_dir) dropped += DropShelves(c);
  }
  return dropped;
}

void IngestFs::BoundShelves(const Node* keep) {
  // Whole datasets go, listed longest ago first; each is listed again when next looked into.
  std::vector<Node*> datasets;
  for (const auto& [name, ino] : Find(kRootIno)->children) {
    Node* ds = Find(ino);
    if (ds != nullptr && ds->is_dir && ds->special == Special::kNone && ds->dataset != keep->dataset) datasets.push_back(ds);
  }
  std::sort(datasets.begin(), datasets.end(), [](const Node* a, const Node* b) { return a->listed_at < b->listed_at; });
  for (Node* ds : datasets) {
    if (shelved_ <= cfg_.listing_cache_max) return;
    size_t dropped = DropShelves(ds);
    if (dropped == 0) continue;
    shelved_ -= std::min(shelved_, dropped);
    ds->listed_at = {};
    LOG_INFO("listing cache: %zu entries of dataset %s dropped to stay within %zu; it is listed again when needed",
             dropped, ds->name.c_str(), cfg_.listing_cache_max);
  }
}

void IngestFs::DirDone(const std::vector<DirEntry>& entries) {
  std::lock_guard<std::mutex> lock(mu_);
  shelf_->Batch([&] {
    for (const DirEntry& d : entries) {
      if (d.name == "." || d.name == "..") continue;
      if (Node* n = Find(d.ino)) MaybeFree(n);
    }
  });
}

std::pair<size_t, size_t> IngestFs::MemoryCounts() {
  std::lock_guard<std::mutex> lock(mu_);
  return {nodes_.size(), shelved_};
}

StatusOr<Attr> IngestFs::Lookup(uint64_t parent, const std::string& name) {
  if (name.size() > kMaxNameBytes) return Errno(ENAMETOOLONG, "names have at most 255 bytes");
  if (parent == kStatusDirIno) RefreshStatus();
  RETURN_IF_ERROR(RefreshFor(parent));
  std::lock_guard<std::mutex> lock(mu_);
  Node* p = Find(parent);
  Node* c = p == nullptr ? nullptr : Child(p, name);
  if (c == nullptr) return Status(Code::kNotFound, name, ENOENT);
  c->nlookup++;
  return AttrOf(*c);
}

void IngestFs::Forget(uint64_t ino, uint64_t n) { ForgetMany({{ino, n}}); }

void IngestFs::ForgetMany(const std::vector<std::pair<uint64_t, uint64_t>>& forgets) {
  std::lock_guard<std::mutex> lock(mu_);
  auto forget = [&] {
    for (auto [ino, n] : forgets) {
      Node* node = Find(ino);
      if (node == nullptr || ino == kRootIno) continue;
      node->nlookup = node->nlookup > n ? node->nlookup - n : 0;
      MaybeFree(node);
    }
  };
  if (forgets.size() > 1) shelf_->Batch(forget);  // the files shelved go in one write
  else forget();
}

std::shared_ptr<std::mutex> IngestFs::VersionMutex(uint64_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  Node* n = Find(ino);
  return n != nullptr ? n->version_mu : std::make_shared<std::mutex>();
}

bool IngestFs::AddLookup(uint64_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  Node* n = Find(ino);
  if (n == nullptr) return false;
  n->nlookup++;
  return true;
}

StatusOr<Attr> IngestFs::GetAttr(uint64_t ino) {
  if (IsStatusFile(ino)) RefreshStatus();
  std::lock_guard<std::mutex> lock(mu_);
  Node* n = Find(ino);
  if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
  return AttrOf(*n);
}

StatusOr<std::vector<DirEntry>> IngestFs::ReadDir(uint64_t ino) {
  if (ino == kStatusDirIno) RefreshStatus();
  RETURN_IF_ERROR(RefreshFor(ino));
  std::lock_guard<std::mutex> lock(mu_);
  Node* n = Find(ino);
  if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
  std::vector<DirEntry> out;
  out.push_back({".", n->ino, true});
  out.push_back({"..", n->parent, true});
  // Shelved files get their node back for the snapshot (DirDone shelves the ones the kernel
  // did not take).
  std::string after;
  for (std::vector<std::string> names; !(names = shelf_->Names(n->ino, after, kListingPage)).empty();) {
    shelf_->Batch([&] {
      for (const std::string& name : names) (void)Child(n, name);
    });
    after = names.back();
  }
  for (const auto& [name, child] : n->children) {
    Node* c = Find(child);
    if (c != nullptr) out.push_back({name, c->ino, c->is_dir});
  }
  return out;
}

// A write-only descriptor (cp, rsync's --inplace, dd, shell redirects) has its writes sent
// straight to us rather than through the kernel's page cache of the mount: that cache would only
// hold a second copy of what the cache copy holds, and filling it costs as much as the write.
// Such a descriptor cannot be mapped (mmap needs read access). The kernel does not update the
// pages other descriptors have cached when such a write arrives, so it goes uncached only while
// no cached descriptor is open on the file, and any descriptor opened while an uncached one is
// open goes uncached too: every view stays the file's current bytes, as on a local disk.
uint64_t IngestFs::NewHandle(Handle h) {
  uint64_t fh = next_fh_++;
  Node* n = Find(h.ino);
  if (n != nullptr) {
    h.uncached = h.write_only ? n->uncached_handles == n->open_handles : n->uncached_handles > 0;
    if (h.uncached) n->uncached_handles++;
    n->open_handles++;
  }
  handles_[fh] = std::make_unique<Handle>(std::move(h));
  return fh;
}

bool IngestFs::Uncached(uint64_t fh) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = handles_.find(fh);
  return it != handles_.end() && it->second->uncached;
}

int IngestFs::HandleFd(uint64_t fh) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = handles_.find(fh);
  return it == handles_.end() ? -1 : it->second->fd.get();
}

StatusOr<std::string> IngestFs::GetXattr(uint64_t ino, const std::string& name) {
  // ls -l asks every file for security.selinux and system.posix_acl_access. This filesystem has
  // neither labels nor ACLs: names outside the user namespace get EOPNOTSUPP, which tells ls (and
  // libacl, libselinux, smbd) to stop asking for the rest of the mount, rather than ENODATA, which
  // would make them ask again for each file, a round trip to us every time.
  if (name.rfind("user.", 0) != 0) return Errno(EOPNOTSUPP, name);
  if (name.rfind("user.ingestfs.", 0) != 0) return Errno(ENODATA, name);
  std::string id;
  bool writing, remote, is_dir;
  uint64_t size;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(ino);
    if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
    is_dir = n->is_dir;
    id = n->entry_id.empty() ? n->last_entry_id : n->entry_id;
    writing = n->writers > 0;
    remote = n->remote && n->entry_id.empty();
    size = AttrOf(*n).size;
  }
  if (ino == kRootIno && name == "user.ingestfs.control" && !cfg_.control_socket.empty()) return cfg_.control_socket;
  if (is_dir || name.rfind("user.ingestfs.", 0) != 0) return Errno(ENODATA, name);
  std::optional<upload::FileStatus> st;
  if (!id.empty() && scheduler_ != nullptr) st = scheduler_->Get(id);
  std::string state = writing ? "local" : st ? upload::FileStateName(st->state) : remote ? "completed" : "local";
  if (remote && (!st || st->state != upload::FileState::kFailed)) state = "completed";
  if (st && st->stalled && state != "completed") state = "stalled";
  std::string key = name.substr(14);
  if (key == "state") return state;
  if (key == "attempts") return std::to_string(st ? st->attempts : 0);
  if (key == "progress") {
    uint64_t sent = state == "completed" ? size : st ? std::min(st->sent, size) : 0;
    int pct = size == 0 ? (state == "completed" ? 100 : 0) : static_cast<int>(100.0 * static_cast<double>(sent) / static_cast<double>(size));
    return std::to_string(sent) + "/" + std::to_string(size) + " " + std::to_string(pct) + "%";
  }
  if (key == "error") return st ? st->error : std::string();
  if (key == "job_id") return st ? st->job_id : std::string();
  return Errno(ENODATA, name);
}

StatusOr<std::vector<std::string>> IngestFs::ListXattr(uint64_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  Node* n = Find(ino);
  if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
  if (ino == kRootIno && !cfg_.control_socket.empty()) return std::vector<std::string>{"user.ingestfs.control"};
  if (n->is_dir) return std::vector<std::string>{};
  return std::vector<std::string>{"user.ingestfs.state", "user.ingestfs.progress", "user.ingestfs.error",
                                  "user.ingestfs.job_id", "user.ingestfs.attempts"};
}

StatusOr<struct statvfs> IngestFs::Statfs() {
  struct statvfs st;
  if (::statvfs(cfg_.cache_dir.c_str(), &st) != 0) return Status::FromErrno(errno, "statfs " + cfg_.cache_dir);
  return st;
}

}  // namespace ingestfs::fs
