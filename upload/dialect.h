// Dialect: what differs between platforms, behind one interface, so that the pipeline (parts in
// parallel, retries, journal, progress) is written once. A dialect turns "begin an upload",
// "where does part N go", "report part N", "complete", "how is the job" and "abort" into its
// platform's requests. It knows nothing of the journal or of threads beyond being thread-safe.
//
// Status codes a dialect returns (see upload/errors.h): kAlreadyExists from Begin(new) when the
// file exists (the pipeline retries with overwrite); kNotFound from Begin(overwrite) when it does
// not; kDeadlineExceeded from a part whose URL expired; kUnimplemented-like kNotFound from
// RefreshTargets when the platform cannot re-issue URLs (the pipeline begins again).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cache/journal.h"
#include "common/status.h"
#include "upload/http_client.h"

namespace ingestfs::upload {

// Where and how one part is sent.
struct PartTarget {
  std::string method = "PUT";
  std::string url;
  std::vector<std::string> headers;   // extra request headers the platform requires
  std::vector<long> success_codes = {200};
};

struct RemoteFile {
  std::string name;
  uint64_t size = 0;
  std::string sha256;
  int64_t version = 0;
  int64_t mtime = 0;  // unix seconds, from the platform's updated_at
};

struct DatasetInfo {
  std::string id;
  std::string name;
};

struct BeginResult {
  cache::UploadSession session;
  std::vector<PartTarget> targets;  // one per part (may be empty when fetched per part)
};

enum class JobPhase { kRunning, kCompleted, kFailed };

struct JobState {
  JobPhase phase = JobPhase::kRunning;
  std::string status;   // the platform's word: pending, processing, ...
  std::string message;
  std::string sha256;   // when completed
  int64_t version = 0;  // when known
};

class Dialect {
 public:
  virtual ~Dialect() = default;
  virtual const char* name() const = 0;

  // The id of the dataset (project, prefix) called `name`, created if missing.
  virtual StatusOr<std::string> EnsureDataset(const std::string& name) = 0;
  // Every dataset (paged underneath).
  virtual StatusOr<std::vector<DatasetInfo>> ListDatasets() = 0;
  // Downloads the platform's copy of a file to `dest` (a new file), returning its size.
  virtual StatusOr<uint64_t> Download(const std::string& dataset_id, const std::string& name,
                                      const std::string& dest) = 0;
  // Every file of a dataset (paged underneath).
  virtual StatusOr<std::vector<RemoteFile>> ListFiles(const std::string& dataset_id) = 0;

  virtual StatusOr<BeginResult> Begin(const std::string& dataset_id, const cache::Entry& entry, bool overwrite) = 0;
  // Fresh targets for every part of an existing session (expired URLs, or a resume).
  virtual StatusOr<std::vector<PartTarget>> RefreshTargets(const cache::UploadSession& session) = 0;
  // Called after a part was stored, with the response headers (sbg reports them; ingest: no-op).
  virtual Status ReportPart(const cache::UploadSession& session, uint32_t part_number,
                            const std::map<std::string, std::string>& response_headers) = 0;
  // Completes with the ordered ETags. A complete whose earlier answer was lost and that the
  // platform now calls already completed is success.
  virtual Status Complete(const cache::UploadSession& session, const std::map<uint32_t, std::string>& etags) = 0;
  virtual StatusOr<JobState> Poll(const cache::UploadSession& session) = 0;
  virtual Status Abort(const cache::UploadSession& session) = 0;
};

}  // namespace ingestfs::upload
