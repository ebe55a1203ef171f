#include "server/api_common.h"

#include <ctime>

#include "common/crypto.h"
#include "common/log.h"
#include "common/names.h"
#include "common/strings.h"
#include "common/time_util.h"

namespace ingestfs::server {

namespace {
constexpr int64_t kMaxLimit = 1000;
constexpr int64_t kDefaultLimit = 100;

}  // namespace

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


std::optional<std::string> BodyCheck::String(const char* field, bool required) {
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

std::optional<int64_t> BodyCheck::NonNegativeInt(const char* field, int64_t max, bool required) {
    const json::Value* v = json::Find(doc_, field);
    if (v == nullptr || (!required && v->IsNull())) {
      if (required) issues_.push_back({{"body", field}, "Field required", "missing", json::ToString(doc_)});
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

void BodyCheck::Name(const char* field, const std::optional<std::string>& value, bool dataset) {
    if (!value) return;
    Status st = dataset ? ValidateDatasetName(*value) : ValidateFileName(*value);
    if (!st.ok()) {
      issues_.push_back({{"body", field}, "Value error, " + st.message(), "value_error", JsonQuote(*value),
                         "{\"error\":{}}"});
    }
  }


bool BodyCheck::Ok(Call& call) {
    if (issues_.empty()) return true;
    ReplyValidation(call.res, issues_);
    return false;
  }


void RegisterFolderRoutes(Router& r, ServerContext& ctx, const std::string& path, Plane plane,
                          void (*write)(json::Writer&, const Dataset&)) {
  r.Route("GET", path, plane, [&ctx, write](Call& c) {
    auto page = ParsePage(c);
    if (!page) return;
    int64_t total = 0;
    auto items = ctx.meta->ListDatasets(*page, &total);
    ReplyJson(c.res, 200, ListJson(items, total, write));
  });
  r.Route("POST", path, plane, [&ctx, write](Call& c) {
    auto doc = ParseBody(c);
    if (!doc) return;
    BodyCheck check(*doc);
    auto name = check.String("name", true);
    check.Name("name", name, true);
    if (!check.Ok(c)) return;
    auto ds = ctx.meta->CreateDataset(*name);
    if (!ds.ok()) {
      return ReplyDetail(c.res, ds.status().code() == Code::kAlreadyExists ? 409 : 500, ds.status().message());
    }
    ReplyJson(c.res, 201, json::Build([&](json::Writer& w) { write(w, *ds); }));
  });
}

uint64_t PlanPartSize(uint64_t wanted, uint64_t size) {
  uint64_t ps = std::clamp(wanted, kMinPartSize, kMaxPartSize);
  while ((size + ps - 1) / ps > kMaxParts && ps < kMaxPartSize) ps = std::min(ps * 2, kMaxPartSize);
  return ps;
}

StatusOr<Job> NewJob(ServerContext& ctx, const Dataset& ds, const std::string& filename, uint64_t size,
                     const std::string& content_type, bool reupload, const std::string& dialect,
                     uint64_t part_size) {
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
  job.dialect = dialect;
  job.created_at = job.updated_at = Iso8601Utc(std::time(nullptr));
  job.part_size = part_size > 0 ? part_size : size;
  job.num_parts = part_size > 0 ? static_cast<uint32_t>(std::max<uint64_t>(1, (size + part_size - 1) / part_size)) : 1;
  if (part_size > 0) {
    Status st;
    if (ctx.s3 != nullptr) {  // the store names the upload
      auto id = ctx.s3->CreateMultipart(job.staging_key);
      if (!id.ok()) return Status(id.status().code(), "could not start the multipart upload: " + id.status().message());
      job.upload_id = *id;
    } else {
      job.upload_id = RandomHex(16);
      st = ctx.objects->CreateUploadDir(job.upload_id);
    }
    if (st.ok()) st = ctx.meta->PutUpload({job.upload_id, ctx.opts.bucket, job.staging_key, job.created_at});
    if (!st.ok()) return Status(st.code(), "could not start the multipart upload: " + st.message());
  }
  Status st = ctx.meta->PutJob(job);
  if (!st.ok()) return Status(st.code(), "could not record the job: " + st.message());
  return job;
}

std::optional<Job> JobOfStagingKey(const ServerContext& ctx, const std::string& key) {
  if (!StartsWith(key, "staging/")) return std::nullopt;
  size_t slash = key.find('/', 8);
  if (slash == std::string::npos) return std::nullopt;
  auto job = ctx.meta->GetJob(key.substr(8, slash - 8));
  if (!job || job->staging_key != key) return std::nullopt;
  return job;
}

// The `complete` checks: every planned part present, in order, with the ETag the store holds
// and the planned size. Replies 400 and returns false on the first problem.
bool CheckParts(Call& call, ServerContext& ctx, const Job& job, const json::Value& parts) {
  auto invalid = [&](const std::string& why) {
    ReplyDetail(call.res, 400, "InvalidPart: " + why);
    return false;
  };
  auto unavailable = [&](const Status& st) {
    ReplyDetail(call.res, 503, "the object store did not answer: " + st.message());
    return false;
  };
  if (job.upload_id.empty()) {
    auto staged = StagedObject(ctx, job);
    if (!staged.ok()) return unavailable(staged.status());
    const std::optional<BlobInfo>& obj = *staged;
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
  auto staged_parts = StagedParts(ctx, job);
  if (!staged_parts.ok()) return unavailable(staged_parts.status());
  for (uint32_t n = 1; n <= job.num_parts; ++n) {
    if (n > parts.Size()) return invalid("part " + std::to_string(n) + " is missing from the list");
    const json::Value& p = parts[n - 1];
    auto num = json::GetInt(p, "part_number");
    if (!num.ok() || *num != static_cast<int64_t>(n)) {
      return invalid("parts must be listed in order 1.." + std::to_string(job.num_parts) + "; entry " +
                     std::to_string(n) + " is not part " + std::to_string(n));
    }
    const std::optional<BlobInfo>& stored = (*staged_parts)[n - 1];
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

StatusOr<std::optional<BlobInfo>> StagedObject(const ServerContext& ctx, const Job& job) {
  if (ctx.s3 == nullptr) return ctx.objects->StatObject(ctx.opts.bucket, job.staging_key);
  ASSIGN_OR_RETURN(std::optional<S3Object> head, ctx.s3->Head(job.staging_key));
  if (!head) return std::optional<BlobInfo>();
  return std::optional<BlobInfo>(BlobInfo{"", head->size, head->etag});
}

StatusOr<std::vector<std::optional<BlobInfo>>> StagedParts(const ServerContext& ctx, const Job& job) {
  std::vector<std::optional<BlobInfo>> out(job.num_parts);
  if (ctx.s3 == nullptr) {
    for (uint32_t n = 1; n <= job.num_parts; ++n) out[n - 1] = ctx.objects->StatPart(job.upload_id, static_cast<int>(n));
    return out;
  }
  auto listed = ctx.s3->ListParts(job.staging_key, job.upload_id);
  if (!listed.ok()) {
    if (listed.status().code() == Code::kNotFound) return out;  // no such upload (aborted): no parts
    return listed.status();
  }
  for (const S3Part& p : *listed) {
    if (p.number >= 1 && static_cast<uint32_t>(p.number) <= job.num_parts) out[p.number - 1] = BlobInfo{"", p.size, p.etag};
  }
  return out;
}

void DiscardUploadData(ServerContext& ctx, const Job& job) {
  if (ctx.s3 != nullptr) {
    Status st = job.upload_id.empty() ? ctx.s3->Delete(job.staging_key) : ctx.s3->AbortMultipart(job.staging_key, job.upload_id);
    if (!st.ok()) LOG_WARN("job %s: %s", job.job_id.c_str(), st.message().c_str());
    if (!job.upload_id.empty()) (void)ctx.meta->DeleteUpload(job.upload_id);
    return;
  }
  if (job.upload_id.empty()) {
    (void)ctx.objects->DeleteObject(ctx.opts.bucket, job.staging_key);
  } else {
    (void)ctx.objects->DeleteUploadDir(job.upload_id);
    (void)ctx.meta->DeleteUpload(job.upload_id);
  }
}

}  // namespace ingestfs::server
