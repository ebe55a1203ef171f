#include "upload/sbg_dialect.h"

#include "common/log.h"
#include "common/names.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "upload/errors.h"

namespace ingestfs::upload {

namespace {
constexpr uint64_t kMinPart = 5ULL << 20;
constexpr uint64_t kMaxPart = 5ULL << 30;
constexpr uint64_t kMaxParts = 10000;

bool HeaderSafe(const std::string& s) { return s.find_first_of("\r\n") == std::string::npos; }
}  // namespace

SbgDialect::SbgDialect(std::string api, std::string token, ClientPool& pool, uint64_t part_size,
                       ApiLimits limits)
    : api_(std::move(api), "X-SBG-Auth-Token: " + token, pool, limits), projects_(api_, "/projects", "project"),
      part_size_(part_size) {}

Status SbgDialect::ForEachFile(const std::string& project_id, const std::function<void(RemoteFile&&)>& each) {
  std::map<std::string, std::string> ids;
  std::string step = "listing the files of project " + project_id;
  RETURN_IF_ERROR(api_.ForEachItem("/files?project=" + UriEncode(project_id, false), step, [&](const json::Value& item) {
    auto name = json::GetString(item, "name", 4096);
    auto size = json::GetInt(item, "size");
    auto id = json::GetString(item, "id", 1024);
    if (!name.ok() || !size.ok() || !id.ok()) return;
    auto f = ApiClient::ListedFile(step, *name, *size, json::StringOr(item, "modified_on"));
    if (!f) return;
    f->tag = ContentTag("", f->size);
    ids[f->name] = *id;
    each(std::move(*f));
  }));
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, id] : ids) file_ids_[{project_id, name}] = id;
  return Status::Ok();
}

StatusOr<uint64_t> SbgDialect::Download(const std::string& project_id, const std::string& name, uint64_t size,
                                        const std::string& dest) {
  std::string step = "download of " + name;
  std::string id;
  for (int pass = 0; pass < 2 && id.empty(); ++pass) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = file_ids_.find({project_id, name});
      if (it != file_ids_.end()) id = it->second;
    }
    if (id.empty() && pass == 0) RETURN_IF_ERROR(ForEachFile(project_id, [](RemoteFile&&) {}));
  }
  if (id.empty()) return Status(Code::kNotFound, step + ": the project lists no such file");
  ASSIGN_OR_RETURN(json::Document doc, api_.CallJson("GET", "/files/" + UriEncode(id, false) + "/download_info", "", step));
  auto url = json::GetString(doc, "url", 16384);
  if (!url.ok()) return ApiClient::Malformed(step, url.status());
  return api_.DownloadTo(*url, dest, size, step);
}

StatusOr<BeginResult> SbgDialect::ParseInit(const std::string& body, uint64_t file_size, bool overwrite) {
  auto doc = json::Parse(body, "the upload init answer");
  if (!doc.ok()) return doc.status();
  if (!doc->IsObject()) return Status(Code::kInvalidArgument, "the init answer is not an object");
  BeginResult r;
  ASSIGN_OR_RETURN(std::string upload_id, json::GetString(*doc, "upload_id", 1024));
  if (upload_id.empty() || !HeaderSafe(upload_id)) return Status(Code::kInvalidArgument, "upload_id is empty");
  ASSIGN_OR_RETURN(int64_t part_size, json::GetInt(*doc, "part_size"));
  if (part_size <= 0 || static_cast<uint64_t>(part_size) > kMaxPart) {
    return Status(Code::kInvalidArgument, "part_size " + std::to_string(part_size) + " is outside 1..5 GiB");
  }
  uint64_t ps = static_cast<uint64_t>(part_size);
  uint64_t parts = std::max<uint64_t>(1, (file_size + ps - 1) / ps);
  if (parts > kMaxParts) return Status(Code::kInvalidArgument, "part_size " + std::to_string(ps) + " needs more than 10,000 parts");
  if (parts > 1 && ps < kMinPart) {
    return Status(Code::kInvalidArgument, "part_size " + std::to_string(ps) + " is below 5 MiB for a multipart upload");
  }
  r.session.job_id = upload_id;
  r.session.upload_id = upload_id;
  r.session.part_size = ps;
  r.session.num_parts = static_cast<uint32_t>(parts);
  r.session.overwrite = overwrite;
  return r;  // no targets: each part's is asked for when it is sent
}

StatusOr<BeginResult> SbgDialect::Begin(const std::string& project_id, const cache::Entry& e, bool overwrite) {
  std::string step = std::string(overwrite ? "upload (overwrite) init" : "upload init") + " of " + e.name;
  std::string body = json::Object([&](json::Writer& w) {
    json::KeyString(w, "project", project_id);
    json::KeyString(w, "name", e.name);
    json::KeyInt(w, "size", static_cast<int64_t>(e.size));
    json::KeyInt(w, "part_size", static_cast<int64_t>(part_size_));
  });
  ASSIGN_OR_RETURN(HttpResponse res, api_.Call("POST", overwrite ? "/upload/multipart?overwrite=true" : "/upload/multipart",
                                               body, step));
  RETURN_IF_ERROR(StatusFromHttp(res, step));
  auto parsed = ParseInit(res.body, e.size, overwrite);
  if (!parsed.ok()) return ApiClient::Malformed(step, parsed.status());
  return parsed;
}

std::string SbgDialect::UploadPath(const cache::UploadSession& s) const {
  return "/upload/multipart/" + UriEncode(s.upload_id, false);
}

StatusOr<std::vector<PartTarget>> SbgDialect::RefreshTargets(const cache::UploadSession& s) {
  // Nothing to fetch ahead; asking for part 1's URL tells whether the upload still takes parts
  // (404: unknown, 409: completed or aborted; either way the pipeline begins again).
  RETURN_IF_ERROR(TargetFor(s, 1).status());
  return std::vector<PartTarget>();
}

StatusOr<PartTarget> SbgDialect::ParsePart(const std::string& body) {
  auto doc = json::Parse(body, "the part answer");
  if (!doc.ok()) return doc.status();
  if (!doc->IsObject()) return Status(Code::kInvalidArgument, "the part answer is not an object");
  PartTarget t;
  ASSIGN_OR_RETURN(t.method, json::GetString(*doc, "method", 16));
  if (t.method != "PUT" && t.method != "POST") {
    return Status(Code::kInvalidArgument, "method '" + t.method + "' is not PUT or POST");
  }
  ASSIGN_OR_RETURN(t.url, json::GetString(*doc, "url", 16384));
  RETURN_IF_ERROR(ApiClient::CheckUrl(t.url, "the part URL"));
  auto expires = json::GetOptionalString(*doc, "expires", 64);
  if (expires.ok() && expires->has_value()) {
    auto when = ParseIso8601Utc(**expires);
    if (!when) return Status(Code::kInvalidArgument, "expires '" + **expires + "' is not an ISO 8601 UTC time");
    t.expires = *when;
  }
  if (const json::Value* h = json::Find(*doc, "headers"); h != nullptr && !h->IsNull()) {
    if (!h->IsObject() || h->MemberCount() > 64) return Status(Code::kInvalidArgument, "headers is not an object");
    for (const auto& m : h->GetObject()) {
      std::string name = m.name.GetString();
      if (!m.value.IsString() || name.empty() || name.find_first_of(": \t\r\n") != std::string::npos ||
          !HeaderSafe(m.value.GetString())) {
        return Status(Code::kInvalidArgument, "header '" + name + "' cannot be sent as given");
      }
      t.headers.push_back(name + ": " + m.value.GetString());
    }
  }
  t.success_codes.clear();
  if (const json::Value* c = json::Find(*doc, "success_codes"); c != nullptr && c->IsArray()) {
    for (const auto& code : c->GetArray()) {
      if (!code.IsInt() || code.GetInt() < 200 || code.GetInt() > 299) {
        return Status(Code::kInvalidArgument, "success_codes holds something other than a 2xx status");
      }
      t.success_codes.push_back(code.GetInt());
    }
  }
  if (t.success_codes.empty()) return Status(Code::kInvalidArgument, "success_codes is missing or empty");
  if (const json::Value* r = json::Find(*doc, "report"); r != nullptr && r->IsObject()) {
    if (const json::Value* h = json::Find(*r, "headers"); h != nullptr && h->IsArray()) {
      for (const auto& name : h->GetArray()) {
        if (!name.IsString()) return Status(Code::kInvalidArgument, "report.headers holds a non-string");
        t.report_headers.push_back(name.GetString());
      }
    }
  }
  t.content_md5 = false;  // exactly the headers we were given
  return t;
}

StatusOr<PartTarget> SbgDialect::TargetFor(const cache::UploadSession& s, uint32_t n) {
  std::string step = "URL of part " + std::to_string(n) + " of upload " + s.upload_id;
  ASSIGN_OR_RETURN(HttpResponse res, api_.Call("GET", UploadPath(s) + "/part/" + std::to_string(n), "", step));
  RETURN_IF_ERROR(StatusFromHttp(res, step));
  auto t = ParsePart(res.body);
  if (!t.ok()) return ApiClient::Malformed(step, t.status());
  return t;
}

Status SbgDialect::ReportPart(const cache::UploadSession& s, uint32_t n, const PartTarget& target,
                              const std::map<std::string, std::string>& response_headers) {
  std::string step = "report of part " + std::to_string(n) + " of upload " + s.upload_id;
  std::string body = json::Object([&](json::Writer& w) {
    json::KeyInt(w, "part_number", n);
    json::Key(w, "response");
    w.StartObject();
    json::Key(w, "headers");
    w.StartObject();
    for (const std::string& name : target.report_headers) {
      auto it = response_headers.find(ToLower(name));
      if (it != response_headers.end()) json::KeyString(w, name, it->second);
    }
    w.EndObject();
    json::Key(w, "body");
    w.StartObject();
    w.EndObject();
    w.EndObject();
  });
  ASSIGN_OR_RETURN(HttpResponse res, api_.Call("POST", UploadPath(s) + "/part", body, step));
  return StatusFromHttp(res, step);
}

Status SbgDialect::Complete(const cache::UploadSession& s, const std::map<uint32_t, std::string>&) {
  std::string step = "complete of upload " + s.upload_id;
  ASSIGN_OR_RETURN(HttpResponse res, api_.Call("POST", UploadPath(s) + "/complete", "{}", step));
  // A 400 (a part not held as reported) is kInvalidArgument: the pipeline begins again.
  return StatusFromHttp(res, step);
}

StatusOr<JobState> SbgDialect::Poll(const cache::UploadSession&) {
  // complete answers with the file itself: there is no job to follow.
  JobState j;
  j.phase = JobPhase::kCompleted;
  j.status = "completed";
  return j;
}

Status SbgDialect::Abort(const cache::UploadSession& s) {
  std::string step = "abort of upload " + s.upload_id;
  ASSIGN_OR_RETURN(HttpResponse res, api_.Call("DELETE", UploadPath(s), "", step));
  Status st = StatusFromHttp(res, step);
  if (st.code() == Code::kNotFound || st.code() == Code::kAlreadyExists) return Status::Ok();
  return st;
}

}  // namespace ingestfs::upload
