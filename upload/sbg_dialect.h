// The `sbg` dialect (platform-api.md): X-SBG-Auth-Token, projects as the top-level folders, and
// the multipart upload where each part's URL is asked for just before the part is sent: the
// client sends exactly the method and headers it is given, accepts only the success codes it is
// given, and reports exactly the response headers it is told to; overwrite is ?overwrite=true.
// The platform lists no checksum: a file's content tag is its size ("size:N").
// Thread safety: thread-safe.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "upload/api_client.h"
#include "upload/dialect.h"

namespace ingestfs::upload {

class SbgDialect : public Dialect {
 public:
  // `part_size` is the size we ask for; the platform's answer decides.
  SbgDialect(std::string api, std::string token, ClientPool& pool, uint64_t part_size = 8ULL << 20,
             ApiLimits limits = {});
  const char* name() const override { return "sbg"; }

  StatusOr<std::string> EnsureDataset(const std::string& name) override { return projects_.Ensure(name); }
  StatusOr<std::vector<DatasetInfo>> ListDatasets() override { return projects_.List(); }
  StatusOr<uint64_t> Download(const std::string& project_id, const std::string& name, uint64_t size,
                              const std::string& dest) override;
  Status ForEachFile(const std::string& project_id, const std::function<void(RemoteFile&&)>& each) override;
  std::string ContentTag(const std::string&, uint64_t size) const override { return "size:" + std::to_string(size); }

  StatusOr<BeginResult> Begin(const std::string& project_id, const cache::Entry& entry, bool overwrite) override;
  StatusOr<std::vector<PartTarget>> RefreshTargets(const cache::UploadSession& session) override;
  bool PartsOnDemand() const override { return true; }
  StatusOr<PartTarget> TargetFor(const cache::UploadSession& session, uint32_t part_number) override;
  Status ReportPart(const cache::UploadSession& session, uint32_t part_number, const PartTarget& target,
                    const std::map<std::string, std::string>& response_headers) override;
  Status Complete(const cache::UploadSession& session, const std::map<uint32_t, std::string>& etags) override;
  StatusOr<JobState> Poll(const cache::UploadSession& session) override;
  Status Abort(const cache::UploadSession& session) override;

  // Parses an init answer / a part answer (exposed for tests): every field checked, a hostile
  // or broken answer is an error, never a crash.
  static StatusOr<BeginResult> ParseInit(const std::string& body, uint64_t file_size, bool overwrite);
  static StatusOr<PartTarget> ParsePart(const std::string& body);

 private:
  std::string UploadPath(const cache::UploadSession& s) const;

  ApiClient api_;
  Folders projects_;
  uint64_t part_size_;
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::string> file_ids_;  // GUARDED_BY(mu_): (project, name) -> id
};

}  // namespace ingestfs::upload
