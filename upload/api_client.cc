#include "upload/api_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_util.h"
#include "common/log.h"
#include "common/names.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "upload/errors.h"

namespace ingestfs::upload {

namespace {
constexpr int64_t kPage = 1000;
}  // namespace

ApiClient::ApiClient(std::string api, std::string auth, ClientPool& pool)
    : api_(std::move(api)), auth_(std::move(auth)), pool_(pool) {
  while (!api_.empty() && api_.back() == '/') api_.pop_back();
}

std::optional<RemoteFile> ApiClient::ListedFile(const std::string& step, const std::string& name, int64_t size,
                                                const std::string& modified) {
  if (size < 0) return std::nullopt;
  if (Status bad = ValidateFileName(name); !bad.ok()) {
    LOG_WARN("%s: the platform lists a name that breaks the naming rules; left out: %s", step.c_str(),
             bad.message().c_str());
    return std::nullopt;
  }
  RemoteFile f;
  f.name = name;
  f.size = static_cast<uint64_t>(size);
  if (auto t = ParseIso8601Utc(modified)) f.mtime = *t;
  return f;
}

Status ApiClient::Malformed(const std::string& step, const Status& why) {
  return Status(Code::kUnavailable, "the platform's answer to " + step + " is malformed: " + why.message());
}

Status ApiClient::CheckUrl(const std::string& url, const std::string& what) {
  if (url.size() > 16384) return Status(Code::kInvalidArgument, what + " is longer than 16 KiB");
  if (!StartsWith(url, "http://") && !StartsWith(url, "https://")) {
    return Status(Code::kInvalidArgument, what + " is not http(s): " + RedactUrl(url));
  }
  return Status::Ok();
}

StatusOr<HttpResponse> ApiClient::Call(const std::string& method, const std::string& path, const std::string& body,
                                       const std::string& step) {
  HttpRequest req;
  req.method = method;
  req.url = api_ + path;
  req.headers = {auth_, "Accept: application/json"};
  if (method == "POST") req.headers.push_back("Content-Type: application/json");
  req.body = body;
  req.timeout_seconds = 120;
  auto lease = pool_.Acquire();
  auto res = lease->Do(req);
  if (!res.ok()) return res.status().Annotate(step);
  return res;
}

StatusOr<json::Document> ApiClient::CallJson(const std::string& method, const std::string& path,
                                             const std::string& body, const std::string& step) {
  ASSIGN_OR_RETURN(HttpResponse res, Call(method, path, body, step));
  RETURN_IF_ERROR(StatusFromHttp(res, step));
  auto doc = json::Parse(res.body, "the answer to " + step);
  if (!doc.ok()) return Malformed(step, doc.status());
  if (!doc->IsObject()) return Malformed(step, Status(Code::kInvalidArgument, "not a JSON object"));
  return doc;
}

Status ApiClient::ForEachItem(const std::string& path, const std::string& step,
                              const std::function<void(const json::Value&)>& item) {
  std::string sep = path.find('?') == std::string::npos ? "?" : "&";
  for (int64_t offset = 0;; offset += kPage) {
    ASSIGN_OR_RETURN(json::Document doc, CallJson("GET", path + sep + "limit=" + std::to_string(kPage) + "&offset=" +
                                                             std::to_string(offset),
                                                  "", step));
    const json::Value* items = json::Find(doc, "items");
    if (items == nullptr || !items->IsArray()) return Malformed(step, Status(Code::kInvalidArgument, "no items"));
    for (const auto& v : items->GetArray()) item(v);
    auto total = json::GetInt(doc, "total");
    if (items->Size() == 0 || !total.ok() || offset + kPage >= *total) return Status::Ok();
  }
}

StatusOr<uint64_t> ApiClient::DownloadTo(const std::string& url, const std::string& dest, const std::string& step) {
  if (Status bad = CheckUrl(url, "the download URL"); !bad.ok()) return Malformed(step, bad);
  UniqueFd fd(::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::FromErrno(errno, "create " + dest);
  HttpRequest req;
  req.url = url;
  req.sink_fd = fd.get();
  auto lease = pool_.Acquire();
  ASSIGN_OR_RETURN(HttpResponse got, lease->Do(req));
  RETURN_IF_ERROR(StatusFromHttp(got, step));
  if (::fsync(fd.get()) != 0) return Status::FromErrno(errno, "fsync " + dest);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + dest);
  return static_cast<uint64_t>(st.st_size);
}

StatusOr<std::vector<DatasetInfo>> Folders::List() {
  std::vector<DatasetInfo> out;
  RETURN_IF_ERROR(api_.ForEachItem(path_, "listing " + noun_ + "s", [&](const json::Value& v) {
    auto n = json::GetString(v, "name", 1024);
    auto id = json::GetString(v, "id", 1024);
    if (n.ok() && id.ok() && ValidateDatasetName(*n).ok()) out.push_back({*id, *n});
  }));
  std::lock_guard<std::mutex> lock(mu_);
  for (const DatasetInfo& d : out) ids_[d.name] = d.id;
  return out;
}

StatusOr<std::optional<std::string>> Folders::Find(const std::string& name) {
  ASSIGN_OR_RETURN(std::vector<DatasetInfo> all, List());
  for (const DatasetInfo& d : all) {
    if (d.name == name) return std::optional<std::string>(d.id);
  }
  return std::optional<std::string>();
}

StatusOr<std::string> Folders::Ensure(const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ids_.find(name);
    if (it != ids_.end()) return it->second;
  }
  RETURN_IF_ERROR(ValidateDatasetName(name));
  ASSIGN_OR_RETURN(auto found, Find(name));
  if (!found) {
    std::string step = "creating " + noun_ + " " + name;
    std::string body = json::Object([&](json::Writer& w) { json::KeyString(w, "name", name); });
    auto doc = api_.CallJson("POST", path_, body, step);
    if (doc.status().code() == Code::kAlreadyExists) {  // created meanwhile by someone else
      ASSIGN_OR_RETURN(found, Find(name));
      if (!found) return Status(Code::kUnavailable, noun_ + " " + name + " exists but is not listed yet");
    } else {
      if (!doc.ok()) return doc.status();
      auto id = json::GetString(*doc, "id", 1024);
      if (!id.ok()) return ApiClient::Malformed(step, id.status());
      found = *id;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  ids_[name] = *found;
  return *found;
}

}  // namespace ingestfs::upload
