// Dialect `sbg` (platform-api.md, "Dialect sbg"): projects, files, and the multipart upload
// where the client asks for each part's URL, sends exactly what it is told, reports the response
// headers it is told to report, then completes. Auth: X-SBG-Auth-Token.
//
// One store behind every dialect: a project is a dataset of the same name (its id is
// "ingestfs/<dataset id>"), an sbg upload is a job (its upload_id is the job id) whose parts go
// to an S3 multipart upload, and `complete` publishes the file before it answers.
//
// Where the contract is silent, as Seven Bridges does: `GET /files/{id}/download_info` answers
// {"url"} for reading a file; a file id is opaque (hex of "<dataset id>/<name>"); `complete` of
// an upload already completed answers the file again (a client whose answer was lost retries).
#include <ctime>
#include <optional>

#include "common/crypto.h"
#include "common/json.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "server/api_common.h"
#include "server/processor.h"
#include "server/routes.h"

namespace ingestfs::server {

namespace {

constexpr char kOwner[] = "ingestfs/";

std::string ProjectId(const Dataset& d) { return kOwner + d.id; }

std::optional<Dataset> FindProject(ServerContext& ctx, const std::string& project_id) {
  if (!StartsWith(project_id, kOwner)) return std::nullopt;
  return ctx.meta->GetDataset(project_id.substr(sizeof(kOwner) - 1));
}

void WriteProject(json::Writer& w, const Dataset& d) {
  w.StartObject();
  json::KeyString(w, "id", ProjectId(d));
  json::KeyString(w, "name", d.name);
  w.EndObject();
}

std::string FileId(const FileRecord& f) { return HexEncode(f.dataset_id + "/" + f.filename); }

void WriteFile(json::Writer& w, const FileRecord& f) {
  w.StartObject();
  json::KeyString(w, "id", FileId(f));
  json::KeyString(w, "name", f.filename);
  json::KeyInt(w, "size", static_cast<int64_t>(f.size));
  json::KeyString(w, "project", kOwner + f.dataset_id);
  json::KeyString(w, "modified_on", f.updated_at);
  w.EndObject();
}

std::string FileJson(const FileRecord& f) {
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  WriteFile(w, f);
  return json::Done(buf);
}

// The sbg upload `id`, still taking parts; replies 404/409 otherwise.
std::optional<Job> OpenUpload(Call& c, ServerContext& ctx, const std::string& id) {
  auto job = ctx.meta->GetJob(id);
  if (!job || job->dialect != "sbg") {
    ReplyDetail(c.res, 404, "Upload not found");
    return std::nullopt;
  }
  if (job->status != JobStatus::kAwaitingUpload) {
    ReplyDetail(c.res, 409, std::string("Upload is ") + JobStatusName(job->status) + "; it takes no more parts");
    return std::nullopt;
  }
  return job;
}

std::optional<uint32_t> PartNumber(Call& c, const Job& job, const std::string& text, std::vector<std::string> loc) {
  auto n = ParseInt(text);
  if (!n || *n < 1 || *n > static_cast<int64_t>(job.num_parts)) {
    ReplyValidation(c.res, {{std::move(loc), "Input should be a part number from 1 to " + std::to_string(job.num_parts),
                             "value_error", JsonQuote(text)}});
    return std::nullopt;
  }
  return static_cast<uint32_t>(*n);
}

std::string PartAnswer(const ServerContext& ctx, const Job& job, uint32_t n) {
  std::vector<std::pair<std::string, std::string>> signed_headers;
  for (const auto& [name, value] : ctx.opts.sbg_part_headers) signed_headers.emplace_back(ToLower(name), value);
  std::string url = ctx.PresignUrl("PUT", job.staging_key,
                                   {{"partNumber", std::to_string(n)}, {"uploadId", job.upload_id}}, signed_headers);
  return json::Object([&](json::Writer& w) {
    json::KeyString(w, "method", "PUT");
    json::KeyString(w, "url", url);
    json::KeyString(w, "expires", Iso8601Utc(std::time(nullptr) + ctx.opts.url_ttl));
    json::Key(w, "headers");
    w.StartObject();
    for (const auto& [name, value] : ctx.opts.sbg_part_headers) json::KeyString(w, name, value);
    w.EndObject();
    json::Key(w, "success_codes");
    w.StartArray();
    w.Int(ctx.opts.sbg_part_status);
    w.EndArray();
    json::Key(w, "report");
    w.StartObject();
    json::Key(w, "headers");
    w.StartArray();
    json::String(w, "ETag");
    w.EndArray();
    json::Key(w, "body");
    w.StartObject();
    w.EndObject();
    w.EndObject();
  });
}

}  // namespace

void RegisterSbgApi(Router& r, ServerContext& ctx) {
  RegisterFolderRoutes(r, ctx, "/api/projects", Plane::kSbg, WriteProject);

  r.Route("GET", "/api/files", Plane::kSbg, [&ctx](Call& c) {
    ReconcileAplosUploads(ctx);  // over an external store: aplos uploads that reached it first
    if (!c.req.has_param("project")) {
      return ReplyValidation(c.res, {{{"query", "project"}, "Field required", "missing", "null"}});
    }
    auto ds = FindProject(ctx, c.req.get_param_value("project"));
    if (!ds) return ReplyDetail(c.res, 404, "Project not found");
    auto page = ParsePage(c);
    if (!page) return;
    int64_t total = 0;
    auto items = ctx.meta->ListFiles(ds->id, *page, &total);
    ReplyJson(c.res, 200, ListJson(items, total, WriteFile));
  });

  r.Route("GET", "/api/files/([^/]+)/download_info", Plane::kSbg, [&ctx](Call& c) {
    ReconcileAplosUploads(ctx);  // over an external store: aplos uploads that reached it first
    auto raw = HexDecode(c.req.matches[1].str());
    size_t slash = raw.ok() ? raw->find('/') : std::string::npos;
    std::optional<FileRecord> file;
    if (slash != std::string::npos) file = ctx.meta->GetFile(raw->substr(0, slash), raw->substr(slash + 1));
    if (!file) return ReplyDetail(c.res, 404, "File not found");
    ReplyJson(c.res, 200, "{\"url\":" + JsonQuote(ctx.PresignUrl("GET", file->s3_key, {})) + "}");
  });

  r.Route("POST", "/api/upload/multipart", Plane::kSbg, [&ctx](Call& c) {
    auto doc = ParseBody(c);
    if (!doc) return;
    BodyCheck check(*doc);
    auto project = check.String("project", true);
    auto name = check.String("name", true);
    check.Name("name", name, false);
    auto size = check.NonNegativeInt("size", static_cast<int64_t>(kMaxObjectSize));
    auto wanted = check.NonNegativeInt("part_size", static_cast<int64_t>(kMaxPartSize), false);
    if (!check.Ok(c)) return;
    auto ds = FindProject(ctx, *project);
    if (!ds) return ReplyDetail(c.res, 404, "Project not found");
    bool overwrite = c.req.has_param("overwrite") && c.req.get_param_value("overwrite") == "true";
    bool exists = ctx.meta->GetFile(ds->id, *name).has_value();
    if (exists && !overwrite) {
      return ReplyDetail(c.res, 409, "File '" + *name + "' already exists in this project; use overwrite=true");
    }
    uint64_t part_size = PlanPartSize(ctx.opts.sbg_part_size > 0 ? ctx.opts.sbg_part_size
                                                                  : static_cast<uint64_t>(wanted.value_or(0)),
                                      static_cast<uint64_t>(*size));
    auto job = NewJob(ctx, *ds, *name, static_cast<uint64_t>(*size), "application/octet-stream", exists, "sbg", part_size);
    if (!job.ok()) return ReplyDetail(c.res, 500, job.status().message());
    ReplyJson(c.res, 200, json::Object([&](json::Writer& w) {
                json::KeyString(w, "upload_id", job->job_id);
                json::KeyString(w, "project", *project);
                json::KeyString(w, "name", job->filename);
                json::KeyInt(w, "size", static_cast<int64_t>(job->size));
                json::KeyInt(w, "part_size", static_cast<int64_t>(job->part_size));
              }));
  });

  r.Route("GET", "/api/upload/multipart/([^/]+)/part/([^/]+)", Plane::kSbg, [&ctx](Call& c) {
    auto job = OpenUpload(c, ctx, c.req.matches[1]);
    if (!job) return;
    auto n = PartNumber(c, *job, c.req.matches[2], {"path", "part_number"});
    if (!n) return;
    ReplyJson(c.res, 200, PartAnswer(ctx, *job, *n));
  });

  r.Route("POST", "/api/upload/multipart/([^/]+)/part", Plane::kSbg, [&ctx](Call& c) {
    auto doc = ParseBody(c);
    if (!doc) return;
    auto job = OpenUpload(c, ctx, c.req.matches[1]);
    if (!job) return;
    const json::Value* num = json::Find(*doc, "part_number");
    if (num == nullptr || !num->IsInt64()) {
      return ReplyValidation(c.res, {{{"body", "part_number"}, "Input should be a valid integer", "int_type",
                                      num == nullptr ? "null" : json::ToString(*num)}});
    }
    auto n = PartNumber(c, *job, std::to_string(num->GetInt64()), {"body", "part_number"});
    if (!n) return;
    const json::Value* response = json::Find(*doc, "response");
    const json::Value* headers = response != nullptr ? json::Find(*response, "headers") : nullptr;
    std::optional<std::string> etag;
    if (headers != nullptr && headers->IsObject()) {
      for (const auto& m : headers->GetObject()) {
        if (ToLower(m.name.GetString()) == "etag" && m.value.IsString()) etag = m.value.GetString();
      }
    }
    if (!etag) {
      return ReplyValidation(c.res, {{{"body", "response", "headers", "ETag"}, "Field required", "missing",
                                      headers == nullptr ? "null" : json::ToString(*headers)}});
    }
    auto staged = StagedParts(ctx, *job);
    if (!staged.ok()) return ReplyDetail(c.res, 503, "the object store did not answer: " + staged.status().message());
    const std::optional<BlobInfo>& stored = (*staged)[*n - 1];
    if (!stored) return ReplyDetail(c.res, 400, "Part " + std::to_string(*n) + " has not been uploaded");
    if (NormalizeEtag(*etag) != NormalizeEtag(stored->etag)) {
      return ReplyDetail(c.res, 400, "Part " + std::to_string(*n) + ": the reported ETag does not match the stored part");
    }
    Status st = ctx.meta->ReportPart(job->job_id, *n, *etag);
    if (!st.ok()) return ReplyDetail(c.res, st.code() == Code::kFailedPrecondition ? 409 : 500, st.message());
    c.res.status = 204;
  });

  r.Route("POST", "/api/upload/multipart/([^/]+)/complete", Plane::kSbg, [&ctx](Call& c) {
    std::string id = c.req.matches[1];
    auto job = ctx.meta->GetJob(id);
    if (!job || job->dialect != "sbg") return ReplyDetail(c.res, 404, "Upload not found");
    auto published = [&]() -> std::optional<FileRecord> {
      auto j = ctx.meta->GetJob(id);
      if (!j || j->status != JobStatus::kCompleted) return std::nullopt;
      return ctx.meta->GetFile(j->dataset_id, j->filename);
    };
    if (job->status == JobStatus::kCompleted) {  // a retried complete whose answer was lost
      if (auto f = published()) return ReplyJson(c.res, 200, FileJson(*f));
    }
    if (job->status != JobStatus::kAwaitingUpload) {
      return ReplyDetail(c.res, 409, std::string("Upload is ") + JobStatusName(job->status) + ": " + job->message);
    }
    for (uint32_t n = 1; n <= job->num_parts; ++n) {
      if (job->reported.count(n) == 0) {
        return ReplyDetail(c.res, 400, "InvalidPart: part " + std::to_string(n) + " has not been reported");
      }
    }
    json::Document parts(rapidjson::kArrayType);
    for (const auto& [n, etag] : job->reported) {
      json::Value p(rapidjson::kObjectType);
      p.AddMember("etag", json::Value(etag.c_str(), parts.GetAllocator()), parts.GetAllocator());
      p.AddMember("part_number", n, parts.GetAllocator());
      parts.PushBack(p, parts.GetAllocator());
    }
    if (!CheckParts(c, ctx, *job, parts)) return;
    auto moved = ctx.meta->AcceptUpload(id);
    if (!moved.ok()) return ReplyDetail(c.res, 409, "Upload already completed");
    ctx.processor->ProcessNow(id);
    if (auto f = published()) return ReplyJson(c.res, 200, FileJson(*f));
    auto after = ctx.meta->GetJob(id);
    ReplyDetail(c.res, 500, "the upload could not be stored: " + (after ? after->message : std::string("job lost")));
  });

  r.Route("DELETE", "/api/upload/multipart/([^/]+)", Plane::kSbg, [&ctx](Call& c) {
    std::string id = c.req.matches[1];
    auto job = ctx.meta->GetJob(id);
    if (!job || job->dialect != "sbg") return ReplyDetail(c.res, 404, "Upload not found");
    if (job->status == JobStatus::kFailed) {
      c.res.status = 204;
      return;
    }
    auto moved = ctx.meta->TransitionJob(id, JobStatus::kAwaitingUpload, JobStatus::kFailed, "Upload aborted by the client");
    if (!moved.ok()) return ReplyDetail(c.res, 409, "Upload already completed; it cannot be aborted");
    DiscardUploadData(ctx, *job);
    c.res.status = 204;
  });
}

}  // namespace ingestfs::server
