// The `aplos` dialect (platform-api.md): bearer token; no datasets, a top-level folder is a name
// prefix; one presigned POST per file (the form's fields in order, then the file, streamed from
// the cache copy), 204 No Content is success; a new presign for the same name overwrites. A file
// larger than one POST may carry is refused before anything is sent (and by the mount at close).
// The platform lists no checksum: a file's content tag is its size ("size:N").
// Thread safety: thread-safe.
#pragma once

#include <string>

#include "upload/api_client.h"
#include "upload/dialect.h"

namespace ingestfs::upload {

class AplosDialect : public Dialect {
 public:
  static constexpr uint64_t kMaxPost = 5ULL << 30;  // what one S3 POST carries at most

  // `max_post`: the platform's single-POST limit, when it is set lower than S3's.
  AplosDialect(std::string api, std::string token, ClientPool& pool, uint64_t max_post = kMaxPost,
               ApiLimits limits = {});
  const char* name() const override { return "aplos"; }

  StatusOr<std::string> EnsureDataset(const std::string& name) override;
  StatusOr<std::vector<DatasetInfo>> ListDatasets() override;
  StatusOr<uint64_t> Download(const std::string& prefix, const std::string& name, uint64_t size,
                              const std::string& dest) override;
  Status ForEachFile(const std::string& prefix, const std::function<void(RemoteFile&&)>& each) override;
  uint64_t MaxFileSize() const override { return max_post_; }
  std::string ContentTag(const std::string&, uint64_t size) const override { return "size:" + std::to_string(size); }

  StatusOr<BeginResult> Begin(const std::string& prefix, const cache::Entry& entry, bool overwrite) override;
  StatusOr<std::vector<PartTarget>> RefreshTargets(const cache::UploadSession& session) override;
  Status ReportPart(const cache::UploadSession&, uint32_t, const PartTarget&,
                    const std::map<std::string, std::string>&) override {
    return Status::Ok();
  }
  Status Complete(const cache::UploadSession&, const std::map<uint32_t, std::string>&) override { return Status::Ok(); }
  StatusOr<JobState> Poll(const cache::UploadSession& session) override;
  Status Abort(const cache::UploadSession&) override { return Status::Ok(); }

  // Parses a generate-upload-url answer (exposed for tests).
  static StatusOr<BeginResult> ParseUploadUrl(const std::string& body, uint64_t file_size, bool overwrite);

 private:
  ApiClient api_;
  uint64_t max_post_;
};

}  // namespace ingestfs::upload
