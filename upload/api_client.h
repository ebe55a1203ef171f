// ApiClient: what the three dialects share when they talk to a platform's JSON control API:
// the base URL and credentials header, requests through the connection pool, answers checked
// (HTTP status to Status, JSON parsed), "items"/"total" paging, and fetching a presigned GET
// into a file. A malformed answer is an error naming the step, never a crash.
// Thread safety: thread-safe (clients come from the pool).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"
#include "upload/http_client.h"

namespace ingestfs::upload {

class ApiClient {
 public:
  // `api` is the control API base, e.g. http://127.0.0.1:8080/api; `auth` the header that
  // carries the token ("Authorization: Bearer ...", "X-SBG-Auth-Token: ...").
  ApiClient(std::string api, std::string auth, ClientPool& pool);

  StatusOr<HttpResponse> Call(const std::string& method, const std::string& path, const std::string& body,
                              const std::string& step);
  // Call, then the status checked (StatusFromHttp) and the body parsed as JSON.
  StatusOr<json::Document> CallJson(const std::string& method, const std::string& path, const std::string& body,
                                    const std::string& step);
  // Walks every page of a list endpoint ("?limit=&offset=", answers {"items":[...],"total":N}).
  Status ForEachItem(const std::string& path, const std::string& step,
                     const std::function<void(const json::Value&)>& item);
  // GETs a presigned URL into `dest` (a new file), fsynced; returns its size.
  StatusOr<uint64_t> DownloadTo(const std::string& url, const std::string& dest, const std::string& step);

  // "the platform's answer to STEP is malformed: WHY" (transient: a broken answer may mend).
  static Status Malformed(const std::string& step, const Status& why);
  // An http(s) URL of reasonable length, or an error naming `what` (the URL redacted).
  static Status CheckUrl(const std::string& url, const std::string& what);

 private:
  std::string api_;
  std::string auth_;
  ClientPool& pool_;
};

}  // namespace ingestfs::upload
