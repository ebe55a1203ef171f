#include "server/object_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "common/json.h"
#include "common/strings.h"

namespace ingestfs::server {

std::string QuotedEtag(const std::string& raw_md5) { return "\"" + HexEncode(raw_md5) + "\""; }

BlobWriter::~BlobWriter() {
  if (owned_) ::unlink(tmp_path_.c_str());
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
  return MakeDirs(root_ + "/tmp");
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
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return Status::FromErrno(errno, "create " + path);
  return std::make_unique<BlobWriter>(path, std::move(fd));
}

Status ObjectStore::WriteMeta(const std::string& data_path, uint64_t size, const std::string& etag,
                              const std::string& key) {
  return WriteFileAtomic(data_path + ".meta", json::Object([&](json::Writer& w) {
    json::KeyString(w, "key", key);
    json::KeyInt(w, "size", static_cast<int64_t>(size));
    json::KeyString(w, "etag", etag);
  }));
}

std::optional<BlobInfo> ObjectStore::ReadMeta(const std::string& data_path) {
  struct stat st;
  if (::stat(data_path.c_str(), &st) != 0) return std::nullopt;
  auto text = ReadFileToString(data_path + ".meta");
  if (!text.ok()) return std::nullopt;
  auto doc = json::Parse(*text, "meta");
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
  // Drop the old meta first, so a crash between the two renames leaves no stale ETag.
  ::unlink((path + ".meta").c_str());
  RETURN_IF_ERROR(RenameDurable(w.tmp_path(), path));
  w.Disown();
  return WriteMeta(path, w.size(), QuotedEtag(md5), key);
}

Status ObjectStore::CommitPart(BlobWriter& w, const std::string& md5, const std::string& upload_id,
                               int part_number) {
  std::string path = PartPath(upload_id, part_number);
  ::unlink((path + ".meta").c_str());
  RETURN_IF_ERROR(RenameDurable(w.tmp_path(), path));
  w.Disown();
  return WriteMeta(path, w.size(), QuotedEtag(md5), "");
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
  return RemoveTree(root_ + "/uploads/" + upload_id);
}

StatusOr<Assembled> ObjectStore::Assemble(const std::vector<BlobInfo>& sources,
                                          const std::vector<std::string>& part_etags, const std::string& bucket,
                                          const std::string& key) {
  ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> w, NewWriter());
  Digest sha(Digest::Kind::kSha256);
  std::vector<char> buf(1 << 20);
  for (const BlobInfo& src : sources) {
    UniqueFd in(::open(src.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in.valid()) return Status::FromErrno(errno, "open " + src.path);
    uint64_t off = 0;
    for (;;) {
      ASSIGN_OR_RETURN(size_t n, PreadAll(in.get(), buf.data(), buf.size(), off, src.path));
      if (n == 0) break;
      sha.Update(buf.data(), n);
      RETURN_IF_ERROR(w->Append(buf.data(), n));
      off += n;
    }
  }
  ASSIGN_OR_RETURN(std::string whole_md5, w->Finish());
  Assembled out;
  out.size = w->size();
  out.sha256_hex = HexEncode(sha.Finish());
  if (part_etags.empty()) {
    out.etag = QuotedEtag(whole_md5);
  } else {
    std::string cat;
    for (const std::string& e : part_etags) {
      std::string hex = NormalizeEtag(e);
      for (size_t i = 0; i + 1 < hex.size(); i += 2) {
        cat.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
      }
    }
    out.etag = "\"" + HexEncode(Md5(cat)) + "-" + std::to_string(part_etags.size()) + "\"";
  }
  std::string path = ObjectPath(bucket, key);
  RETURN_IF_ERROR(MakeDirs(DirName(path)));
  ::unlink((path + ".meta").c_str());
  RETURN_IF_ERROR(RenameDurable(w->tmp_path(), path));
  w->Disown();
  RETURN_IF_ERROR(WriteMeta(path, out.size, out.etag, key));
  return out;
}

}  // namespace ingestfs::server
