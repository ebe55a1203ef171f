#include "upload/aplos_dialect.h"

#include <ctime>
#include <set>

#include "common/log.h"
#include "common/names.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "upload/errors.h"

namespace ingestfs::upload {

AplosDialect::AplosDialect(std::string api, std::string token, ClientPool& pool, uint64_t max_post,
                           ApiLimits limits)
    : api_(std::move(api), "Authorization: Bearer " + token, pool, limits), max_post_(max_post) {}

StatusOr<std::string> AplosDialect::EnsureDataset(const std::string& name) {
  // A prefix exists as soon as a file is under it: nothing to create.
  RETURN_IF_ERROR(ValidateDatasetName(name));
  return name;
}

StatusOr<std::vector<DatasetInfo>> AplosDialect::ListDatasets() {
  std::string step = "listing files";
  ASSIGN_OR_RETURN(json::Document doc, api_.CallJson("GET", "/nca-engine/files", "", step));
  const json::Value* items = json::Find(doc, "items");
  if (items == nullptr || !items->IsArray()) return ApiClient::Malformed(step, Status(Code::kInvalidArgument, "no items"));
  std::set<std::string> prefixes;
  for (const auto& item : items->GetArray()) {
    auto name = json::GetString(item, "file_name", 4096);
    if (!name.ok()) continue;
    size_t slash = name->find('/');
    if (slash == std::string::npos) continue;  // a file outside any folder: not shown
    std::string prefix = name->substr(0, slash);
    if (ValidateDatasetName(prefix).ok()) prefixes.insert(prefix);
  }
  std::vector<DatasetInfo> out;
  for (const std::string& p : prefixes) out.push_back({p, p});
  return out;
}

Status AplosDialect::ForEachFile(const std::string& prefix, const std::function<void(RemoteFile&&)>& each) {
  std::string step = "listing the files under " + prefix + "/";
  ASSIGN_OR_RETURN(json::Document doc,
                   api_.CallJson("GET", "/nca-engine/files?prefix=" + UriEncode(prefix + "/", false), "", step));
  const json::Value* items = json::Find(doc, "items");
  if (items == nullptr || !items->IsArray()) return ApiClient::Malformed(step, Status(Code::kInvalidArgument, "no items"));
  for (const auto& item : items->GetArray()) {
    auto full = json::GetString(item, "file_name", 4096);
    auto size = json::GetInt(item, "size");
    if (!full.ok() || !size.ok() || !StartsWith(*full, prefix + "/")) continue;
    auto f = ApiClient::ListedFile(step, full->substr(prefix.size() + 1), *size, json::StringOr(item, "last_modified"));
    if (!f) continue;
    f->tag = ContentTag("", f->size);
    each(std::move(*f));
  }
  return Status::Ok();
}

StatusOr<uint64_t> AplosDialect::Download(const std::string& prefix, const std::string& name, uint64_t size, const std::string& dest) {
  std::string step = "download of " + prefix + "/" + name;
  std::string body = json::Object([&](json::Writer& w) { json::KeyString(w, "file_name", prefix + "/" + name); });
  ASSIGN_OR_RETURN(json::Document doc, api_.CallJson("POST", "/nca-engine/generate-download-url", body, step));
  const json::Value* presigned = json::Find(doc, "presigned");
  if (presigned == nullptr) return ApiClient::Malformed(step, Status(Code::kInvalidArgument, "no presigned"));
  auto url = json::GetString(*presigned, "url", 16384);
  if (!url.ok()) return ApiClient::Malformed(step, url.status());
  return api_.DownloadTo(*url, dest, size, step);
}

StatusOr<BeginResult> AplosDialect::ParseUploadUrl(const std::string& body, uint64_t file_size, bool overwrite) {
  auto doc = json::Parse(body, "the upload URL answer");
  if (!doc.ok()) return doc.status();
  if (!doc->IsObject()) return Status(Code::kInvalidArgument, "the answer is not an object");
  const json::Value* presigned = json::Find(*doc, "presigned");
  if (presigned == nullptr || !presigned->IsObject()) return Status(Code::kInvalidArgument, "presigned is missing");
  std::string method = json::StringOr(*presigned, "method_type");
  if (ToLower(method) != "post") return Status(Code::kInvalidArgument, "method_type '" + method + "' is not post");
  PartTarget t;
  t.method = "POST";
  t.form = true;
  t.content_md5 = false;
  t.etag_required = false;
  ASSIGN_OR_RETURN(t.url, json::GetString(*presigned, "url", 16384));
  RETURN_IF_ERROR(ApiClient::CheckUrl(t.url, "the upload URL"));
  const json::Value* fields = json::Find(*presigned, "fields");
  if (fields == nullptr || !fields->IsObject() || fields->MemberCount() == 0 || fields->MemberCount() > 64) {
    return Status(Code::kInvalidArgument, "fields is missing or not an object");
  }
  long success = 204;
  for (const auto& m : fields->GetObject()) {  // in the order given: S3 reads the policy's fields first
    std::string name = m.name.GetString();
    if (!m.value.IsString() || name.empty() || name == "file") {
      return Status(Code::kInvalidArgument, "form field '" + name + "' cannot be sent as given");
    }
    std::string value = m.value.GetString();
    if (ToLower(name) == "success_action_status") success = ParseInt(value).value_or(204);
    t.form_fields.emplace_back(name, value);
  }
  t.success_codes = {success};
  if (auto at = json::GetOptionalString(*presigned, "expires_at_utc", 64); at.ok() && at->has_value()) {
    if (auto when = ParseIso8601Utc(**at)) t.expires = *when;
  }
  if (t.expires == 0) {
    int64_t in = json::IntOr(*presigned, "expires_in");
    if (in > 0) t.expires = std::time(nullptr) + in;
  }
  BeginResult r;
  std::string key;
  if (const json::Value* s3 = json::Find(*doc, "s3"); s3 != nullptr && s3->IsObject()) key = json::StringOr(*s3, "object_key");
  r.session.job_id = key.empty() ? json::StringOr(*doc, "file_name") : key;
  if (r.session.job_id.empty()) return Status(Code::kInvalidArgument, "neither s3.object_key nor file_name is given");
  r.session.part_size = file_size;
  r.session.num_parts = 1;
  r.session.overwrite = overwrite;
  r.targets.push_back(std::move(t));
  return r;
}

StatusOr<BeginResult> AplosDialect::Begin(const std::string& prefix, const cache::Entry& e, bool overwrite) {
  std::string step = "upload URL for " + prefix + "/" + e.name;
  std::string body = json::Object([&](json::Writer& w) {
    json::KeyString(w, "file_name", prefix + "/" + e.name);
    json::KeyString(w, "method_type", "post");
  });
  ASSIGN_OR_RETURN(HttpResponse res, api_.Call("POST", "/nca-engine/generate-upload-url", body, step));
  RETURN_IF_ERROR(StatusFromHttp(res, step));
  auto parsed = ParseUploadUrl(res.body, e.size, overwrite);
  if (!parsed.ok()) return ApiClient::Malformed(step, parsed.status());
  return parsed;
}

StatusOr<std::vector<PartTarget>> AplosDialect::RefreshTargets(const cache::UploadSession&) {
  // A presigned POST cannot be renewed; a new presign for the same name replaces it.
  return Status(Code::kNotFound, "an aplos upload form cannot be renewed; asking for a new one");
}

StatusOr<JobState> AplosDialect::Poll(const cache::UploadSession&) {
  // The store's 204 is the platform's word: the file is there.
  JobState j;
  j.phase = JobPhase::kCompleted;
  j.status = "completed";
  return j;
}

}  // namespace ingestfs::upload
