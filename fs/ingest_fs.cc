#include "fs/ingest_fs.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include "common/crypto.h"
#include "common/log.h"
#include "common/names.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "fs/status_report.h"

namespace ingestfs::fs {

namespace {
int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

Status Errno(int err, const std::string& what) { return Status(Code::kInvalidArgument, what, err); }
}  // namespace

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

void IngestFs::RefreshStatus(bool now) {
  if (!now) {
    std::lock_guard<std::mutex> lock(status_mu_);
    if (!status_text_.empty() && std::chrono::steady_clock::now() - status_at_ < std::chrono::seconds(1)) return;
  }
  std::string js = StatusJson();
  auto doc = json::Parse(js, "status");
  std::map<Special, std::string> text;
  text[Special::kStatusJson] = js + "\n";
  if (doc.ok()) {
    text[Special::kStatusTxt] = StatusText(*doc);
    text[Special::kFailedTxt] = FailedText(*doc);
  }
  std::lock_guard<std::mutex> lock(status_mu_);
  status_text_ = std::move(text);
  status_at_ = std::chrono::steady_clock::now();
}

std::string IngestFs::StatusContent(Special kind) {
  std::lock_guard<std::mutex> lock(status_mu_);
  auto it = status_text_.find(kind);
  return it == status_text_.end() ? std::string() : it->second;
}

std::string IngestFs::StatusJson() {
  std::vector<std::string> open = OpenFiles();
  std::vector<upload::FileStatus> files = scheduler_ != nullptr ? scheduler_->Snapshot() : std::vector<upload::FileStatus>{};
  std::map<std::string, int> counts = {{"pending", 0}, {"uploading", 0}, {"processing", 0},   {"failed", 0},
                                       {"interrupted", 0}, {"completed", 0}, {"stalled", 0}};
  return json::Object([&](json::Writer& w) {
    json::KeyString(w, "time", Iso8601Utc(std::time(nullptr)));
    json::KeyString(w, "platform", RedactUrl(cfg_.api));
    json::KeyString(w, "dialect", cfg_.dialect);
    json::KeyInt(w, "stale_after_s", cfg_.stale_after.count() / 1000);
    json::KeyInt(w, "job_timeout_s", cfg_.job_timeout.count() / 1000);
    if (space_ != nullptr) {
      cache::CacheSpace::Usage u = space_->Current();
      json::Key(w, "cache");
      w.StartObject();
      json::KeyInt(w, "pending_bytes", static_cast<int64_t>(u.pending));
      json::KeyInt(w, "cached_bytes", static_cast<int64_t>(u.cached));
      json::KeyInt(w, "free_bytes", static_cast<int64_t>(u.free));
      json::KeyInt(w, "max_bytes", static_cast<int64_t>(space_->options().max_bytes));
      json::KeyInt(w, "min_free_bytes", static_cast<int64_t>(space_->options().min_free));
      w.EndObject();
    }
    json::Key(w, "files");
    w.StartArray();
    for (const std::string& o : open) {
      size_t slash = o.find('/');
      w.StartObject();
      json::KeyString(w, "dataset", o.substr(0, slash));
      json::KeyString(w, "name", o.substr(slash + 1));
      json::KeyString(w, "state", "open");
      json::KeyInt(w, "size", 0);
      json::KeyInt(w, "sent", 0);
      json::KeyString(w, "error", "");
      w.EndObject();
    }
    for (const upload::FileStatus& f : files) {
      if (f.state == upload::FileState::kLocal) continue;  // being written, or a temporary name
      counts[upload::FileStateName(f.state)]++;
      if (f.stalled) counts["stalled"]++;
      w.StartObject();
      json::KeyString(w, "dataset", f.dataset);
      json::KeyString(w, "name", f.name);
      json::KeyString(w, "state", upload::FileStateName(f.state));
      json::KeyInt(w, "size", static_cast<int64_t>(f.size));
      json::KeyInt(w, "sent", static_cast<int64_t>(std::min(f.sent, f.size)));
      json::KeyString(w, "error", f.error);
      json::KeyString(w, "job_id", f.job_id);
      json::KeyInt(w, "attempts", f.attempts);
      json::KeyInt(w, "since_ms", f.since_ms);
      json::KeyInt(w, "queued_ms", f.queued_ms);
      json::Key(w, "stalled");
      w.Bool(f.stalled);
      w.EndObject();
    }
    w.EndArray();
    json::Key(w, "counts");
    w.StartObject();
    json::KeyInt(w, "open", static_cast<int64_t>(open.size()));
    for (const auto& [k, v] : counts) json::KeyInt(w, k, v);
    w.EndObject();
  });
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
  return it == dir->children.end() ? nullptr : Find(it->second);
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

void IngestFs::MaybeFree(Node* n) {
  if (n->unlinked && n->nlookup == 0 && n->open_handles == 0 && n->ino != kRootIno) nodes_.erase(n->ino);
}

void IngestFs::RefreshRoot() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (root_listing_ || std::chrono::steady_clock::now() - root_listed_at_ < cfg_.listing_ttl) return;
    root_listing_ = true;
  }
  auto list = dialect_.ListDatasets();
  std::lock_guard<std::mutex> lock(mu_);
  root_listing_ = false;
  if (!list.ok()) {
    LOG_WARN("listing datasets failed (showing what is known): %s", list.status().message().c_str());
    root_listed_at_ = std::chrono::steady_clock::now() - cfg_.listing_ttl + std::chrono::seconds(5);
    return;
  }
  root_listed_at_ = std::chrono::steady_clock::now();
  for (const upload::DatasetInfo& d : *list) {
    if (d.name == kStatusDir) continue;  // the status folder's name: not shown
    dataset_ids_[d.name] = d.id;
    DatasetNode(d.name);
  }
}

void IngestFs::RefreshDataset(uint64_t dataset_ino) {
  RefreshRoot();
  std::string id, name;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* ds = Find(dataset_ino);
    if (ds == nullptr || ds->listing || std::chrono::steady_clock::now() - ds->listed_at < cfg_.listing_ttl) return;
    auto it = dataset_ids_.find(ds->name);
    if (it == dataset_ids_.end()) return;  // not on the platform (yet)
    id = it->second;
    name = ds->name;
    ds->listing = true;
  }
  auto files = dialect_.ListFiles(id);
  std::lock_guard<std::mutex> lock(mu_);
  Node* ds = Find(dataset_ino);
  if (ds == nullptr) return;
  ds->listing = false;
  if (!files.ok()) {
    LOG_WARN("listing dataset %s failed (showing what is known): %s", name.c_str(), files.status().message().c_str());
    ds->listed_at = std::chrono::steady_clock::now() - cfg_.listing_ttl + std::chrono::seconds(5);
    return;
  }
  ds->listed_at = std::chrono::steady_clock::now();
  for (const upload::RemoteFile& f : *files) {
    Node* n = EnsurePath(ds, f.name, false);
    if (n == nullptr) {
      LOG_WARN("dataset %s: %s clashes with a folder of the same name; left out", name.c_str(), f.name.c_str());
      continue;
    }
    bool changed = !n->remote || n->remote_tag != f.tag;
    n->remote = true;
    n->remote_size = f.size;
    if (changed && n->entry_id.empty() && n->remote_tag != f.tag && !n->remote_tag.empty()) {
      n->read_path.clear();  // someone else uploaded a new version: our copy is stale
    }
    n->remote_tag = f.tag;
    if (n->entry_id.empty() && changed) {
      std::optional<int64_t> kept = mtimes_ != nullptr ? mtimes_->Get(name, f.name, f.tag) : std::nullopt;
      if (kept) n->mtime = *kept;  // the writer's time, for the content we uploaded
      else if (n->mtime == 0) n->mtime = f.mtime > 0 ? f.mtime : Now();
    }
  }
}

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

Status IngestFs::RefreshFor(uint64_t dir) {
  uint64_t dataset = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(dir);
    if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
    if (!n->is_dir) return Errno(ENOTDIR, "not a folder");
    if (dir != kRootIno) {
      Node* ds = Child(Find(kRootIno), n->dataset);
      if (ds != nullptr) dataset = ds->ino;
    }
  }
  if (dir == kRootIno) RefreshRoot();
  else if (dataset != 0) RefreshDataset(dataset);
  return Status::Ok();
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

void IngestFs::Forget(uint64_t ino, uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  Node* node = Find(ino);
  if (node == nullptr || ino == kRootIno) return;
  node->nlookup = node->nlookup > n ? node->nlookup - n : 0;
  MaybeFree(node);
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
  for (const auto& [name, child] : n->children) {
    Node* c = Find(child);
    if (c != nullptr) out.push_back({name, c->ino, c->is_dir});
  }
  return out;
}

StatusOr<Attr> IngestFs::Mkdir(uint64_t parent, const std::string& name) {
  std::shared_lock<std::shared_mutex> ns(ns_mu_);
  std::string rel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* p = Find(parent);
    if (p == nullptr || !p->is_dir) return Errno(ENOTDIR, "mkdir in a non-folder");
    RETURN_IF_ERROR(RefuseStatus(p, "mkdir", name));
    if (Child(p, name) != nullptr) return Status(Code::kAlreadyExists, name, EEXIST);
    if (parent != kRootIno) {
      rel = RelFor(p, name);
      RETURN_IF_ERROR(CheckName("mkdir", p->dataset, rel));
      Node* c = AddChild(p, name, true);
      c->nlookup++;
      return AttrOf(*c);
    }
  }
  Status st = ValidateDatasetName(name);
  if (!st.ok()) {
    LOG_WARN("mkdir %s refused: %s", name.c_str(), st.message().c_str());
    return Errno(EINVAL, st.message());
  }
  auto id = dialect_.EnsureDataset(name);
  if (!id.ok()) {
    if (id.status().code() == Code::kUnavailable) {
      LOG_WARN("dataset %s: the platform is unreachable (%s); it is created when its first file is uploaded",
               name.c_str(), id.status().message().c_str());
    } else {
      LOG_ERROR("creating dataset %s failed: %s", name.c_str(), id.status().message().c_str());
      int err = id.status().code() == Code::kPermissionDenied || id.status().code() == Code::kUnauthenticated
                    ? EACCES
                    : id.status().code() == Code::kInvalidArgument ? EINVAL : EIO;
      return Errno(err, id.status().message());
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (id.ok()) dataset_ids_[name] = *id;
  Node* c = DatasetNode(name);
  c->listed_at = std::chrono::steady_clock::now();
  c->nlookup++;
  return AttrOf(*c);
}

Status IngestFs::RefuseSpecial(uint64_t parent, const std::string& name, const std::string& what) {
  std::string where;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* p = Find(parent);
    where = p == nullptr || p->ino == kRootIno ? name : p->dataset + "/" + RelFor(p, name);
  }
  LOG_WARN("%s refused: it would be %s, and the platform stores plain files only (copy the content instead: "
           "cp -L, rsync -L, tar -h)", where.c_str(), what.c_str());
  return Errno(EPERM, where + ": the platform stores plain files only");
}

Status IngestFs::Rmdir(uint64_t parent, const std::string& name) {
  std::unique_lock<std::shared_mutex> ns(ns_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  Node* p = Find(parent);
  Node* c = p == nullptr ? nullptr : Child(p, name);
  if (c == nullptr) return Status(Code::kNotFound, name, ENOENT);
  if (!c->is_dir) return Errno(ENOTDIR, name);
  RETURN_IF_ERROR(RefuseStatus(c, "rmdir", name));
  if (!c->children.empty()) return Errno(ENOTEMPTY, name);
  if (parent == kRootIno) {
    LOG_WARN("rmdir %s refused: datasets are not deleted from the mount", name.c_str());
    return Errno(EPERM, "datasets are not deleted from the mount");
  }
  Detach(c);
  MaybeFree(c);
  return Status::Ok();
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

StatusOr<std::string> IngestFs::LocalCopy(uint64_t ino) {
  std::string dataset, rel, existing;
  uint64_t remote_size = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* n = Find(ino);
    if (n == nullptr) return Status(Code::kNotFound, "stale inode", ENOENT);
    if (!n->read_path.empty() && PathExists(n->read_path)) return n->read_path;
    if (!n->remote) return Status(Code::kNotFound, n->rel + " has no content yet", ENOENT);
    dataset = n->dataset;
    rel = n->rel;
    remote_size = n->remote_size;
  }
  if (space_ != nullptr) RETURN_IF_ERROR(space_->Reserve(remote_size, dataset + "/" + rel + " (download)"));
  std::string id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = dataset_ids_.find(dataset);
    if (it != dataset_ids_.end()) id = it->second;
  }
  if (id.empty()) {
    auto got = dialect_.EnsureDataset(dataset);
    if (!got.ok()) return Errno(EIO, got.status().message());
    id = *got;
  }
  std::string dest = cfg_.cache_dir + "/read/dl-" + RandomHex(8);
  auto size = dialect_.Download(id, rel, dest);
  if (!size.ok()) {
    ::unlink(dest.c_str());
    LOG_ERROR("reading %s/%s: %s", dataset.c_str(), rel.c_str(), size.status().message().c_str());
    return Errno(EIO, size.status().message());
  }
  std::lock_guard<std::mutex> lock(mu_);
  Node* n = Find(ino);
  if (n != nullptr) n->read_path = dest;
  return dest;
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

Status IngestFs::HoldForNamespace(const std::string& id, const std::string& label, const char* op) {
  // Its upload stops first, unless the platform has already been told to take this version
  // (`complete` sent): then the name is the platform's, and the operation fails with nothing
  // changed, exactly as it would for a file listed there.
  bool committed = scheduler_->Hold(id, /*stop_committed=*/false) == upload::Scheduler::HoldResult::kCommitted;
  auto e = journal_.Get(id);
  if (!committed && e && !e->completed) return Status::Ok();
  if (!committed && e) scheduler_->Schedule(id, std::chrono::milliseconds(0));  // held: let it finish
  LOG_WARN("%s %s refused: the platform is taking in this version, and it does not %s files through the mount",
           op, label.c_str(), std::string(op) == "rm" ? "delete" : "move");
  return Errno(std::string(op) == "rm" ? EPERM : EXDEV, label + " is on the platform");
}

Status IngestFs::Unlink(uint64_t parent, const std::string& name) {
  std::unique_lock<std::shared_mutex> ns(ns_mu_);
  std::string id, label;
  uint64_t ino = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* p = Find(parent);
    Node* c = p == nullptr ? nullptr : Child(p, name);
    if (c == nullptr) return Status(Code::kNotFound, name, ENOENT);
    RETURN_IF_ERROR(RefuseStatus(c, "rm", name));
    if (c->is_dir) return Errno(EISDIR, name);
    if (c->remote) {
      LOG_WARN("rm %s/%s refused: the file is on the platform, which does not delete files through the mount",
               c->dataset.c_str(), c->rel.c_str());
      return Errno(EPERM, "the platform keeps " + c->rel);
    }
    id = c->entry_id;
    ino = c->ino;
    label = c->dataset + "/" + c->rel;
  }
  if (!id.empty()) RETURN_IF_ERROR(HoldForNamespace(id, label, "rm"));
  bool still_open = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* c = Find(ino);
    if (c == nullptr) return Status(Code::kNotFound, name, ENOENT);
    Detach(c);
    // An open descriptor keeps the file (nlink 0) until its last close, as on a local disk:
    // the bytes stay where it reads and writes them, and Release discards them.
    still_open = c->open_handles > 0 && !id.empty();
    if (!still_open) c->entry_id.clear();
    MaybeFree(c);
  }
  if (!id.empty()) DropVersion(id, still_open, name);
  return Status::Ok();
}

void IngestFs::DropVersion(const std::string& id, bool still_open, const std::string& label) {
  scheduler_->Forget(id);
  Status st = still_open ? journal_.RecordUnlinked(id) : journal_.Discard(id);
  if (!st.ok()) LOG_WARN("discarding %s: %s", label.c_str(), st.message().c_str());
}

bool IngestFs::HasFiles(const Node* dir) {
  for (const auto& [name, ino] : dir->children) {
    const Node* c = Find(ino);
    if (c != nullptr && (!c->is_dir || HasFiles(c))) return true;
  }
  return false;
}

void IngestFs::Repath(Node* n) {
  Node* parent = Find(n->parent);
  n->dataset = parent->dataset;
  n->rel = RelFor(parent, n->name);
  for (const auto& [name, ino] : n->children) {
    if (Node* c = Find(ino)) Repath(c);
  }
}

Status IngestFs::Rename(uint64_t parent, const std::string& name, uint64_t new_parent, const std::string& new_name,
                        unsigned flags) {
  constexpr unsigned kNoReplace = 1;  // RENAME_NOREPLACE
  if (flags & ~kNoReplace) return Errno(EINVAL, "rename flags not supported");
  std::unique_lock<std::shared_mutex> ns(ns_mu_);
  std::string id, label, new_dataset, new_rel;
  uint64_t src_ino = 0;
  // Checked first, with nothing changed; the kernel serialises renames in one folder, and the
  // namespace lock keeps every other operation out until this one is done.
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* p = Find(parent);
    Node* np = Find(new_parent);
    Node* s = p == nullptr ? nullptr : Child(p, name);
    if (s == nullptr) return Status(Code::kNotFound, name, ENOENT);
    if (np == nullptr || !np->is_dir) return Errno(ENOTDIR, new_name);
    RETURN_IF_ERROR(RefuseStatus(s, "rename", name));
    RETURN_IF_ERROR(RefuseStatus(np, "rename", new_name));
    if (new_parent == kRootIno || parent == kRootIno) {
      LOG_WARN("rename %s -> %s refused: datasets are not renamed, and files live inside them", name.c_str(),
               new_name.c_str());
      return Errno(EPERM, "datasets are not renamed");
    }
    new_rel = RelFor(np, new_name);
    new_dataset = np->dataset;
    RETURN_IF_ERROR(CheckName("rename to", new_dataset, new_rel));
    Node* d = Child(np, new_name);
    if (d == s) return Status::Ok();
    if (d != nullptr && (flags & kNoReplace)) return Status(Code::kAlreadyExists, new_name, EEXIST);
    if (s->is_dir) {
      if (HasFiles(s)) {
        LOG_WARN("rename of folder %s/%s refused: it has files, and the platform cannot move files",
                 s->dataset.c_str(), s->rel.c_str());
        return Errno(EXDEV, "folders with files are not moved");
      }
      for (Node* a = np; a != nullptr && a->ino != kRootIno; a = Find(a->parent)) {
        if (a == s) return Errno(EINVAL, "a folder cannot move into itself");
      }
      if (d != nullptr && (!d->is_dir || !d->children.empty())) return Errno(d->is_dir ? ENOTEMPTY : ENOTDIR, new_name);
    } else {
      if (s->remote) {
        LOG_WARN("rename %s/%s refused: the file is on the platform, which cannot move it", s->dataset.c_str(),
                 s->rel.c_str());
        return Errno(EXDEV, "the platform cannot move " + s->rel);
      }
      if (d != nullptr && d->is_dir) return Errno(EISDIR, new_name);
    }
    id = s->entry_id;
    src_ino = s->ino;
    label = s->dataset + "/" + s->rel;
  }
  // The source's upload stops (or, committed, the rename fails with nothing changed), and the
  // new name is journaled, before the tree changes: a failure leaves everything as it was.
  if (!id.empty()) {
    RETURN_IF_ERROR(HoldForNamespace(id, label, "rename"));
    Status st = journal_.RecordRenamed(id, new_dataset, new_rel);
    if (!st.ok()) {
      LOG_ERROR("rename of %s: journaling the new name failed: %s", label.c_str(), st.message().c_str());
      auto e = journal_.Get(id);
      if (e && e->closed && !e->interrupted) scheduler_->Schedule(id, cfg_.settle);
      return st;
    }
  }
  std::string replaced_id;
  bool replaced_open = false, src_closed = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node* np = Find(new_parent);
    Node* s = Find(src_ino);
    Node* d = Child(np, new_name);
    // Replace the destination: its local version (if any) is discarded; a platform file there is
    // overwritten by the renamed one (a reupload).
    if (d != nullptr && d != s) {
      replaced_id = d->entry_id;
      replaced_open = d->open_handles > 0;
      if (d->remote) {
        s->remote = true;
        s->remote_size = d->remote_size;
        s->remote_tag = d->remote_tag;
      }
      if (!replaced_open) d->entry_id.clear();
      Detach(d);
      MaybeFree(d);
    }
    Detach(s);
    s->unlinked = false;
    s->parent = new_parent;
    s->name = new_name;
    np->children[new_name] = s->ino;
    Repath(s);
    src_closed = s->writers == 0;
  }
  if (!replaced_id.empty()) DropVersion(replaced_id, replaced_open, new_name);
  if (id.empty()) return Status::Ok();
  auto e = journal_.Get(id);
  if (e && e->closed && !e->interrupted && src_closed) {
    // Due at once when it leaves a temporary name (rsync's last step); the scheduler keeps a
    // version under a temporary name local.
    scheduler_->Schedule(id, IsTemporaryName(name) ? std::chrono::milliseconds(0) : cfg_.settle);
  }
  return Status::Ok();
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
