// The `ingest` dialect (platform-api.md): bearer token, datasets, presign / reupload presign with
// every part URL at once, complete with ETags, job status.
// Thread safety: thread-safe (HTTP clients come from the pool; the dataset cache is locked).
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "common/json.h"
#include "upload/api_client.h"
#include "upload/dialect.h"

namespace ingestfs::upload {

class IngestDialect : public Dialect {
 public:
  // `api` is the control API base, e.g. http://127.0.0.1:8080/api.
  IngestDialect(std::string api, std::string token, ClientPool& pool, ApiLimits limits = {});
  const char* name() const override { return "ingest"; }

  StatusOr<std::string> EnsureDataset(const std::string& name) override { return datasets_.Ensure(name); }
  Status ForEachFile(const std::string& dataset_id, const std::function<void(RemoteFile&&)>& each) override;
  StatusOr<std::vector<DatasetInfo>> ListDatasets() override { return datasets_.List(); }
  StatusOr<uint64_t> Download(const std::string& dataset_id, const std::string& name, uint64_t size,
                              const std::string& dest) override;
  StatusOr<BeginResult> Begin(const std::string& dataset_id, const cache::Entry& entry, bool overwrite) override;
  StatusOr<std::vector<PartTarget>> RefreshTargets(const cache::UploadSession& session) override;
  Status ReportPart(const cache::UploadSession&, uint32_t, const PartTarget&,
                    const std::map<std::string, std::string>&) override {
    return Status::Ok();
  }
  Status Complete(const cache::UploadSession& session, const std::map<uint32_t, std::string>& etags) override;
  StatusOr<JobState> Poll(const cache::UploadSession& session) override;
  Status Abort(const cache::UploadSession& session) override;

  // Parses a PresignedUploadResponse (exposed for tests). Checks every field and the part plan
  // against `file_size`: a hostile or broken answer is an error, never a crash.
  static StatusOr<BeginResult> ParsePresign(const std::string& body, uint64_t file_size, bool overwrite);
  static StatusOr<JobState> ParseJob(const std::string& body);

 private:
  ApiClient api_;
  Folders datasets_;
};

}  // namespace ingestfs::upload
