// What the three control APIs of the reference server share: FastAPI-style paging and body
// checks, list answers, and upload jobs (a job is the server's record of one upload, whichever
// dialect started it; all of them end in the same store).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "server/context.h"
#include "server/http.h"

namespace ingestfs::server {

// Reads ?limit=&offset= (limit 1..1000, default 100); replies 422 and returns nullopt when bad.
std::optional<Page> ParsePage(Call& call);

// Parses the JSON body as an object; replies 422 and returns nullopt otherwise.
std::optional<json::Document> ParseBody(Call& call);

// Field checks that collect FastAPI-style issues.
class BodyCheck {
 public:
  explicit BodyCheck(const json::Document& doc) : doc_(doc) {}
  std::optional<std::string> String(const char* field, bool required);
  std::optional<int64_t> NonNegativeInt(const char* field, int64_t max, bool required = true);
  // A dataset name (`dataset`) or a file name (platform-api.md's rules).
  void Name(const char* field, const std::optional<std::string>& value, bool dataset);
  void Add(ValidationIssue issue) { issues_.push_back(std::move(issue)); }
  // Replies 422 and returns false when any check failed.
  bool Ok(Call& call);

 private:
  const json::Document& doc_;
  std::vector<ValidationIssue> issues_;
};

template <typename T, typename F>
std::string ListJson(const std::vector<T>& items, int64_t total, F write_item) {
  return json::Object([&](json::Writer& w) {
    json::Key(w, "items");
    w.StartArray();
    for (const T& item : items) write_item(w, item);
    w.EndArray();
    json::KeyInt(w, "total", total);
  });
}

// The top-level folders of a dialect that has them as a collection (ingest's datasets, sbg's
// projects; both are datasets of the store): GET `path` pages them, POST `path` {"name"} creates
// one (201; 409 when taken, 422 for a bad name). `write` writes one as the dialect shows it.
void RegisterFolderRoutes(Router& r, ServerContext& ctx, const std::string& path, Plane plane,
                          void (*write)(json::Writer&, const Dataset&));

// The part size for a multipart upload of `size` bytes starting from `wanted`: within 5 MiB..5 GiB
// and doubled until at most 10,000 parts are needed.
uint64_t PlanPartSize(uint64_t wanted, uint64_t size);

// Records a new job awaiting its upload to "staging/<job_id>/<filename>". With `part_size` > 0
// it is a multipart upload of ceil(size / part_size) parts (at least one); otherwise one object.
StatusOr<Job> NewJob(ServerContext& ctx, const Dataset& ds, const std::string& filename, uint64_t size,
                     const std::string& content_type, bool reupload, const std::string& dialect,
                     uint64_t part_size);

// The job whose staging key is `key`, if any ("staging/<job_id>/...").
std::optional<Job> JobOfStagingKey(const ServerContext& ctx, const std::string& key);

// The `complete` checks: every planned part listed in order ({"etag","part_number"} objects),
// with the ETag the store holds and the planned size. Replies 400 and returns false on the first
// problem.
bool CheckParts(Call& call, ServerContext& ctx, const Job& job, const json::Value& parts);

// Frees what an aborted job had stored.
void DiscardUploadData(ServerContext& ctx, const Job& job);

// What the store holds of a job's upload: over the built-in store, its blobs; over an external
// S3 store (ctx.s3), HeadObject of the staging key, or one ListParts for every part. A store
// that does not answer is an error (kUnavailable), never a missing object or part.
StatusOr<std::optional<BlobInfo>> StagedObject(const ServerContext& ctx, const Job& job);
// Index n-1 holds part n (1..job.num_parts), nullopt where the store has none.
StatusOr<std::vector<std::optional<BlobInfo>>> StagedParts(const ServerContext& ctx, const Job& job);

}  // namespace ingestfs::server
