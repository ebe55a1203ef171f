// Dialect `ingest`: datasets, files, presigned upload / reupload, complete, abort, job status,
// download presign. Error bodies follow FastAPI: 422 {"detail":[...]} for validation, otherwise
// {"detail":"..."}.
#include <optional>

#include "common/crypto.h"
#include "common/json.h"
#include "common/names.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "server/processor.h"
#include "server/api_common.h"
#include "server/routes.h"

namespace ingestfs::server {

namespace {

void WriteDataset(json::Writer& w, const Dataset& d) {
  w.StartObject();
  json::KeyString(w, "id", d.id);
  json::KeyString(w, "name", d.name);
  json::KeyString(w, "created_at", d.created_at);
  w.EndObject();
}

void WriteFile(json::Writer& w, const FileRecord& f) {
  w.StartObject();
  json::KeyString(w, "filename", f.filename);
  json::KeyInt(w, "size", static_cast<int64_t>(f.size));
  json::KeyString(w, "sha256", f.sha256);
  json::KeyString(w, "etag", f.etag);
  json::KeyString(w, "updated_at", f.updated_at);
  json::KeyInt(w, "version", f.version);
  json::KeyString(w, "s3_key", f.s3_key);
  w.EndObject();
}

std::string JobJson(const Job& j) {
  return json::Object([&](json::Writer& w) {
    json::KeyString(w, "job_id", j.job_id);
    json::KeyString(w, "status", JobStatusName(j.status));
    json::KeyString(w, "message", j.message);
    json::KeyString(w, "dataset_id", j.dataset_id);
    json::KeyString(w, "filename", j.filename);
    json::KeyInt(w, "size", static_cast<int64_t>(j.size));
    json::Key(w, "sha256");
    if (j.sha256.empty()) w.Null();
    else json::String(w, j.sha256);
    if (j.status == JobStatus::kCompleted) json::KeyInt(w, "version", j.version);  // the spec: once completed
  });
}

// PresignedUploadResponse for `job`, with URLs signed now.
std::string PresignAnswer(const ServerContext& ctx, const Job& job) {
  return json::Object([&](json::Writer& w) {
    json::KeyString(w, "job_id", job.job_id);
    json::Key(w, "urls");
    w.StartArray();
    if (job.upload_id.empty()) {
      json::String(w, ctx.PresignUrl("PUT", job.staging_key, {}));
    } else {
      for (uint32_t n = 1; n <= job.num_parts; ++n) {
        json::String(w, ctx.PresignUrl("PUT", job.staging_key,
                                       {{"partNumber", std::to_string(n)}, {"uploadId", job.upload_id}}));
      }
    }
    w.EndArray();
    json::KeyString(w, "s3_key", job.staging_key);
    json::Key(w, "upload_id");
    if (job.upload_id.empty()) w.Null();
    else json::String(w, job.upload_id);
    json::KeyInt(w, "part_size", static_cast<int64_t>(job.upload_id.empty() ? ctx.opts.part_size : job.part_size));
  });
}

// Shared by presign (new file) and reupload: creates the job, the multipart upload if any, and
// answers PresignedUploadResponse.
void StartUpload(Call& call, ServerContext& ctx, const Dataset& ds, const std::string& filename, uint64_t size,
                 const std::string& content_type, bool reupload) {
  bool multipart = size > ctx.opts.multipart_threshold;
  uint64_t part_size = multipart ? PlanPartSize(ctx.opts.part_size, size) : ctx.opts.part_size;
  auto job = NewJob(ctx, ds, filename, size, content_type, reupload, "ingest", multipart ? part_size : 0);
  if (!job.ok()) return ReplyDetail(call.res, 500, job.status().message());
  ReplyJson(call.res, 200, PresignAnswer(ctx, *job));
}

std::optional<Dataset> DatasetOr404(Call& call, ServerContext& ctx, const std::string& id) {
  auto ds = ctx.meta->GetDataset(id);
  if (!ds) ReplyDetail(call.res, 404, "Dataset not found");
  return ds;
}

}  // namespace

void RegisterIngestApi(Router& r, ServerContext& ctx) {
  r.Route("GET", "/api/health", Plane::kHealth, [](Call& c) { ReplyJson(c.res, 200, "{\"status\":\"ok\"}"); });

  RegisterFolderRoutes(r, ctx, "/api/datasets", Plane::kControl, WriteDataset);

  r.Route("GET", "/api/datasets/([^/]+)", Plane::kControl, [&ctx](Call& c) {
    auto ds = DatasetOr404(c, ctx, c.req.matches[1]);
    if (!ds) return;
    rapidjson::StringBuffer buf;
    json::Writer w(buf);
    WriteDataset(w, *ds);
    ReplyJson(c.res, 200, json::Done(buf));
  });

  r.Route("GET", "/api/datasets/([^/]+)/files", Plane::kControl, [&ctx](Call& c) {
    ReconcileAplosUploads(ctx);  // over an external store: aplos uploads that reached it first
    auto ds = DatasetOr404(c, ctx, c.req.matches[1]);
    if (!ds) return;
    auto page = ParsePage(c);
    if (!page) return;
    int64_t total = 0;
    auto items = ctx.meta->ListFiles(ds->id, *page, &total);
    ReplyJson(c.res, 200, ListJson(items, total, WriteFile));
  });

  r.Route("GET", "/api/datasets/([^/]+)/files/download", Plane::kControl, [&ctx](Call& c) {
    ReconcileAplosUploads(ctx);  // over an external store: aplos uploads that reached it first
    auto ds = DatasetOr404(c, ctx, c.req.matches[1]);
    if (!ds) return;
    if (!c.req.has_param("filename")) {
      return ReplyValidation(c.res, {{{"query", "filename"}, "Field required", "missing", "null"}});
    }
    auto file = ctx.meta->GetFile(ds->id, c.req.get_param_value("filename"));
    if (!file) return ReplyDetail(c.res, 404, "File not found");
    ReplyJson(c.res, 200,
              "{\"url\":" + JsonQuote(ctx.PresignUrl("GET", file->s3_key, {})) +
                  ",\"expires_in\":" + std::to_string(ctx.opts.url_ttl) + "}");
  });

  r.Route("POST", "/api/ingest/upload/presigned", Plane::kControl, [&ctx](Call& c) {
    auto doc = ParseBody(c);
    if (!doc) return;
    BodyCheck check(*doc);
    auto dataset_id = check.String("dataset_id", true);
    auto filename = check.String("filename", true);
    check.Name("filename", filename, false);
    auto size = check.NonNegativeInt("file_size", static_cast<int64_t>(kMaxObjectSize));
    auto content_type = check.String("content_type", false);
    if (!check.Ok(c)) return;
    auto ds = DatasetOr404(c, ctx, *dataset_id);
    if (!ds) return;
    if (ctx.meta->GetFile(ds->id, *filename)) {
      return ReplyDetail(c.res, 409, "File '" + *filename + "' already exists in this dataset; use the reupload endpoint");
    }
    StartUpload(c, ctx, *ds, *filename, static_cast<uint64_t>(*size),
                content_type.value_or("application/octet-stream"), false);
  });

  r.Route("POST", "/api/datasets/([^/]+)/reupload/presigned", Plane::kControl, [&ctx](Call& c) {
    auto doc = ParseBody(c);
    if (!doc) return;
    BodyCheck check(*doc);
    auto filename = check.String("filename", true);
    check.Name("filename", filename, false);
    auto size = check.NonNegativeInt("file_size", static_cast<int64_t>(kMaxObjectSize));
    auto content_type = check.String("content_type", false);
    if (!check.Ok(c)) return;
    auto ds = DatasetOr404(c, ctx, c.req.matches[1]);
    if (!ds) return;
    if (!ctx.meta->GetFile(ds->id, *filename)) {
      return ReplyDetail(c.res, 404, "File '" + *filename + "' not found in this dataset; use the upload endpoint");
    }
    StartUpload(c, ctx, *ds, *filename, static_cast<uint64_t>(*size),
                content_type.value_or("application/octet-stream"), true);
  });

  r.Route("POST", "/api/ingest/upload/presigned/([^/]+)/complete", Plane::kControl, [&ctx](Call& c) {
    auto doc = ParseBody(c);
    if (!doc) return;
    const json::Value* parts = json::Find(*doc, "parts");
    json::Value empty(rapidjson::kArrayType);
    if (parts == nullptr || parts->IsNull()) parts = &empty;
    if (!parts->IsArray()) {
      return ReplyValidation(c.res, {{{"body", "parts"}, "Input should be a valid list", "list_type",
                                      json::ToString(*parts)}});
    }
    BodyCheck check(*doc);
    for (rapidjson::SizeType i = 0; i < parts->Size(); ++i) {
      const json::Value& p = (*parts)[i];
      std::string idx = std::to_string(i);
      const json::Value* etag = json::Find(p, "etag");
      const json::Value* num = json::Find(p, "part_number");
      if (!p.IsObject()) {
        check.Add({{"body", "parts", idx}, "Input should be a valid dictionary or object to extract fields from",
                   "model_attributes_type", json::ToString(p)});
        continue;
      }
      if (etag == nullptr) check.Add({{"body", "parts", idx, "etag"}, "Field required", "missing", json::ToString(p)});
      else if (!etag->IsString())
        check.Add({{"body", "parts", idx, "etag"}, "Input should be a valid string", "string_type", json::ToString(*etag)});
      if (num == nullptr)
        check.Add({{"body", "parts", idx, "part_number"}, "Field required", "missing", json::ToString(p)});
      else if (!num->IsInt64())
        check.Add({{"body", "parts", idx, "part_number"}, "Input should be a valid integer", "int_type",
                   json::ToString(*num)});
    }
    if (!check.Ok(c)) return;
    std::string job_id = c.req.matches[1];
    auto job = ctx.meta->GetJob(job_id);
    if (!job) return ReplyDetail(c.res, 404, "Job not found");
    if (job->status == JobStatus::kFailed) return ReplyDetail(c.res, 409, "Job has failed: " + job->message);
    if (job->status != JobStatus::kAwaitingUpload) return ReplyDetail(c.res, 409, "Job already completed");
    if (!CheckParts(c, ctx, *job, *parts)) return;
    auto moved = ctx.meta->AcceptUpload(job_id);
    if (!moved.ok()) {
      if (moved.status().code() == Code::kFailedPrecondition) return ReplyDetail(c.res, 409, "Job already completed");
      return ReplyDetail(c.res, 500, moved.status().message());
    }
    ctx.processor->Enqueue(job_id);
    ReplyJson(c.res, 200, "{\"job_id\":" + JsonQuote(job_id) + ",\"status\":\"pending\",\"message\":\"Upload received\"}");
  });

  // Not in the platform API: fresh URLs for a job still awaiting its upload (the same answer as
  // the presign that created it), so that a client whose URLs expired, or that restarts after a
  // crash, continues the same job instead of sending every part again. Clients fall back to a
  // new presign where a platform lacks it.
  r.Route("GET", "/api/ingest/upload/presigned/([^/]+)", Plane::kControl, [&ctx](Call& c) {
    auto job = ctx.meta->GetJob(c.req.matches[1]);
    if (!job) return ReplyDetail(c.res, 404, "Job not found");
    if (job->status != JobStatus::kAwaitingUpload) {
      return ReplyDetail(c.res, 409, std::string("Job is ") + JobStatusName(job->status) + "; it takes no more uploads");
    }
    ReplyJson(c.res, 200, PresignAnswer(ctx, *job));
  });

  r.Route("DELETE", "/api/ingest/upload/presigned/([^/]+)", Plane::kControl, [&ctx](Call& c) {
    std::string job_id = c.req.matches[1];
    auto job = ctx.meta->GetJob(job_id);
    if (!job) return ReplyDetail(c.res, 404, "Job not found");
    if (job->status == JobStatus::kFailed) {
      c.res.status = 204;
      return;
    }
    auto moved = ctx.meta->TransitionJob(job_id, JobStatus::kAwaitingUpload, JobStatus::kFailed,
                                         "Upload aborted by the client");
    if (!moved.ok()) return ReplyDetail(c.res, 409, "Job already completed; it cannot be aborted");
    DiscardUploadData(ctx, *job);
    c.res.status = 204;
  });

  r.Route("GET", "/api/ingest/jobs/([^/]+)", Plane::kControl, [&ctx](Call& c) {
    auto job = ctx.meta->GetJob(c.req.matches[1]);
    if (!job) return ReplyDetail(c.res, 404, "Job not found");
    ReplyJson(c.res, 200, JobJson(*job));
  });
}

}  // namespace ingestfs::server
