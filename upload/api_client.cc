#include "upload/api_client.h"

#include <fcntl.h>

#include <algorithm>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_util.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "common/names.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "upload/errors.h"

namespace ingestfs::upload {

namespace {
constexpr int64_t kPage = 1000;
}  // namespace

ApiClient::ApiClient(std::string api, std::string auth, ClientPool& pool, ApiLimits limits)
    : api_(std::move(api)), auth_(std::move(auth)), pool_(pool), limits_(limits) {
  while (!api_.empty() && api_.back() == '/') api_.pop_back();
}

std::optional<RemoteFile> ApiClient::ListedFile(const std::string& step, const std::string& name, int64_t size,
                                                const std::string& modified) {
  if (size < 0) return std::nullopt;
  if (static_cast<uint64_t>(size) > kMaxListedSize) {
    LOG_WARN("%s: the platform lists %s at %lld bytes, more than any platform stores (5 TiB); left out",
             step.c_str(), EscapeControl(name).c_str(), static_cast<long long>(size));
    return std::nullopt;
  }
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
  return Status(Code::kBadAnswer, "the platform's answer to " + step + " is malformed: " + why.message());
}

Status ApiClient::CheckUrl(const std::string& url, const std::string& what) {
  if (url.size() > 16384) return Status(Code::kInvalidArgument, what + " is longer than 16 KiB");
  if (!StartsWith(url, "http://") && !StartsWith(url, "https://")) {
    return Status(Code::kInvalidArgument, what + " is not http(s): " + RedactUrl(url));
  }
  return Status::Ok();
}

StatusOr<HttpResponse> ApiClient::Call(const std::string& method, const std::string& path, const std::string& body,
                                       const std::string& step, std::chrono::seconds timeout) {
  HttpRequest req;
  req.method = method;
  req.url = api_ + path;
  req.headers = {auth_, "Accept: application/json"};
  if (method == "POST") req.headers.push_back("Content-Type: application/json");
  req.body = body;
  req.timeout_seconds = std::max<long>(1, std::min(timeout, limits_.call_timeout).count());
  auto lease = pool_.Acquire();
  auto res = lease->Do(req);
  if (limits_.health != nullptr) {
    if (!res.ok()) {
      if (res.status().code() != Code::kCancelled) limits_.health->Saw(0, step + ": " + res.status().message());
    } else if (res->status >= 500 || res->status == 401) {
      limits_.health->Saw(static_cast<int>(res->status), step + ": HTTP " + std::to_string(res->status) +
                                                             (res->status == 401 ? " (the token was refused)" : ""));
    } else {
      limits_.health->Saw(static_cast<int>(res->status), "");
    }
  }
  if (!res.ok()) return res.status().Annotate(step);
  return res;
}

StatusOr<json::Document> ApiClient::CallJson(const std::string& method, const std::string& path,
                                             const std::string& body, const std::string& step,
                                             std::chrono::seconds timeout) {
  ASSIGN_OR_RETURN(HttpResponse res, Call(method, path, body, step, timeout));
  RETURN_IF_ERROR(StatusFromHttp(res, step));
  auto doc = json::Parse(res.body, "the answer to " + step);
  if (!doc.ok()) return Malformed(step, doc.status());
  if (!doc->IsObject()) return Malformed(step, Status(Code::kInvalidArgument, "not a JSON object"));
  return doc;
}

Status ApiClient::ForEachItem(const std::string& path, const std::string& step,
                              const std::function<void(const json::Value&)>& item) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + limits_.listing_timeout;
  const int64_t max_pages = limits_.max_listed_items / kPage + 1;
  std::string sep = path.find('?') == std::string::npos ? "?" : "&";
  int64_t listed = 0;
  auto stopped = [&](const std::string& why) {
    return Status(Code::kUnavailable, step + " stopped after " + std::to_string(listed) + " items: " + why);
  };
  for (int64_t page = 0, offset = 0;; ++page, offset += kPage) {
    if (Interrupted()) return Status(Code::kCancelled, step + " interrupted after " + std::to_string(listed) + " items");
    auto left = std::chrono::ceil<std::chrono::seconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return stopped("it took longer than listing_timeout (" + std::to_string(limits_.listing_timeout.count()) + "s)");
    }
    if (page >= max_pages) return stopped("the platform kept saying there is more after " + std::to_string(page) + " pages");
    ASSIGN_OR_RETURN(json::Document doc, CallJson("GET", path + sep + "limit=" + std::to_string(kPage) + "&offset=" +
                                                             std::to_string(offset),
                                                  "", step, left));
    const json::Value* items = json::Find(doc, "items");
    if (items == nullptr || !items->IsArray()) return Malformed(step, Status(Code::kInvalidArgument, "no items"));
    if (listed + items->Size() > limits_.max_listed_items) {
      return stopped("more than " + std::to_string(limits_.max_listed_items) + " items");
    }
    for (const auto& v : items->GetArray()) item(v);
    listed += items->Size();
    auto total = json::GetInt(doc, "total");
    if (items->Size() == 0 || !total.ok() || offset + kPage >= *total) return Status::Ok();
  }
}

StatusOr<uint64_t> ApiClient::DownloadTo(const std::string& url, const std::string& dest, uint64_t size,
                                          const std::string& step) {
  if (Status bad = CheckUrl(url, "the download URL"); !bad.ok()) return Malformed(step, bad);
  UniqueFd fd(::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::FromErrno(errno, "create " + dest);
  HttpRequest req;
  req.url = url;
  req.sink_fd = fd.get();
  req.sink_max = size;
  req.timeout_seconds = static_cast<long>(120 + size / kMinDownloadRate);
  auto lease = pool_.Acquire();
  auto got = lease->Do(req);
  if (!got.ok()) return got.status().Annotate(step);
  RETURN_IF_ERROR(StatusFromHttp(*got, step));
  if (::fsync(fd.get()) != 0) return Status::FromErrno(errno, "fsync " + dest);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + dest);
  if (static_cast<uint64_t>(st.st_size) != size) {
    return Status(Code::kUnavailable, step + ": the platform sent " + std::to_string(st.st_size) + " bytes of a file it lists at " +
                                          std::to_string(size));
  }
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
