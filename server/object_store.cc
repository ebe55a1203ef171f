#include "server/object_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <vector>

#include "common/json.h"
#include "common/strings.h"

namespace ingestfs::server {

std::string QuotedEtag(const std::string& raw_md5) { return "\"" + HexEncode(raw_md5) + "\""; }

BlobWriter::~BlobWriter() {
  if (!owned_) return;
  fd_.Reset();
  if (spares_ != nullptr) spares_->Give(tmp_path_);
  else ::unlink(tmp_path_.c_str());
}

Status BlobWriter::Append(const char* data, size_t len) {
  md5_.Update(data, len);
  size_ += len;
  return WriteAll(fd_.get(), data, len, tmp_path_);
}

StatusOr<std::string> BlobWriter::Finish() {
  if (::fsync(fd_.get()) != 0) return Status::FromErrno(errno, "fsync " + tmp_path_);
  fd_.Reset();
  return md5_.Finish();
}

Status ObjectStore::Init() {
  RETURN_IF_ERROR(MakeDirs(root_ + "/objects"));
  RETURN_IF_ERROR(MakeDirs(root_ + "/uploads"));
  RETURN_IF_ERROR(RemoveTree(root_ + "/tmp"));
  RETURN_IF_ERROR(MakeDirs(root_ + "/tmp"));
  spares_ = std::make_unique<SpareFiles>(root_ + "/spare", kMaxSpares);
  spares_->StartFiller(kSparesAhead, true);
  return Status::Ok();
}

std::string ObjectStore::ObjectPath(const std::string& bucket, const std::string& key) const {
  std::string h = HexEncode(Sha256(key));
  return root_ + "/objects/" + HexEncode(Sha256(bucket)).substr(0, 16) + "/" + h.substr(0, 2) + "/" + h;
}

std::string ObjectStore::PartPath(const std::string& upload_id, int part_number) const {
  return root_ + "/uploads/" + upload_id + "/" + std::to_string(part_number);
}

StatusOr<std::unique_ptr<BlobWriter>> ObjectStore::NewWriter() {
  std::string path = root_ + "/tmp/" + RandomHex(12);
  // Making a file is the dearest step of a small PUT on some filesystems (ext4 without a journal
  // scans past every recently freed inode): take a ready one when there is one.
  bool spare = spares_ && spares_->Take(path);
  UniqueFd fd(::open(path.c_str(), spare ? O_WRONLY | O_CLOEXEC : O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return Status::FromErrno(errno, "create " + path);
  return std::make_unique<BlobWriter>(path, std::move(fd), spares_.get());
}

namespace {

// Where a filesystem has user xattrs, an object's size and ETag ride on its own inode, so the
// one rename that publishes the bytes publishes them too, and no second file is made per object
// (making and removing files is what this store spends most of its time on). Elsewhere (tmpfs
// before Linux 6.6, some network filesystems) they go to a sidecar "<path>.meta".
constexpr char kMetaXattr[] = "user.ingestfs.meta";

bool NoXattrs(int err) { return err == ENOTSUP || err == EOPNOTSUPP; }

std::string MetaJson(uint64_t size, const std::string& etag) {
  return json::Object([&](json::Writer& w) {
    json::KeyInt(w, "size", static_cast<int64_t>(size));
    json::KeyString(w, "etag", etag);
  });
}

}  // namespace

Status ObjectStore::Publish(const std::string& tmp, const std::string& path, uint64_t size, const std::string& etag) {
  std::string meta = MetaJson(size, etag);
  if (xattrs_) {
    if (::setxattr(tmp.c_str(), kMetaXattr, meta.data(), meta.size(), 0) == 0) return RenameDurable(tmp, path);
    if (!NoXattrs(errno)) return Status::FromErrno(errno, "set the metadata of " + tmp);
  }
  // Drop the old sidecar first, so a crash between the two renames leaves no stale ETag.
  ::unlink((path + ".meta").c_str());
  RETURN_IF_ERROR(RenameDurable(tmp, path));
  return WriteFileAtomic(path + ".meta", meta);
}

std::optional<BlobInfo> ObjectStore::ReadMeta(const std::string& data_path) const {
  struct stat st;
  if (::stat(data_path.c_str(), &st) != 0) return std::nullopt;
  std::string text(512, '\0');
  ssize_t n = xattrs_ ? ::getxattr(data_path.c_str(), kMetaXattr, text.data(), text.size()) : -1;
  if (!xattrs_) errno = ENODATA;
  if (n >= 0) {
    text.resize(static_cast<size_t>(n));
  } else if (errno == ENODATA || NoXattrs(errno)) {
    auto sidecar = ReadFileToString(data_path + ".meta");
    if (!sidecar.ok()) return std::nullopt;
    text = std::move(*sidecar);
  } else {
    return std::nullopt;
  }
  auto doc = json::Parse(text, "meta");
  if (!doc.ok()) return std::nullopt;
  auto etag = json::GetString(*doc, "etag");
  auto size = json::GetInt(*doc, "size");
  if (!etag.ok() || !size.ok() || static_cast<uint64_t>(*size) != static_cast<uint64_t>(st.st_size)) {
    return std::nullopt;
  }
  return BlobInfo{data_path, static_cast<uint64_t>(st.st_size), *etag};
}

Status ObjectStore::CommitObject(BlobWriter& w, const std::string& md5, const std::string& bucket,
                                 const std::string& key) {
  std::string path = ObjectPath(bucket, key);
  RETURN_IF_ERROR(MakeDirs(DirName(path)));
  RETURN_IF_ERROR(Publish(w.tmp_path(), path, w.size(), QuotedEtag(md5)));
  w.Disown();
  return Status::Ok();
}

Status ObjectStore::CommitPart(BlobWriter& w, const std::string& md5, const std::string& upload_id,
                               int part_number) {
  RETURN_IF_ERROR(Publish(w.tmp_path(), PartPath(upload_id, part_number), w.size(), QuotedEtag(md5)));
  w.Disown();
  return Status::Ok();
}

std::optional<BlobInfo> ObjectStore::StatObject(const std::string& bucket, const std::string& key) const {
  return ReadMeta(ObjectPath(bucket, key));
}

std::optional<BlobInfo> ObjectStore::StatPart(const std::string& upload_id, int part_number) const {
  return ReadMeta(PartPath(upload_id, part_number));
}

Status ObjectStore::DeleteObject(const std::string& bucket, const std::string& key) {
  std::string path = ObjectPath(bucket, key);
  ::unlink((path + ".meta").c_str());
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Status::FromErrno(errno, "remove " + path);
  return Status::Ok();
}

Status ObjectStore::CreateUploadDir(const std::string& upload_id) {
  return MakeDirs(root_ + "/uploads/" + upload_id);
}

Status ObjectStore::DeleteUploadDir(const std::string& upload_id) {
  // The parts' files become spares (their sidecars, where there are any, are removed).
  std::string dir = root_ + "/uploads/" + upload_id;
  if (spares_) {
    for (const std::string& n : ListDir(dir).value_or({})) {
      if (!EndsWith(n, ".meta")) spares_->Give(dir + "/" + n);
    }
  }
  return RemoveTree(dir);
}

StatusOr<Assembled> ObjectStore::Assemble(const std::vector<BlobInfo>& sources,
                                          const std::vector<std::string>& part_etags, const std::string& bucket,
                                          const std::string& key) {
  // One PUT's bytes become the object as they are, under a second name (a hard link): no copy,
  // and no new file. Parts are concatenated into a new file.
  bool as_is = sources.size() == 1 && part_etags.empty();
  std::unique_ptr<BlobWriter> w;
  if (!as_is) {
    ASSIGN_OR_RETURN(w, NewWriter());
  }
  Digest sha(Digest::Kind::kSha256);
  std::unique_ptr<char[]> buf;
  if (w) buf = std::make_unique_for_overwrite<char[]>(1 << 20);
  uint64_t total = 0;
  for (const BlobInfo& src : sources) {
    UniqueFd in(::open(src.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in.valid()) return Status::FromErrno(errno, "open " + src.path);
    uint64_t off = 0;
    if (!w) {
      ASSIGN_OR_RETURN(off, DigestRange(in.get(), 0, src.size, sha, src.path));
    }
    while (w) {
      ASSIGN_OR_RETURN(size_t n, PreadAll(in.get(), buf.get(), 1 << 20, off, src.path));
      if (n == 0) break;
      sha.Update(buf.get(), n);
      RETURN_IF_ERROR(w->Append(buf.get(), n));
      off += n;
    }
    if (off != src.size) return Status(Code::kDataLoss, src.path + " changed while it was being read");
    total += off;
  }
  Assembled out;
  out.size = total;
  out.sha256_hex = HexEncode(sha.Finish());
  std::string tmp;
  if (as_is) {
    out.etag = sources[0].etag;
    tmp = root_ + "/tmp/" + RandomHex(12);
    if (::link(sources[0].path.c_str(), tmp.c_str()) != 0) return Status::FromErrno(errno, "link " + sources[0].path);
  } else {
    ASSIGN_OR_RETURN(std::string whole_md5, w->Finish());
    (void)whole_md5;
    std::string cat;
    for (const std::string& e : part_etags) {
      auto raw = HexDecode(NormalizeEtag(e));
      if (!raw.ok()) return Status(Code::kDataLoss, "a part's ETag is not hex: " + e);
      cat += *raw;
    }
    out.etag = "\"" + HexEncode(Md5(cat)) + "-" + std::to_string(part_etags.size()) + "\"";
    tmp = w->tmp_path();
  }
  std::string path = ObjectPath(bucket, key);
  Status st = MakeDirs(DirName(path));
  if (st.ok()) st = Publish(tmp, path, out.size, out.etag);
  if (!st.ok()) {
    if (as_is) ::unlink(tmp.c_str());
    return st;
  }
  if (w) w->Disown();
  return out;
}

}  // namespace ingestfs::server
