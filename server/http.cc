#include "server/http.h"

#include <thread>

#include "common/json.h"
#include "common/time_util.h"

namespace ingestfs::server {

void RateLimiter::Consume(uint64_t bytes) {
  if (rate_ == 0 || bytes == 0) return;
  std::chrono::steady_clock::time_point wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto now = std::chrono::steady_clock::now();
    if (next_ < now) next_ = now;
    wake = next_;
    next_ += std::chrono::microseconds(bytes * 1000000 / rate_);
  }
  std::this_thread::sleep_until(wake);
}

AccessLog::AccessLog(const std::string& path) {
  if (!path.empty()) f_ = std::fopen(path.c_str(), "a");
}

AccessLog::~AccessLog() {
  if (f_ != nullptr) std::fclose(f_);
}

void AccessLog::Write(const std::string& method, const std::string& path, int status, uint64_t bytes_in,
                      bool dropped) {
  if (f_ == nullptr) return;
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  w.StartObject();
  json::KeyString(w, "time", Iso8601Utc(std::time(nullptr)));
  json::KeyInt(w, "ms", NowUnixMillis());
  json::KeyString(w, "method", method);
  json::KeyString(w, "path", path);
  json::KeyInt(w, "status", status);
  json::KeyInt(w, "bytes_in", static_cast<int64_t>(bytes_in));
  if (dropped) {
    json::Key(w, "dropped");
    w.Bool(true);
  }
  w.EndObject();
  std::lock_guard<std::mutex> lock(mu_);
  std::fputs(json::Done(buf).c_str(), f_);
  std::fputc('\n', f_);
  std::fflush(f_);
}

Router::Router(httplib::Server& server, const AuthConfig& auth, const FaultOptions& faults, AccessLog& log)
    : server_(server), auth_(auth), faults_(faults), log_(log), limiter_(faults.max_bytes_per_sec) {}

bool Router::Roll(double rate) {
  if (rate <= 0) return false;
  std::lock_guard<std::mutex> lock(rng_mu_);
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < rate;
}

bool Router::Authorize(Plane plane, Call& call) {
  // Each dialect names its credentials its own way: a bearer token (ingest, aplos) or sbg's
  // X-SBG-Auth-Token header. A client that sends the wrong one is told which one is expected.
  bool sbg = plane == Plane::kSbg;
  auto refuse = [&](int status, const std::string& why) {
    if (status == 401 && !sbg) call.res.set_header("WWW-Authenticate", "Bearer");
    ReplyDetail(call.res, status, why);
    return false;
  };
  if (sbg) {
    call.token = call.req.get_header_value("X-SBG-Auth-Token");
    if (call.token.empty()) return refuse(401, "Not authenticated: this endpoint expects an X-SBG-Auth-Token header");
  } else {
    std::string h = call.req.get_header_value("Authorization");
    if (h.empty()) return refuse(401, "Not authenticated");
    if (h.rfind("Bearer ", 0) != 0) return refuse(401, "Invalid authentication scheme; expected 'Bearer <token>'");
    call.token = h.substr(7);
  }
  if (auth_.tokens.count(call.token) != 0) return true;
  if (auth_.readonly_tokens.count(call.token) != 0) {
    if (call.req.method == "GET") return true;
    return refuse(403, "This token is read-only: not allowed to " + call.req.method + " " + call.req.path);
  }
  return refuse(401, "Invalid token");
}

void Router::Run(Plane plane, Call& call, const Handler& h) {
  if (stopping_) {
    call.res.set_header("Connection", "close");
    call.res.set_header("Retry-After", "1");
    return ReplyDetail(call.res, 503, "The server is stopping; try again");
  }
  call.read_body = [&call, this, plane](const std::function<bool(const char*, size_t)>& sink) {
    if (call.reader == nullptr) {
      call.bytes_in += call.req.body.size();
      return sink(call.req.body.data(), call.req.body.size());
    }
    auto counted = [&](const char* data, size_t len) {
      if (plane == Plane::kData) limiter_.Consume(len);
      call.bytes_in += len;
      return sink(data, len);
    };
    // httplib reads a multipart/form-data body only through its multipart reader (the plain one
    // would call an empty function): the parts' bytes, one after the other.
    if (call.req.is_multipart_form_data()) {
      return (*call.reader)([](const httplib::MultipartFormData&) { return true; }, counted);
    }
    return (*call.reader)(counted);
  };
  call.read_form = [&call, this, plane](const httplib::MultipartContentHeader& header,
                                        const std::function<bool(const char*, size_t)>& sink) {
    if (call.reader == nullptr) return false;
    return (*call.reader)(header, [&](const char* data, size_t len) {
      if (plane == Plane::kData) limiter_.Consume(len);
      call.bytes_in += len;
      return sink(data, len);
    });
  };
  RateLimiter* limiter = plane == Plane::kData ? &limiter_ : nullptr;
  call.throttle = [limiter](uint64_t bytes) {
    if (limiter != nullptr) limiter->Consume(bytes);
  };
  auto drain = [&call] {
    call.read_body([](const char*, size_t) { return true; });
  };
  if (plane == Plane::kData && faults_.delay_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(faults_.delay_ms));
  }
  bool handled = false;
  if (plane != Plane::kHealth && Roll(faults_.fail_rate)) {
    drain();
    bool slow_down = Roll(0.5);
    if (plane == Plane::kData) {
      ReplyS3Error(call.res, slow_down ? S3Error{503, "SlowDown", "Please reduce your request rate."}
                                       : S3Error{500, "InternalError", "We encountered an internal error. Please try again."},
                   call.req.path);
    } else {
      ReplyDetail(call.res, slow_down ? 503 : 500,
                  slow_down ? "Service temporarily unavailable (injected fault)" : "Internal server error (injected fault)");
    }
    if (slow_down) call.res.set_header("Retry-After", "1");
    handled = true;
  }
  if (!handled && (plane == Plane::kControl || plane == Plane::kSbg) && !Authorize(plane, call)) {
    drain();
    handled = true;
  }
  if (!handled) {
    try {
      h(call);
    } catch (const std::exception& e) {
      ReplyDetail(call.res, 500, std::string("internal error: ") + e.what());
    }
  }
  bool dropped = false;
  if (plane != Plane::kHealth && Roll(faults_.drop_rate) && !call.res.content_provider_) {
    // Send the headers and half of the body, then close: the client sees a cut response while
    // the request's effect has happened (the case a client must handle idempotently).
    auto body = std::make_shared<std::string>(call.res.body);
    size_t declared = body->size() + 64;
    call.res.body.clear();
    std::string type = call.res.get_header_value("Content-Type");
    call.res.set_content_provider(declared, type.empty() ? "application/octet-stream" : type,
                                  [body](size_t offset, size_t, httplib::DataSink& sink) {
                                    size_t half = body->size() / 2;
                                    if (offset < half) sink.write(body->data() + offset, half - offset);
                                    return false;
                                  });
    dropped = true;
  }
  log_.Write(call.req.method, call.req.path, call.res.status < 0 ? 200 : call.res.status, call.bytes_in, dropped);
}

void Router::Route(const std::string& method, const std::string& pattern, Plane plane, Handler h) {
  bool streamed = plane == Plane::kData && (method == "PUT" || method == "POST");
  if (streamed) {
    auto fn = [this, plane, h](const httplib::Request& req, httplib::Response& res,
                               const httplib::ContentReader& reader) {
      Call call{req, res, &reader, 0, {}, {}, {}, {}};
      Run(plane, call, h);
    };
    if (method == "PUT") server_.Put(pattern, fn);
    else server_.Post(pattern, fn);
    return;
  }
  auto fn = [this, plane, h](const httplib::Request& req, httplib::Response& res) {
    Call call{req, res, nullptr, 0, {}, {}, {}, {}};
    Run(plane, call, h);
  };
  if (method == "GET") server_.Get(pattern, fn);
  else if (method == "POST") server_.Post(pattern, fn);
  else if (method == "PUT") server_.Put(pattern, fn);
  else if (method == "DELETE") server_.Delete(pattern, fn);
}

std::string JsonQuote(const std::string& s) {
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  json::String(w, s);
  return json::Done(buf);
}

void ReplyJson(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void ReplyDetail(httplib::Response& res, int status, const std::string& detail) {
  ReplyJson(res, status, "{\"detail\":" + JsonQuote(detail) + "}");
}

void ReplyValidation(httplib::Response& res, const std::vector<ValidationIssue>& issues) {
  std::string out = "{\"detail\":[";
  for (size_t i = 0; i < issues.size(); ++i) {
    const ValidationIssue& v = issues[i];
    if (i > 0) out += ",";
    out += "{\"loc\":[";
    for (size_t k = 0; k < v.loc.size(); ++k) {
      if (k > 0) out += ",";
      out += JsonQuote(v.loc[k]);
    }
    out += "],\"msg\":" + JsonQuote(v.msg) + ",\"type\":" + JsonQuote(v.type) + ",\"input\":" + v.input_json +
           ",\"ctx\":" + v.ctx_json + "}";
  }
  out += "]}";
  ReplyJson(res, 422, out);
}

std::string XmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

void ReplyS3Error(httplib::Response& res, const S3Error& err, const std::string& resource) {
  res.status = err.http_status;
  res.set_content("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" + XmlEscape(err.code) +
                      "</Code><Message>" + XmlEscape(err.message) + "</Message><Resource>" +
                      XmlEscape(resource) + "</Resource><RequestId>" + std::to_string(NowUnixMillis()) +
                      "</RequestId></Error>",
                  "application/xml");
}

}  // namespace ingestfs::server
