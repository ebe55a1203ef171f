// Dialect `aplos` (platform-api.md, "Dialect aplos"): one presigned POST per file, a form whose
// policy bounds the key and the size; the data plane answers 204 and the file is there.
// Auth: Authorization: Bearer.
//
// One store behind every dialect: the first segment of a file_name is the dataset of that name
// (created on the first upload into it), the rest is the file's name in it. The POST goes to the
// job's staging key; the data plane publishes the file before it answers (see data_plane.cc).
//
// Where the contract is silent: `POST /nca-engine/generate-download-url` {"file_name"} answers
// {"presigned":{"method_type":"get","url","expires_in"}} for reading a file (the mirror of the
// upload request); `GET /nca-engine/files` takes an optional prefix and is not paged.
#include <ctime>
#include <mutex>
#include <optional>

#include "common/json.h"
#include "common/log.h"
#include "common/names.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "server/api_common.h"
#include "server/processor.h"
#include "server/routes.h"

namespace ingestfs::server {

namespace {

// "run-42/plate1/A01.tif" -> ("run-42", "plate1/A01.tif"); nullopt when either part breaks the
// naming rules (the reply, 422, is sent).
std::optional<std::pair<std::string, std::string>> SplitFileName(Call& c, const std::optional<std::string>& file_name) {
  if (!file_name) return std::nullopt;
  size_t slash = file_name->find('/');
  Status st = slash == std::string::npos
                  ? Status(Code::kInvalidArgument, "a file name must start with a folder (its prefix): 'folder/name'")
                  : ValidateDatasetName(file_name->substr(0, slash));
  if (st.ok()) st = ValidateFileName(file_name->substr(slash + 1));
  if (!st.ok()) {
    ReplyValidation(c.res, {{{"body", "file_name"}, "Value error, " + st.message(), "value_error", JsonQuote(*file_name),
                             "{\"error\":{}}"}});
    return std::nullopt;
  }
  return std::make_pair(file_name->substr(0, slash), file_name->substr(slash + 1));
}

// Every file whose full name ("dataset/name") starts with `prefix`, in name order.
std::vector<std::pair<std::string, FileRecord>> FilesUnder(ServerContext& ctx, const std::string& prefix) {
  std::vector<std::pair<std::string, FileRecord>> out;
  size_t slash = prefix.find('/');
  std::vector<Dataset> datasets;
  if (slash != std::string::npos) {
    if (auto d = ctx.meta->FindDatasetByName(prefix.substr(0, slash))) datasets.push_back(*d);
  } else {
    int64_t total = 0;
    for (int64_t offset = 0;; offset += 1000) {
      auto page = ctx.meta->ListDatasets({offset, 1000}, &total);
      for (Dataset& d : page) {
        if (StartsWith(d.name, prefix)) datasets.push_back(std::move(d));
      }
      if (page.empty() || offset + 1000 >= total) break;
    }
  }
  for (const Dataset& d : datasets) {
    int64_t total = 0;
    for (int64_t offset = 0;; offset += 1000) {
      auto page = ctx.meta->ListFiles(d.id, {offset, 1000}, &total);
      for (FileRecord& f : page) {
        std::string full = d.name + "/" + f.filename;
        if (StartsWith(full, prefix)) out.emplace_back(full, std::move(f));
      }
      if (page.empty() || offset + 1000 >= total) break;
    }
  }
  return out;
}

}  // namespace

void RegisterAplosApi(Router& r, ServerContext& ctx) {
  r.Route("POST", "/api/nca-engine/generate-upload-url", Plane::kControl, [&ctx](Call& c) {
    auto doc = ParseBody(c);
    if (!doc) return;
    BodyCheck check(*doc);
    auto file_name = check.String("file_name", true);
    auto method_type = check.String("method_type", true);
    if (method_type && *method_type != "post") {
      check.Add({{"body", "method_type"}, "Input should be 'post'", "literal_error", JsonQuote(*method_type),
                 "{\"expected\":\"'post'\"}"});
    }
    if (!check.Ok(c)) return;
    auto names = SplitFileName(c, file_name);
    if (!names) return;
    auto ds = ctx.meta->FindDatasetByName(names->first);
    if (!ds) {
      auto created = ctx.meta->CreateDataset(names->first);
      if (created.ok()) ds = *created;
      else ds = ctx.meta->FindDatasetByName(names->first);  // created meanwhile
      if (!ds) return ReplyDetail(c.res, 500, "could not create the prefix: " + created.status().message());
    }
    bool exists = ctx.meta->GetFile(ds->id, names->second).has_value();
    auto job = NewJob(ctx, *ds, names->second, 0, "application/octet-stream", exists, "aplos", 0);
    if (!job.ok()) return ReplyDetail(c.res, 500, job.status().message());
    std::time_t now = std::time(nullptr);
    PostPolicyInput in;
    in.bucket = ctx.opts.bucket;
    in.key = job->staging_key;
    in.max_size = ctx.opts.post_max_size;
    // Over an external store the platform's own long-term credentials sign the form: a session
    // token the store never issued would be refused.
    in.security_token = ctx.s3 != nullptr ? "" : ctx.session_token;
    in.now = now;
    in.expires_seconds = ctx.opts.url_ttl;
    QueryParams fields = PresignPost(ctx.creds, in);
    ReplyJson(c.res, 200, json::Object([&](json::Writer& w) {
                json::KeyString(w, "message", "File upload request created");
                json::Key(w, "s3");
                w.StartObject();
                json::KeyString(w, "bucket_name", ctx.opts.bucket);
                json::KeyString(w, "object_key", job->staging_key);
                w.EndObject();
                json::Key(w, "presigned");
                w.StartObject();
                json::KeyString(w, "method_type", "post");
                json::KeyString(w, "url", ctx.public_url + "/" + ctx.opts.bucket);
                json::Key(w, "fields");
                w.StartObject();
                for (const auto& [k, v] : fields) json::KeyString(w, k, v);
                w.EndObject();
                json::KeyInt(w, "expires_in", ctx.opts.url_ttl);
                json::KeyString(w, "expires_at_utc", Iso8601Utc(now + ctx.opts.url_ttl));
                w.EndObject();
                json::KeyString(w, "file_name", *file_name);
              }));
  });

  r.Route("POST", "/api/nca-engine/generate-download-url", Plane::kControl, [&ctx](Call& c) {
    ReconcileAplosUploads(ctx);
    auto doc = ParseBody(c);
    if (!doc) return;
    BodyCheck check(*doc);
    auto file_name = check.String("file_name", true);
    if (!check.Ok(c)) return;
    auto names = SplitFileName(c, file_name);
    if (!names) return;
    auto ds = ctx.meta->FindDatasetByName(names->first);
    auto file = ds ? ctx.meta->GetFile(ds->id, names->second) : std::nullopt;
    if (!file) return ReplyDetail(c.res, 404, "File not found");
    ReplyJson(c.res, 200, json::Object([&](json::Writer& w) {
                json::Key(w, "presigned");
                w.StartObject();
                json::KeyString(w, "method_type", "get");
                json::KeyString(w, "url", ctx.PresignUrl("GET", file->s3_key, {}));
                json::KeyInt(w, "expires_in", ctx.opts.url_ttl);
                w.EndObject();
                json::KeyString(w, "file_name", *file_name);
              }));
  });

  r.Route("GET", "/api/nca-engine/files", Plane::kControl, [&ctx](Call& c) {
    ReconcileAplosUploads(ctx);
    std::string prefix = c.req.has_param("prefix") ? c.req.get_param_value("prefix") : "";
    auto files = FilesUnder(ctx, prefix);
    ReplyJson(c.res, 200, json::Object([&](json::Writer& w) {
                json::Key(w, "items");
                w.StartArray();
                for (const auto& [full, f] : files) {
                  w.StartObject();
                  json::KeyString(w, "file_name", full);
                  json::KeyInt(w, "size", static_cast<int64_t>(f.size));
                  json::KeyString(w, "last_modified", f.updated_at);
                  w.EndObject();
                }
                w.EndArray();
              }));
  });
}

void ReconcileAplosUploads(ServerContext& ctx) {
  if (ctx.s3 == nullptr) return;
  static std::mutex one_at_a_time;
  std::lock_guard<std::mutex> lock(one_at_a_time);
  const std::string expired_before = Iso8601Utc(std::time(nullptr) - ctx.opts.url_ttl - 60);
  for (const Job& job : ctx.meta->JobsIn(JobStatus::kAwaitingUpload)) {
    if (job.dialect != "aplos") continue;
    auto head = ctx.s3->Head(job.staging_key);
    if (!head.ok()) {
      LOG_WARN("aplos upload %s: %s", job.filename.c_str(), head.status().message().c_str());
      return;  // the store is away: next time
    }
    if (!head->has_value()) {
      if (job.created_at < expired_before) {
        (void)ctx.meta->TransitionJob(job.job_id, JobStatus::kAwaitingUpload, JobStatus::kFailed,
                                      "the upload form expired unused");
      }
      continue;
    }
    auto accepted = ctx.meta->AcceptUpload(job.job_id, (*head)->size);
    if (!accepted.ok()) continue;  // taken in meanwhile, or aborted
    ctx.processor->ProcessNow(job.job_id);
  }
}

}  // namespace ingestfs::server
