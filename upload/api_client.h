// ApiClient: what the three dialects share when they talk to a platform's JSON control API:
// the base URL and credentials header, requests through the connection pool, answers checked
// (HTTP status to Status, JSON parsed), "items"/"total" paging, and fetching a presigned GET
// into a file. A malformed answer is an error naming the step, never a crash.
// Thread safety: thread-safe (clients come from the pool).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"
#include "upload/dialect.h"
#include "upload/health.h"
#include "upload/http_client.h"

namespace ingestfs::upload {

// Bounds on what one answer of the platform may cost, so that a platform that never stops
// (an endless listing) cannot hold a caller without end.
struct ApiLimits {
  std::chrono::seconds listing_timeout{60};  // one listing, all its pages (mount option listing_timeout)
  int64_t max_listed_items = 1000000;        // items in one listing
  std::chrono::seconds call_timeout{120};    // one control-API call
  // Told how every call went (an HTTP answer, or none), when given; outlives the client.
  PlatformHealth* health = nullptr;
};

class ApiClient {
 public:
  // `api` is the control API base, e.g. http://127.0.0.1:8080/api; `auth` the header that
  // carries the token ("Authorization: Bearer ...", "X-SBG-Auth-Token: ...").
  ApiClient(std::string api, std::string auth, ClientPool& pool, ApiLimits limits = {});

  // One control-API call, bounded by limits.call_timeout (or the smaller `timeout` given).
  StatusOr<HttpResponse> Call(const std::string& method, const std::string& path, const std::string& body,
                              const std::string& step, std::chrono::seconds timeout = std::chrono::seconds::max());
  // Call, then the status checked (StatusFromHttp) and the body parsed as JSON.
  StatusOr<json::Document> CallJson(const std::string& method, const std::string& path, const std::string& body,
                                    const std::string& step,
                                    std::chrono::seconds timeout = std::chrono::seconds::max());
  // Walks every page of a list endpoint ("?limit=&offset=", answers {"items":[...],"total":N}).
  // Bounded: a listing longer than limits.max_listed_items (or its pages), slower than
  // limits.listing_timeout, or interrupted (common/interrupt.h) fails, naming how far it got.
  Status ForEachItem(const std::string& path, const std::string& step,
                     const std::function<void(const json::Value&)>& item);
  // GETs a presigned URL into `dest` (a new file), fsynced; returns its size. Bounded by the
  // listed `size`: a body that grows past it is cut off, and one of any other size is an error
  // (a platform that streams without end, or a file changed since it was listed); the transfer
  // may take 120 s plus a second per kMinDownloadRate bytes; an interrupted caller stops it.
  StatusOr<uint64_t> DownloadTo(const std::string& url, const std::string& dest, uint64_t size,
                                const std::string& step);
  static constexpr uint64_t kMinDownloadRate = 64 * 1024;

  // "the platform's answer to STEP is malformed: WHY" (kBadAnswer: transient, a broken answer
  // may mend, until it has lasted RetryPolicy::bad_answers_for).
  static Status Malformed(const std::string& step, const Status& why);
  // One file of a platform's listing (name, size, mtime from `modified`, ISO 8601), or nullopt
  // when its size is negative or absurd (over kMaxListedSize) or its name breaks the naming
  // rules (then with a warning naming `step`). The dialect adds what else its listing gives.
  static constexpr uint64_t kMaxListedSize = 5ULL << 40;  // S3's largest object: 5 TiB
  static std::optional<RemoteFile> ListedFile(const std::string& step, const std::string& name, int64_t size,
                                              const std::string& modified);
  // An http(s) URL of reasonable length, or an error naming `what` (the URL redacted).
  static Status CheckUrl(const std::string& url, const std::string& what);

 private:
  std::string api_;
  std::string auth_;
  ClientPool& pool_;
  ApiLimits limits_;
};

// The platform's top-level folders where they are a listed, creatable collection ({"id","name"}
// items at `path`; POST {"name"} creates one): ingest's datasets, sbg's projects. Ids are cached.
// Thread safety: thread-safe.
class Folders {
 public:
  // `noun` names one in messages ("dataset", "project").
  Folders(ApiClient& api, std::string path, std::string noun) : api_(api), path_(std::move(path)), noun_(std::move(noun)) {}
  StatusOr<std::vector<DatasetInfo>> List();
  // The id of the folder `name`, created if missing (one created meanwhile by someone else is found).
  StatusOr<std::string> Ensure(const std::string& name);

 private:
  StatusOr<std::optional<std::string>> Find(const std::string& name);

  ApiClient& api_;
  std::string path_;
  std::string noun_;
  std::mutex mu_;
  std::map<std::string, std::string> ids_;  // GUARDED_BY(mu_): name -> id
};

}  // namespace ingestfs::upload
