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

bool PresignedUrlExpired(const std::string& url, std::time_t now) {
  size_t q = url.find('?');
  if (q == std::string::npos) return false;
  std::string date, expires;
  for (const std::string& pair : Split(url.substr(q + 1), '&')) {
    if (StartsWith(pair, "X-Amz-Date=")) date = pair.substr(11);
    else if (StartsWith(pair, "X-Amz-Expires=")) expires = pair.substr(14);
  }
  auto ttl = ParseInt(expires);
  if (date.size() != 16 || date[8] != 'T' || date[15] != 'Z' || !ttl || *ttl < 0 || *ttl > 7 * 86400) return false;
  std::tm tm{};
  auto field = [&](size_t at, size_t len) { return ParseInt(date.substr(at, len)); };
  auto y = field(0, 4), mo = field(4, 2), d = field(6, 2), h = field(9, 2), mi = field(11, 2), se = field(13, 2);
  if (!y || !mo || !d || !h || !mi || !se || *mo < 1 || *mo > 12 || *d < 1 || *d > 31 || *h > 23 || *mi > 59 || *se > 60) {
    return false;
  }
  tm.tm_year = static_cast<int>(*y) - 1900;
  tm.tm_mon = static_cast<int>(*mo) - 1;
  tm.tm_mday = static_cast<int>(*d);
  tm.tm_hour = static_cast<int>(*h);
  tm.tm_min = static_cast<int>(*mi);
  tm.tm_sec = static_cast<int>(*se);
  return now >= ::timegm(&tm) + *ttl;
}

bool IsTransient(const Status& st) {
  return st.code() == Code::kUnavailable || st.code() == Code::kBadAnswer || st.code() == Code::kDataLoss;
}

}  // namespace ingestfs::upload
