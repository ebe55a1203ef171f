#include "upload/ingest_dialect.h"

#include "common/json.h"
#include "common/names.h"
#include "common/strings.h"
#include "upload/errors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_util.h"
#include "common/log.h"
#include "common/time_util.h"

namespace ingestfs::upload {

namespace {
constexpr uint64_t kMinPart = 5ULL << 20;
constexpr uint64_t kMaxPart = 5ULL << 30;
constexpr uint64_t kMaxParts = 10000;

Status Bad(const std::string& what, const Status& st) { return ApiClient::Malformed(what, st); }
}  // namespace

IngestDialect::IngestDialect(std::string api, std::string token, ClientPool& pool, ApiLimits limits)
    : api_(std::move(api), "Authorization: Bearer " + token, pool, limits), datasets_(api_, "/datasets", "dataset") {}

Status IngestDialect::ForEachFile(const std::string& dataset_id, const std::function<void(RemoteFile&&)>& each) {
  std::string step = "listing the files of dataset " + dataset_id;
  RETURN_IF_ERROR(api_.ForEachItem("/datasets/" + UriEncode(dataset_id, false) + "/files", step, [&](const json::Value& item) {
    auto name = json::GetString(item, "filename", 4096);
    auto size = json::GetInt(item, "size");
    if (!name.ok() || !size.ok()) return;
    auto f = ApiClient::ListedFile(step, *name, *size, json::StringOr(item, "updated_at"));
    if (!f) return;
    f->sha256 = json::StringOr(item, "sha256");
    f->tag = f->sha256;
    f->version = json::IntOr(item, "version");
    each(std::move(*f));
  }));
  return Status::Ok();
}

StatusOr<uint64_t> IngestDialect::Download(const std::string& dataset_id, const std::string& name, uint64_t size,
                                           const std::string& dest) {
  std::string step = "download of " + name;
  ASSIGN_OR_RETURN(json::Document doc, api_.CallJson("GET", "/datasets/" + UriEncode(dataset_id, false) +
                                                                "/files/download?filename=" + UriEncode(name, false),
                                                     "", step));
  auto url = json::GetString(doc, "url", 16384);
  if (!url.ok()) return Bad(step, url.status());
  return api_.DownloadTo(*url, dest, size, step);
}

StatusOr<BeginResult> IngestDialect::ParsePresign(const std::string& body, uint64_t file_size, bool overwrite) {
  auto doc = json::Parse(body, "the presign answer");
  if (!doc.ok()) return doc.status();
  if (!doc->IsObject()) return Status(Code::kInvalidArgument, "the presign answer is not an object");
  BeginResult r;
  ASSIGN_OR_RETURN(r.session.job_id, json::GetString(*doc, "job_id", 256));
  if (r.session.job_id.empty()) return Status(Code::kInvalidArgument, "job_id is empty");
  ASSIGN_OR_RETURN(auto upload_id, json::GetOptionalString(*doc, "upload_id", 1024));
  r.session.upload_id = upload_id.value_or("");
  ASSIGN_OR_RETURN(int64_t part_size, json::GetInt(*doc, "part_size"));
  const json::Value* urls = json::Find(*doc, "urls");
  if (urls == nullptr || !urls->IsArray() || urls->Size() == 0) {
    return Status(Code::kInvalidArgument, "urls is missing or empty");
  }
  if (urls->Size() > kMaxParts) return Status(Code::kInvalidArgument, "more than 10,000 part URLs");
  for (const auto& u : urls->GetArray()) {
    if (!u.IsString() || u.GetStringLength() > 16384) return Status(Code::kInvalidArgument, "a URL is not a string");
    std::string url(u.GetString(), u.GetStringLength());
    RETURN_IF_ERROR(ApiClient::CheckUrl(url, "a part URL"));
    PartTarget t;
    t.url = url;
    r.targets.push_back(std::move(t));
  }
  uint32_t n = urls->Size();
  if (n == 1 && r.session.upload_id.empty()) {
    r.session.part_size = file_size;  // one PUT of the whole file
  } else {
    // Multipart: the server's part size, within S3's limits, and exactly enough URLs.
    if (r.session.upload_id.empty()) return Status(Code::kInvalidArgument, "several URLs but no upload_id");
    if (part_size < static_cast<int64_t>(kMinPart) || static_cast<uint64_t>(part_size) > kMaxPart) {
      return Status(Code::kInvalidArgument, "part_size " + std::to_string(part_size) + " is outside 5 MiB..5 GiB");
    }
    uint64_t ps = static_cast<uint64_t>(part_size);
    uint64_t want = std::max<uint64_t>(1, (file_size + ps - 1) / ps);
    if (want != n) {
      return Status(Code::kInvalidArgument, std::to_string(n) + " URLs for " + std::to_string(want) + " parts of " +
                                                std::to_string(part_size) + " bytes");
    }
    r.session.part_size = ps;
  }
  r.session.num_parts = n;
  r.session.overwrite = overwrite;
  return r;
}

StatusOr<BeginResult> IngestDialect::Begin(const std::string& dataset_id, const cache::Entry& e, bool overwrite) {
  std::string step = std::string(overwrite ? "reupload presign" : "presign") + " of " + e.name;
  std::string body = json::Object([&](json::Writer& w) {
    if (!overwrite) json::KeyString(w, "dataset_id", dataset_id);
    json::KeyString(w, "filename", e.name);
    json::KeyInt(w, "file_size", static_cast<int64_t>(e.size));
    json::KeyString(w, "content_type", e.content_type);
  });
  std::string path = overwrite ? "/datasets/" + UriEncode(dataset_id, false) + "/reupload/presigned"
                               : "/ingest/upload/presigned";
  ASSIGN_OR_RETURN(HttpResponse res, api_.Call("POST", path, body, step));
  RETURN_IF_ERROR(StatusFromHttp(res, step));
  auto parsed = ParsePresign(res.body, e.size, overwrite);
  if (!parsed.ok()) return Bad(step, parsed.status());
  return parsed;
}

StatusOr<std::vector<PartTarget>> IngestDialect::RefreshTargets(const cache::UploadSession& s) {
  std::string step = "fresh URLs for job " + s.job_id;
  ASSIGN_OR_RETURN(HttpResponse res, api_.Call("GET", "/ingest/upload/presigned/" + UriEncode(s.job_id, false), "", step));
  if (res.status == 405) return Status(Code::kNotFound, step + ": the platform cannot re-issue URLs");
  RETURN_IF_ERROR(StatusFromHttp(res, step));
  auto doc = json::Parse(res.body, "the refreshed URLs");
  if (!doc.ok()) return Bad(step, doc.status());
  const json::Value* urls = json::Find(*doc, "urls");
  if (urls == nullptr || !urls->IsArray() || urls->Size() != s.num_parts) {
    return Bad(step, Status(Code::kInvalidArgument, "the URL count does not match the session"));
  }
  std::vector<PartTarget> out;
  for (const auto& u : urls->GetArray()) {
    if (!u.IsString()) return Bad(step, Status(Code::kInvalidArgument, "a URL is not a string"));
    PartTarget t;
    t.url = u.GetString();
    out.push_back(std::move(t));
  }
  return out;
}

Status IngestDialect::Complete(const cache::UploadSession& s, const std::map<uint32_t, std::string>& etags) {
  std::string step = "complete of job " + s.job_id;
  std::string body = json::Object([&](json::Writer& w) {
    json::Key(w, "parts");
    w.StartArray();
    if (!s.upload_id.empty()) {
      for (const auto& [n, etag] : etags) {
        w.StartObject();
        json::KeyString(w, "etag", etag);
        json::KeyInt(w, "part_number", n);
        w.EndObject();
      }
    }
    w.EndArray();
  });
  ASSIGN_OR_RETURN(HttpResponse res, api_.Call("POST", "/ingest/upload/presigned/" + UriEncode(s.job_id, false) + "/complete",
                                          body, step));
  Status st = StatusFromHttp(res, step);
  // A retried complete whose first answer was lost: the platform says it is already done.
  if (st.code() == Code::kAlreadyExists) return Status::Ok();
  return st;
}

StatusOr<JobState> IngestDialect::ParseJob(const std::string& body) {
  auto doc = json::Parse(body, "the job status");
  if (!doc.ok()) return doc.status();
  JobState j;
  ASSIGN_OR_RETURN(j.status, json::GetString(*doc, "status", 64));
  auto msg = json::GetOptionalString(*doc, "message", 4096);
  if (msg.ok() && msg->has_value()) j.message = **msg;
  auto sha = json::GetOptionalString(*doc, "sha256", 128);
  if (sha.ok() && sha->has_value()) j.sha256 = **sha;
  int64_t version = json::IntOr(*doc, "version");
  if (version > 0) j.version = version;  // the version this upload became (receipts name it)
  if (j.status == "completed") j.phase = JobPhase::kCompleted;
  else if (j.status == "failed") j.phase = JobPhase::kFailed;
  else if (j.status == "awaiting_upload" || j.status == "pending" || j.status == "processing") j.phase = JobPhase::kRunning;
  else return Status(Code::kInvalidArgument, "unknown job status '" + j.status + "'");
  return j;
}

StatusOr<JobState> IngestDialect::Poll(const cache::UploadSession& s) {
  std::string step = "status of job " + s.job_id;
  ASSIGN_OR_RETURN(HttpResponse res, api_.Call("GET", "/ingest/jobs/" + UriEncode(s.job_id, false), "", step));
  RETURN_IF_ERROR(StatusFromHttp(res, step));
  auto j = ParseJob(res.body);
  if (!j.ok()) return Bad(step, j.status());
  return j;
}

Status IngestDialect::Abort(const cache::UploadSession& s) {
  std::string step = "abort of job " + s.job_id;
  ASSIGN_OR_RETURN(HttpResponse res, api_.Call("DELETE", "/ingest/upload/presigned/" + UriEncode(s.job_id, false), "", step));
  Status st = StatusFromHttp(res, step);
  if (st.code() == Code::kNotFound || st.code() == Code::kAlreadyExists) return Status::Ok();
  return st;
}

}  // namespace ingestfs::upload
