#include "upload/errors.h"

#include "common/json.h"
#include "common/strings.h"

namespace ingestfs::upload {

namespace {
std::string XmlTag(const std::string& body, const std::string& tag) {
  size_t a = body.find("<" + tag + ">");
  size_t b = body.find("</" + tag + ">");
  if (a == std::string::npos || b == std::string::npos || b < a) return "";
  a += tag.size() + 2;
  return body.substr(a, b - a);
}

std::string Cut(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r' || c == '\0') c = ' ';
  }
  if (s.size() > 300) s = s.substr(0, 300) + "…";
  return s;
}
}  // namespace

std::string ErrorText(const std::string& body) {
  if (body.empty()) return "";
  auto doc = json::Parse(body, "error body");
  if (doc.ok() && doc->IsObject()) {
    const json::Value* d = json::Find(*doc, "detail");
    if (d != nullptr && d->IsString()) return Cut(d->GetString());
    if (d != nullptr && d->IsArray() && d->Size() > 0) {
      std::string out;
      for (const auto& item : d->GetArray()) {
        auto msg = json::GetString(item, "msg");
        if (!msg.ok()) continue;
        std::string loc;
        const json::Value* l = json::Find(item, "loc");
        if (l != nullptr && l->IsArray()) {
          for (const auto& part : l->GetArray()) {
            if (part.IsString()) loc += (loc.empty() ? "" : ".") + std::string(part.GetString());
            else if (part.IsInt()) loc += "." + std::to_string(part.GetInt());
          }
        }
        out += (out.empty() ? "" : "; ") + (loc.empty() ? "" : loc + ": ") + *msg;
      }
      if (!out.empty()) return Cut(out);
    }
  }
  std::string code = XmlTag(body, "Code");
  std::string msg = XmlTag(body, "Message");
  if (!code.empty() || !msg.empty()) return Cut(code + (msg.empty() ? "" : ": " + msg));
  return Cut(body.substr(0, 200));
}

Status StatusFromHttp(const HttpResponse& res, const std::string& step) {
  long s = res.status;
  if (s >= 200 && s < 300) return Status::Ok();
  std::string text = ErrorText(res.body);
  std::string msg = step + ": HTTP " + std::to_string(s) + (text.empty() ? "" : " " + text);
  Code code;
  if (s == 401) code = Code::kUnauthenticated;
  else if (s == 403) {
    // An expired presigned URL (query auth) or POST policy: ask for a fresh one.
    bool expired = text.find("Request has expired") != std::string::npos || text.find("Policy expired") != std::string::npos;
    code = expired ? Code::kDeadlineExceeded : Code::kPermissionDenied;
  }
  else if (s == 404) code = Code::kNotFound;
  else if (s == 409) code = Code::kAlreadyExists;
  else if (s == 408 || s == 429 || s >= 500) code = Code::kUnavailable;
  else code = Code::kInvalidArgument;
  Status st(code, msg);
  auto it = res.headers.find("retry-after");
  if (it != res.headers.end()) {
    auto secs = ParseInt(Trim(it->second));
    if (secs) st = st.WithRetryAfter(std::min<int64_t>(*secs, 3600) * 1000);
  }
  return st;
}

bool IsTransient(const Status& st) {
  return st.code() == Code::kUnavailable || st.code() == Code::kBadAnswer || st.code() == Code::kDataLoss;
}

}  // namespace ingestfs::upload
