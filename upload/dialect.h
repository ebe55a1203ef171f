// Dialect: what differs between platforms, behind one interface, so that the pipeline (parts in
// parallel, retries, journal, progress) is written once. A dialect turns "begin an upload",
// "where does part N go", "report part N", "complete", "how is the job" and "abort" into its
// platform's requests. It knows nothing of the journal or of threads beyond being thread-safe.
//
// Three shapes of upload fit this boundary:
//   ingest: Begin hands out every part's URL at once; RefreshTargets re-issues them all.
//   sbg:    Begin hands out none (PartsOnDemand); TargetFor asks for one part's URL just before
//           it is sent (and again once it expired); ReportPart reports the named headers.
//   aplos:  one presigned POST form (a single part with form fields); Complete and Poll have
//           nothing to ask (the store's 204 is the platform's confirmation).
//
// Status codes a dialect returns (see upload/errors.h): kAlreadyExists from Begin(new) when the
// file exists (the pipeline retries with overwrite); kNotFound from Begin(overwrite) when it does
// not; kDeadlineExceeded from a part whose URL expired; kUnimplemented-like kNotFound from
// RefreshTargets when the platform cannot re-issue URLs (the pipeline begins again).
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
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
  std::vector<std::string> headers;   // request headers the platform requires, "Name: value"
  std::vector<long> success_codes = {200};
  std::time_t expires = 0;            // when the URL stops working (0: not said)
  std::vector<std::string> report_headers;  // response headers the platform wants reported
  // A presigned POST: these form fields in order, then the part's bytes as the field "file".
  bool form = false;
  std::vector<std::pair<std::string, std::string>> form_fields;
  // Whether we may add Content-MD5 (the platform told us exactly which headers to send: no).
  bool content_md5 = true;
  // Whether the store must answer with an ETag (an S3 PUT does; a POST's 204 may not).
  bool etag_required = true;
};

struct RemoteFile {
  std::string name;
  uint64_t size = 0;
  std::string sha256;
  int64_t version = 0;
  int64_t mtime = 0;  // unix seconds, from the platform's updated_at
  // What identifies this content on the platform: its sha256 where the listing gives one,
  // otherwise what the dialect's ContentTag() makes of what it gives (see below).
  std::string tag;
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
  // Downloads the platform's copy of a file, listed at `size` bytes, to `dest` (a new file);
  // returns its size. A body of any other size is an error (ApiClient::DownloadTo).
  virtual StatusOr<uint64_t> Download(const std::string& dataset_id, const std::string& name, uint64_t size,
                                      const std::string& dest) = 0;
  // Every file of a dataset (paged underneath), each handed to `each` as its page is read, so
  // that a dataset of a million files is never held whole in memory.
  virtual Status ForEachFile(const std::string& dataset_id, const std::function<void(RemoteFile&&)>& each) = 0;
  // The same, collected (small listings, tests).
  StatusOr<std::vector<RemoteFile>> ListFiles(const std::string& dataset_id) {
    std::vector<RemoteFile> out;
    RETURN_IF_ERROR(ForEachFile(dataset_id, [&out](RemoteFile&& f) { out.push_back(std::move(f)); }));
    return out;
  }

  // The largest file one upload may carry on this platform (checked before presign, and by the
  // mount when a file is closed).
  virtual uint64_t MaxFileSize() const { return 5ULL << 40; }
  // The tag (see RemoteFile::tag) the platform's listing will show for content we uploaded.
  virtual std::string ContentTag(const std::string& sha256, uint64_t /*size*/) const { return sha256; }

  virtual StatusOr<BeginResult> Begin(const std::string& dataset_id, const cache::Entry& entry, bool overwrite) = 0;
  // Fresh targets for every part of an existing session (expired URLs, or a resume). A dialect
  // with PartsOnDemand() returns none, after checking that the session still takes parts.
  virtual StatusOr<std::vector<PartTarget>> RefreshTargets(const cache::UploadSession& session) = 0;
  // Whether part targets come one at a time from TargetFor rather than from Begin.
  virtual bool PartsOnDemand() const { return false; }
  virtual StatusOr<PartTarget> TargetFor(const cache::UploadSession& /*session*/, uint32_t /*part_number*/) {
    return Status(Code::kInternal, std::string(name()) + " hands out every URL at once");
  }
  // Called after a part was stored, with its target and the response headers (lowercase names);
  // sbg reports the headers the target names, the others have nothing to report.
  virtual Status ReportPart(const cache::UploadSession& session, uint32_t part_number, const PartTarget& target,
                            const std::map<std::string, std::string>& response_headers) = 0;
  // Completes with the ordered ETags. A complete whose earlier answer was lost and that the
  // platform now calls already completed is success.
  virtual Status Complete(const cache::UploadSession& session, const std::map<uint32_t, std::string>& etags) = 0;
  virtual StatusOr<JobState> Poll(const cache::UploadSession& session) = 0;
  virtual Status Abort(const cache::UploadSession& session) = 0;
};

}  // namespace ingestfs::upload
