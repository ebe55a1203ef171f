// Operations that add, move or remove names: mkdir, rmdir, unlink, rename, and the refused links.
// Each stops the affected version's upload first (HoldForNamespace) and changes nothing when the
// platform already holds the name.

#include "fs/ingest_fs.h"

#include <string>

#include "common/log.h"
#include "common/names.h"
#include "common/strings.h"
#include "fs/internal.h"

namespace ingestfs::fs {

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
    if (id.status().code() == Code::kUnavailable || id.status().code() == Code::kBadAnswer) {
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
  if (!c->children.empty() || shelf_->Any(c->ino)) return Errno(ENOTEMPTY, name);
  if (parent == kRootIno) {
    LOG_WARN("rmdir %s refused: datasets are not deleted from the mount", name.c_str());
    return Errno(EPERM, "datasets are not deleted from the mount");
  }
  Detach(c);
  MaybeFree(c);
  return Status::Ok();
}

Status IngestFs::HoldForNamespace(const std::string& id, const std::string& label, const char* op) {
  // Its upload stops first, unless the platform has already been told to take this version
  // (`complete` sent): then the name is the platform's, and the operation fails with nothing
  // changed, exactly as it would for a file listed there.
  bool committed = scheduler_->Hold(id, /*stop_committed=*/false) == upload::Scheduler::HoldResult::kCommitted;
  auto e = journal_.Get(id);
  if (!committed && e && !e->completed) return Status::Ok();
  if (!committed && e) scheduler_->Schedule(id, std::chrono::milliseconds(0));  // held: let it finish
  std::string why = std::string("the platform is taking in this version, and it does not ") +
                    (std::string(op) == "rm" ? "delete" : "move") + " files through the mount";
  LOG_WARN("%s %s refused: %s", op, label.c_str(), why.c_str());
  NoteRefused(std::string(op) + " " + label, why);
  // EPERM for a rename too, not EXDEV: mv would copy it under the new name and then fail to
  // remove the original, leaving two files on the platform.
  return Errno(EPERM, label + " is on the platform");
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
      std::string why = "the file is on the platform, which does not delete files through the mount";
      LOG_WARN("rm %s/%s refused: %s", c->dataset.c_str(), c->rel.c_str(), why.c_str());
      NoteRefused("rm " + c->dataset + "/" + c->rel, why);
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
  if (shelf_->Any(dir->ino)) return true;
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
      NoteRefused("mv " + name + " " + new_name, "datasets are not renamed, and files live inside them");
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
        // EPERM, not EXDEV: mv would copy the folder and fail to remove the files the platform
        // holds, leaving each twice on the platform.
        std::string why = "it has files, and the platform cannot move files";
        LOG_WARN("rename of folder %s/%s refused: %s", s->dataset.c_str(), s->rel.c_str(), why.c_str());
        NoteRefused("mv " + s->dataset + "/" + s->rel + "/ " + new_dataset + "/" + new_rel + "/", why);
        return Errno(EPERM, "folders with files are not moved");
      }
      for (Node* a = np; a != nullptr && a->ino != kRootIno; a = Find(a->parent)) {
        if (a == s) return Errno(EINVAL, "a folder cannot move into itself");
      }
      if (d != nullptr && (!d->is_dir || !d->children.empty() || shelf_->Any(d->ino))) {
        return Errno(d->is_dir ? ENOTEMPTY : ENOTDIR, new_name);
      }
    } else {
      if (s->remote) {
        std::string why = "the file is on the platform, which cannot move it";
        LOG_WARN("rename %s/%s refused: %s", s->dataset.c_str(), s->rel.c_str(), why.c_str());
        NoteRefused("mv " + s->dataset + "/" + s->rel + " " + new_dataset + "/" + new_rel, why);
        return Errno(EPERM, "the platform cannot move " + s->rel);
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

}  // namespace ingestfs::fs
