// ObjectStore: the reference server's blob storage on local disk, S3-shaped.
//
// Layout under the data dir:
//   objects/<bucket>/<hh>/<sha256(key)>        object bytes
//   uploads/<upload_id>/<part_number>          multipart parts
// Each blob's {"size","etag"} is in its xattr user.ingestfs.meta, or, on a filesystem without
// user xattrs, in a sidecar "<path>.meta".
//   tmp/                                       bodies being received; emptied at start
//   spare/                                     empty files made ahead in idle time (SpareFiles):
//                                              a burst of PUTs takes ready inodes instead of
//                                              making new ones; parts freed after assembly and
//                                              bodies of failed requests go back there
// Keys never become paths (they are hashed), so a hostile key cannot escape the data dir.
// Every publish is temp file + fsync + rename + directory fsync.
// Thread safety: all methods are thread-safe; concurrent writers of one key: last rename wins.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "common/file_util.h"
#include "common/spare_files.h"
#include "common/status.h"
#include "common/strings.h"

namespace ingestfs::server {

struct BlobInfo {
  std::string path;  // where the bytes are
  uint64_t size = 0;
  std::string etag;  // quoted
};

// Receives one request body into a temp file, hashing it (MD5) on the way.
class BlobWriter {
 public:
  // A writer that fails (is destroyed before it was published) gives its file to `spares`.
  BlobWriter(std::string tmp_path, UniqueFd fd, SpareFiles* spares = nullptr)
      : tmp_path_(std::move(tmp_path)), fd_(std::move(fd)), spares_(spares) {}
  ~BlobWriter();
  Status Append(const char* data, size_t len);
  uint64_t size() const { return size_; }
  // Finishes hashing and fsyncs; returns the raw MD5.
  StatusOr<std::string> Finish();
  const std::string& tmp_path() const { return tmp_path_; }
  void Disown() { owned_ = false; }

 private:
  std::string tmp_path_;
  UniqueFd fd_;
  Digest md5_{Digest::Kind::kMd5};
  uint64_t size_ = 0;
  bool owned_ = true;
  SpareFiles* spares_ = nullptr;
};

struct Assembled {
  uint64_t size = 0;
  std::string sha256_hex;
  std::string etag;  // quoted; md5 for one source, "md5(md5s)-N" for N parts
};

class ObjectStore {
 public:
  // `xattrs` false keeps every blob's metadata in sidecar files, as on a filesystem without user
  // xattrs (for tests of that path).
  explicit ObjectStore(std::string root, bool xattrs = true) : root_(std::move(root)), xattrs_(xattrs) {}
  // Makes the directories, empties tmp/ and starts making spare files in idle time (at first
  // kSparesAhead; then as many as the largest burst of new bodies seen, up to kMaxSpares).
  Status Init();
  static constexpr size_t kSparesAhead = 64;
  static constexpr size_t kMaxSpares = 4096;
  size_t spares() const { return spares_ ? spares_->size() : 0; }

  StatusOr<std::unique_ptr<BlobWriter>> NewWriter();
  // Publishes a finished writer as an object or as a part. `md5` is BlobWriter::Finish()'s.
  Status CommitObject(BlobWriter& w, const std::string& md5, const std::string& bucket, const std::string& key);
  Status CommitPart(BlobWriter& w, const std::string& md5, const std::string& upload_id, int part_number);

  std::optional<BlobInfo> StatObject(const std::string& bucket, const std::string& key) const;
  std::optional<BlobInfo> StatPart(const std::string& upload_id, int part_number) const;
  Status DeleteObject(const std::string& bucket, const std::string& key);
  Status CreateUploadDir(const std::string& upload_id);
  Status DeleteUploadDir(const std::string& upload_id);

  // Concatenates `sources` (in order) into object (bucket, key), durably, computing SHA-256.
  // `part_etags` (quoted hex MD5s, one per part) give the multipart ETag "md5(md5s)-N"; empty
  // means a single PUT, whose ETag is the MD5 of the whole.
  StatusOr<Assembled> Assemble(const std::vector<BlobInfo>& sources, const std::vector<std::string>& part_etags,
                               const std::string& bucket, const std::string& key);

 private:
  std::string ObjectPath(const std::string& bucket, const std::string& key) const;
  std::string PartPath(const std::string& upload_id, int part_number) const;
  // Renames `tmp` (fsynced) to `path` with its size and ETag, durably.
  Status Publish(const std::string& tmp, const std::string& path, uint64_t size, const std::string& etag);
  std::optional<BlobInfo> ReadMeta(const std::string& data_path) const;

  std::string root_;
  bool xattrs_ = true;
  std::unique_ptr<SpareFiles> spares_;
};

// S3's ETag for a single PUT: the quoted hex MD5.
std::string QuotedEtag(const std::string& raw_md5);

}  // namespace ingestfs::server
