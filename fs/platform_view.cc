// The platform's view: listings of datasets and files (cached for listing_ttl) merged into the
// tree, and local copies of platform files for reading.

#include "fs/ingest_fs.h"

#include <string>

#include "common/crypto.h"
#include "common/log.h"
#include "common/strings.h"
#include "fs/internal.h"

namespace ingestfs::fs {

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
  // Merged a page at a time (under the lock, which FUSE requests take between pages): a large
  // dataset's listing is never held whole, only its entries on the shelves.
  std::vector<upload::RemoteFile> page;
  auto merge = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    if (Node* ds = Find(dataset_ino)) {
      shelf_->Batch([&] {
        for (const upload::RemoteFile& f : page) MergeListed(ds, name, f);
      });
    }
    page.clear();
  };
  Status listed = dialect_.ForEachFile(id, [&](upload::RemoteFile&& f) {
    page.push_back(std::move(f));
    if (page.size() >= kListingPage) merge();
  });
  if (listed.ok()) merge();
  std::lock_guard<std::mutex> lock(mu_);
  Node* ds = Find(dataset_ino);
  if (ds == nullptr) return;
  ds->listing = false;
  if (!listed.ok()) {
    // The pages read before the failure are merged (they are the platform's); the rest waits.
    LOG_WARN("listing dataset %s failed (showing what is known): %s", name.c_str(), listed.message().c_str());
    ds->listed_at = std::chrono::steady_clock::now() - cfg_.listing_ttl + std::chrono::seconds(5);
    return;
  }
  ds->listed_at = std::chrono::steady_clock::now();
  if (shelved_ > cfg_.listing_cache_max) BoundShelves(ds);
}

void IngestFs::MergeListed(Node* ds, const std::string& name, const upload::RemoteFile& f) {
  // A file nothing holds is only a listing entry on its folder's shelf; a node is updated.
  size_t slash = f.name.rfind('/');
  Node* dir = slash == std::string::npos ? ds : EnsurePath(ds, f.name.substr(0, slash), true);
  std::string base = slash == std::string::npos ? f.name : f.name.substr(slash + 1);
  Node* n = nullptr;
  if (dir != nullptr) {
    auto held = dir->children.find(base);
    if (held != dir->children.end()) n = Find(held->second);
  }
  if (dir == nullptr || (n != nullptr && n->is_dir)) {
    LOG_WARN("dataset %s: %s clashes with a folder of the same name; left out", name.c_str(), f.name.c_str());
    return;
  }
  if (n == nullptr) {
    std::optional<cache::ListingShelf::Entry> had = shelf_->Get(dir->ino, base);
    if (had && had->tag == f.tag) return;
    std::optional<int64_t> kept = mtimes_ != nullptr ? mtimes_->Get(name, f.name, f.tag) : std::nullopt;
    // Someone else's content when it changed: not our upload's status or copy (last_entry 0).
    cache::ListingShelf::Entry e{f.size, kept ? *kept : (f.mtime > 0 ? f.mtime : Now()), f.tag, 0};
    StatusOr<bool> put = shelf_->Put(dir->ino, base, e);
    if (put.ok()) {
      if (*put) ++shelved_;
      return;
    }
    n = AddChild(dir, base, false);  // no room on the shelf (logged once): a node holds it
    n->mtime = e.mtime;
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
  auto size = dialect_.Download(id, rel, remote_size, dest);
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

}  // namespace ingestfs::fs
