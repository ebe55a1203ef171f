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
#include "server/routes.h"

namespace ingestfs::server {

namespace {

constexpr int64_t kMaxLimit = 1000;
constexpr int64_t kDefaultLimit = 100;

// Reads ?limit=&offset=; replies 422 and returns nullopt when they are bad.
std::optional<Page> ParsePage(Call& call) {
  Page page{0, kDefaultLimit};
  std::vector<ValidationIssue> issues;
  auto read = [&](const char* name, int64_t* out, int64_t min, std::optional<int64_t> max) {
    if (!call.req.has_param(name)) return;
    std::string raw = call.req.get_param_value(name);
    auto v = ParseInt(raw);
    if (!v) {
      if (!raw.empty() && raw[0] == '-' && ParseInt(raw.substr(1))) {
        issues.push_back({{"query", name}, "Input should be greater than or equal to " + std::to_string(min),
                          "greater_than_equal", JsonQuote(raw), "{\"ge\":" + std::to_string(min) + "}"});
      } else {
        issues.push_back({{"query", name}, "Input should be a valid integer, unable to parse string as an integer",
                          "int_parsing", JsonQuote(raw)});
      }
      return;
    }
    if (*v < min) {
      issues.push_back({{"query", name}, "Input should be greater than or equal to " + std::to_string(min),
                        "greater_than_equal", JsonQuote(raw), "{\"ge\":" + std::to_string(min) + "}"});
      return;
    }
    if (max && *v > *max) {
      issues.push_back({{"query", name}, "Input should be less than or equal to " + std::to_string(*max),
                        "less_than_equal", JsonQuote(raw), "{\"le\":" + std::to_string(*max) + "}"});
      return;
    }
    *out = *v;
  };
  read("limit", &page.limit, 1, kMaxLimit);
  read("offset", &page.offset, 0, std::nullopt);
  if (!issues.empty()) {
    ReplyValidation(call.res, issues);
    return std::nullopt;
  }
  return page;
}

// Parses the JSON body as an object; replies 422 and returns nullopt otherwise.
std::optional<json::Document> ParseBody(Call& call) {
  auto doc = json::Parse(call.req.body, "request body");
  if (!doc.ok()) {
    ReplyValidation(call.res, {{{"body", "0"}, "JSON decode error", "json_invalid", "{}",
                                "{\"error\":" + JsonQuote(doc.status().message()) + "}"}});
    return std::nullopt;
  }
  if (!doc->IsObject()) {
    ReplyValidation(call.res, {{{"body"}, "Input should be a valid dictionary or object to extract fields from",
                                "model_attributes_type", json::ToString(*doc)}});
    return std::nullopt;
  }
  return std::move(doc).value();
}

// Field checks that collect FastAPI-style issues.
class BodyCheck {
 public:
  explicit BodyCheck(const json::Document& doc) : doc_(doc) {}

  std::optional<std::string> String(const char* field, bool required) {
    const json::Value* v = json::Find(doc_, field);
    if (v == nullptr || (!required && v->IsNull())) {
      if (required) issues_.push_back({{"body", field}, "Field required", "missing", json::ToString(doc_)});
      return std::nullopt;
    }
    if (!v->IsString()) {
      issues_.push_back({{"body", field}, "Input should be a valid string", "string_type", json::ToString(*v)});
      return std::nullopt;
    }
    return std::string(v->GetString(), v->GetStringLength());
  }

  std::optional<int64_t> NonNegativeInt(const char* field, int64_t max) {
    const json::Value* v = json::Find(doc_, field);
    if (v == nullptr) {
      issues_.push_back({{"body", field}, "Field required", "missing", json::ToString(doc_)});
      return std::nullopt;
    }
    if (!v->IsInt64()) {
      issues_.push_back({{"body", field}, "Input should be a valid integer", "int_type", json::ToString(*v)});
      return std::nullopt;
    }
    int64_t x = v->GetInt64();
    if (x < 0) {
      issues_.push_back({{"body", field}, "Input should be greater than or equal to 0", "greater_than_equal",
                         json::ToString(*v), "{\"ge\":0}"});
      return std::nullopt;
    }
    if (x > max) {
      issues_.push_back({{"body", field}, "Input should be less than or equal to " + std::to_string(max),
                         "less_than_equal", json::ToString(*v), "{\"le\":" + std::to_string(max) + "}"});
      return std::nullopt;
    }
    return x;
  }

  void Name(const char* field, const std::optional<std::string>& value, bool dataset) {
    if (!value) return;
    Status st = dataset ? ValidateDatasetName(*value) : ValidateFileName(*value);
    if (!st.ok()) {
      issues_.push_back({{"body", field}, "Value error, " + st.message(), "value_error", JsonQuote(*value),
                         "{\"error\":{}}"});
    }
  }

  void Add(ValidationIssue issue) { issues_.push_back(std::move(issue)); }

  // Replies 422 and returns false when any check failed.
  bool Ok(Call& call) {
    if (issues_.empty()) return true;
    ReplyValidation(call.res, issues_);
    return false;
  }

 private:
  const json::Document& doc_;
  std::vector<ValidationIssue> issues_;
};

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
  });
}

// Chooses single PUT or multipart for `size` (platform-api.md: part size at least 5 MiB, at
// most 5 GiB, at most 10,000 parts).
void PlanParts(const ServerOptions& opts, uint64_t size, Job* job) {
  if (size <= opts.multipart_threshold) {
    job->part_size = opts.part_size;
    job->num_parts = 1;
    return;
  }
  uint64_t ps = opts.part_size;
  while ((size + ps - 1) / ps > kMaxParts && ps < kMaxPartSize) ps = std::min(ps * 2, kMaxPartSize);
  job->part_size = ps;
  job->num_parts = static_cast<uint32_t>((size + ps - 1) / ps);
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
    json::KeyInt(w, "part_size", static_cast<int64_t>(job.part_size));
  });
}

// Shared by presign (new file) and reupload: creates the job, the multipart upload if any, and
// answers PresignedUploadResponse.
void StartUpload(Call& call, ServerContext& ctx, const Dataset& ds, const std::string& filename, uint64_t size,
                 const std::string& content_type, bool reupload) {
  Job job;
  job.job_id = RandomUuid();
  job.dataset_id = ds.id;
  job.filename = filename;
  job.content_type = content_type;
  job.size = size;
  job.status = JobStatus::kAwaitingUpload;
  job.message = "Waiting for the upload";
  job.staging_key = "staging/" + job.job_id + "/" + filename;
  job.reupload = reupload;
  job.created_at = job.updated_at = Iso8601Utc(std::time(nullptr));
  PlanParts(ctx.opts, size, &job);
  bool multipart = size > ctx.opts.multipart_threshold;
  if (multipart) {
    job.upload_id = RandomHex(16);
    Status st = ctx.objects->CreateUploadDir(job.upload_id);
    if (st.ok()) {
      st = ctx.meta->PutUpload({job.upload_id, ctx.opts.bucket, job.staging_key, job.created_at});
    }
    if (!st.ok()) return ReplyDetail(call.res, 500, "could not start the multipart upload: " + st.message());
  }
  Status st = ctx.meta->PutJob(job);
  if (!st.ok()) return ReplyDetail(call.res, 500, "could not record the job: " + st.message());
  ReplyJson(call.res, 200, PresignAnswer(ctx, job));
}

std::optional<Dataset> DatasetOr404(Call& call, ServerContext& ctx, const std::string& id) {
  auto ds = ctx.meta->GetDataset(id);
  if (!ds) ReplyDetail(call.res, 404, "Dataset not found");
  return ds;
}

// The `complete` checks: every planned part present, in order, with the ETag the store holds
// and the planned size. Replies 400 and returns false on the first problem.
bool CheckParts(Call& call, ServerContext& ctx, const Job& job, const json::Value& parts) {
  auto invalid = [&](const std::string& why) {
    ReplyDetail(call.res, 400, "InvalidPart: " + why);
    return false;
  };
  if (job.upload_id.empty()) {
    auto obj = ctx.objects->StatObject(ctx.opts.bucket, job.staging_key);
    if (!obj) return invalid("the file has not been uploaded to its URL");
    if (obj->size != job.size) {
      return invalid("the uploaded object has " + std::to_string(obj->size) + " bytes, the request said " +
                     std::to_string(job.size));
    }
    if (parts.Size() > 1) return invalid("a single-part upload takes at most one part");
    if (parts.Size() == 1) {
      auto etag = json::GetString(parts[0], "etag");
      if (!etag.ok() || NormalizeEtag(*etag) != NormalizeEtag(obj->etag)) {
        return invalid("part 1 ETag does not match the stored object");
      }
    }
    return true;
  }
  for (uint32_t n = 1; n <= job.num_parts; ++n) {
    if (n > parts.Size()) return invalid("part " + std::to_string(n) + " is missing from the list");
    const json::Value& p = parts[n - 1];
    auto num = json::GetInt(p, "part_number");
    if (!num.ok() || *num != static_cast<int64_t>(n)) {
      return invalid("parts must be listed in order 1.." + std::to_string(job.num_parts) + "; entry " +
                     std::to_string(n) + " is not part " + std::to_string(n));
    }
    auto stored = ctx.objects->StatPart(job.upload_id, static_cast<int>(n));
    if (!stored) return invalid("part " + std::to_string(n) + " has not been uploaded");
    auto etag = json::GetString(p, "etag");
    if (!etag.ok() || NormalizeEtag(*etag) != NormalizeEtag(stored->etag)) {
      return invalid("part " + std::to_string(n) + " ETag does not match what the store holds");
    }
    uint64_t want = n < job.num_parts ? job.part_size : job.size - job.part_size * (job.num_parts - 1);
    if (stored->size != want) {
      if (n < job.num_parts && stored->size < kMinPartSize) {
        ReplyDetail(call.res, 400, "EntityTooSmall: part " + std::to_string(n) + " has " +
                                       std::to_string(stored->size) + " bytes; parts other than the last must have " +
                                       std::to_string(want));
        return false;
      }
      return invalid("part " + std::to_string(n) + " has " + std::to_string(stored->size) + " bytes, expected " +
                     std::to_string(want));
    }
  }
  if (parts.Size() > job.num_parts) return invalid("the list has more parts than the upload");
  return true;
}

void DiscardUploadData(ServerContext& ctx, const Job& job) {
  if (job.upload_id.empty()) {
    (void)ctx.objects->DeleteObject(ctx.opts.bucket, job.staging_key);
  } else {
    (void)ctx.objects->DeleteUploadDir(job.upload_id);
    (void)ctx.meta->DeleteUpload(job.upload_id);
  }
}

}  // namespace

void RegisterIngestApi(Router& r, ServerContext& ctx) {
  r.Route("GET", "/api/health", Plane::kHealth, [](Call& c) { ReplyJson(c.res, 200, "{\"status\":\"ok\"}"); });

  r.Route("GET", "/api/datasets", Plane::kControl, [&ctx](Call& c) {
    auto page = ParsePage(c);
    if (!page) return;
    int64_t total = 0;
    auto items = ctx.meta->ListDatasets(*page, &total);
    ReplyJson(c.res, 200, ListJson(items, total, WriteDataset));
  });

  r.Route("POST", "/api/datasets", Plane::kControl, [&ctx](Call& c) {
    auto doc = ParseBody(c);
    if (!doc) return;
    BodyCheck check(*doc);
    auto name = check.String("name", true);
    check.Name("name", name, true);
    if (!check.Ok(c)) return;
    auto ds = ctx.meta->CreateDataset(*name);
    if (!ds.ok()) {
      if (ds.status().code() == Code::kAlreadyExists) return ReplyDetail(c.res, 409, ds.status().message());
      return ReplyDetail(c.res, 500, ds.status().message());
    }
    rapidjson::StringBuffer buf;
    json::Writer w(buf);
    WriteDataset(w, *ds);
    ReplyJson(c.res, 201, json::Done(buf));
  });

  r.Route("GET", "/api/datasets/([^/]+)", Plane::kControl, [&ctx](Call& c) {
    auto ds = DatasetOr404(c, ctx, c.req.matches[1]);
    if (!ds) return;
    rapidjson::StringBuffer buf;
    json::Writer w(buf);
    WriteDataset(w, *ds);
    ReplyJson(c.res, 200, json::Done(buf));
  });

  r.Route("GET", "/api/datasets/([^/]+)/files", Plane::kControl, [&ctx](Call& c) {
    auto ds = DatasetOr404(c, ctx, c.req.matches[1]);
    if (!ds) return;
    auto page = ParsePage(c);
    if (!page) return;
    int64_t total = 0;
    auto items = ctx.meta->ListFiles(ds->id, *page, &total);
    ReplyJson(c.res, 200, ListJson(items, total, WriteFile));
  });

  r.Route("GET", "/api/datasets/([^/]+)/files/download", Plane::kControl, [&ctx](Call& c) {
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
    auto moved = ctx.meta->TransitionJob(job_id, JobStatus::kAwaitingUpload, JobStatus::kPending, "Upload received");
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
