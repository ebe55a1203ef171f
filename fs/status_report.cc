#include "fs/status_report.h"

#include <cinttypes>
#include <cstdio>

#include "common/strings.h"
#include "upload/progress.h"

namespace ingestfs::fs {

namespace {
// Every text field is shown with its control characters escaped: a line stays one line.
std::string Str(const json::Value& v, const char* key) {
  auto it = v.FindMember(key);
  return it != v.MemberEnd() && it->value.IsString() ? EscapeControl(it->value.GetString()) : "";
}

int64_t Int(const json::Value& v, const char* key) {
  auto it = v.FindMember(key);
  return it != v.MemberEnd() && it->value.IsInt64() ? it->value.GetInt64() : 0;
}
}  // namespace

std::string QueueText(const json::Value& status, bool always_rate) {
  auto q = status.FindMember("queue");
  if (q == status.MemberEnd() || !q->value.IsObject()) return "";
  const json::Value& v = q->value;
  auto num = [&](const char* key) {
    auto it = v.FindMember(key);
    return it != v.MemberEnd() && it->value.IsNumber() ? it->value.GetDouble() : 0.0;
  };
  auto bytes = [](double b) { return upload::TerminalProgress::Bytes(b); };
  std::string text = bytes(num("to_send_bytes")) + " to send";
  double fps = num("files_per_s"), bps = num("bytes_per_s"), eta = num("eta_s");
  std::string rate = StringPrintf("%.1f files/s, %s/s", fps, bytes(bps).c_str());
  if (always_rate) text += "; " + rate + " over the last minute";
  else if (fps > 0) text += ", " + rate;
  if (eta > 0) text += ", about " + upload::TerminalProgress::Duration(eta) + " left";
  else if (always_rate) text += ", no confirmation lately (no estimate)";
  return text;
}

std::string ServiceStatusLine(const json::Value& status) {
  if (!status.IsObject() || !status.HasMember("counts") || !status["counts"].IsObject()) return "status unknown";
  const json::Value& c = status["counts"];
  int64_t waiting = Int(c, "pending") + Int(c, "uploading") + Int(c, "processing");
  std::string out = waiting > 0 ? std::to_string(waiting) + " file(s) waiting, " + QueueText(status, false) : "idle";
  for (const char* key : {"failed", "interrupted", "stalled"}) {
    if (int64_t n = Int(c, key); n > 0) out += "; " + std::to_string(n) + " " + key;
  }
  out += "; " + std::to_string(Int(c, "completed")) + " confirmed since mount";
  if (auto h = status.FindMember("platform_health"); h != status.MemberEnd() && h->value.IsObject()) {
    std::string state = Str(h->value, "state");
    if (state == "unreachable" || state == "token refused") out += "; platform " + Str(h->value, "text");
  }
  return out;
}

std::string StatusTable(const json::Value& status, bool with_files) {
  std::string out;
  if (auto h = status.FindMember("platform_health"); h != status.MemberEnd() && h->value.IsObject()) {
    std::string state = Str(h->value, "state");
    bool bad = state == "unreachable" || state == "token refused";
    out += std::string(bad ? "WARNING: " : "") + "platform " + Str(h->value, "text") +
           (state == "unreachable" ? " (files wait in the cache and go up once it answers)" : "") +
           (state == "token refused" ? " (nothing goes up until the token is fixed and the mount restarted)" : "") + "\n";
  }
  int64_t stalled = status.HasMember("counts") ? Int(status["counts"], "stalled") : 0;
  if (stalled > 0) {
    out += "WARNING: " + std::to_string(stalled) + " file(s) waiting for more than " +
           std::to_string(Int(status, "stale_after_s")) + " s (stalled): is the platform reachable? See the reasons below.\n";
  }
  bool header = false;
  if (with_files && status.HasMember("files") && status["files"].IsArray()) {
    for (const auto& f : status["files"].GetArray()) {
      std::string state = Str(f, "state");
      if (state == "completed") continue;
      auto st = f.FindMember("stalled");
      if (st != f.MemberEnd() && st->value.IsBool() && st->value.GetBool()) state = "stalled";
      if (!header) {
        out += StringPrintf("%-11s %10s %9s  %s\n", "STATE", "SIZE", "PROGRESS", "DATASET/NAME");
        header = true;
      }
      int64_t size = Int(f, "size"), sent = Int(f, "sent");
      std::string progress = state == "uploading" && size > 0 ? std::to_string(sent * 100 / size) + "%" : "";
      std::string size_text = upload::TerminalProgress::Bytes(static_cast<double>(size));
      out += StringPrintf("%-11s %10s %9s  %s/%s\n", state.c_str(), size_text.c_str(), progress.c_str(),
                    Str(f, "dataset").c_str(), Str(f, "name").c_str());
      std::string err = Str(f, "error");
      int64_t attempts = Int(f, "attempts");
      if (attempts > 0 && state != "failed") err += (err.empty() ? "" : " ") + std::string("[") + std::to_string(attempts) + " attempt(s)]";
      if (!err.empty()) out += StringPrintf("%-11s %10s %9s    %s\n", "", "", "", err.c_str());
    }
  }
  if (status.HasMember("cache") && status["cache"].IsObject()) {
    const json::Value& k = status["cache"];
    auto bytes = [](int64_t b) { return upload::TerminalProgress::Bytes(static_cast<double>(b)); };
    int64_t pending = Int(k, "pending_bytes"), cached = Int(k, "cached_bytes"), max = Int(k, "max_bytes");
    int64_t free = Int(k, "free_bytes"), min_free = Int(k, "min_free_bytes");
    out += "cache: " + bytes(pending) + " waiting for the platform, " + bytes(cached) + " of copies" +
           (max > 0 ? " (cache_max " + bytes(max) + ")" : "") + "; " + bytes(free) + " free on its disk\n";
    if ((max > 0 && pending * 10 > max * 8) || (min_free > 0 && free < min_free + min_free / 2)) {
      out += "WARNING: the cache is nearly full: writers will wait for uploads, then get ENOSPC\n";
    }
  }
  if (auto q = status.FindMember("queue"); q != status.MemberEnd() && q->value.IsObject()) {
    auto bytes = [](double b) { return upload::TerminalProgress::Bytes(b); };
    const json::Value& c = status["counts"];
    int64_t waiting = Int(c, "pending") + Int(c, "uploading") + Int(c, "processing");
    if (waiting > 0) {
      out += "queue: " + std::to_string(waiting) + " file(s), " + QueueText(status, true) +
             "; the oldest waiting was closed " +
             upload::TerminalProgress::Duration(static_cast<double>(Int(q->value, "oldest_waiting_s"))) + " ago\n";
    }
    if (auto b = status.FindMember("bytes"); b != status.MemberEnd() && b->value.IsObject()) {
      out += "confirmed since mount: " + std::to_string(Int(c, "completed")) + " file(s), " +
             bytes(static_cast<double>(Int(b->value, "completed"))) + "\n";
    }
    if (status.HasMember("metrics")) out += "metrics: " + Str(status, "metrics") + " (Prometheus)\n";
    if (auto b = status.FindMember("bwlimit"); b != status.MemberEnd() && b->value.IsObject()) {
      out += "upload cap (bwlimit): " + Str(b->value, "text");
      if (b->value.HasMember("next_change")) {
        out += " until " + Str(b->value, "next_change") + ", then " + Str(b->value, "next_text");
      }
      out += "\n";
    }
  }
  const json::Value& c = status["counts"];
  out += StringPrintf("open %" PRId64 ", pending %" PRId64 ", uploading %" PRId64 ", processing %" PRId64
                ", failed %" PRId64 ", interrupted %" PRId64 ", completed %" PRId64 "%s\n",
                Int(c, "open"), Int(c, "pending"), Int(c, "uploading"), Int(c, "processing"), Int(c, "failed"),
                Int(c, "interrupted"), Int(c, "completed"),
                stalled > 0 ? (" (" + std::to_string(stalled) + " stalled)").c_str() : "");
  return out;
}

std::string StatusText(const json::Value& status) {
  std::string out = "ingestfs status at " + Str(status, "time") + "\n";
  if (status.HasMember("platform")) out += "platform: " + Str(status, "platform") + "\n";
  if (int64_t t = Int(status, "job_timeout_s"); t > 0) {
    out += "a platform job not finished " + std::to_string(t) + " s after it took a file is taken as lost (job_timeout)\n";
  }

  out += "\n" + StatusTable(status);
  return out;
}

std::string FailedText(const json::Value& status) {
  std::string failed, interrupted;
  int n = 0, m = 0;
  if (status.HasMember("files") && status["files"].IsArray()) {
    for (const auto& f : status["files"].GetArray()) {
      std::string state = Str(f, "state");
      std::string line = Str(f, "dataset") + "/" + Str(f, "name") + "\n    " + Str(f, "error") + "\n";
      if (state == "failed") {
        ++n;
        failed += line;
      } else if (state == "interrupted") {
        ++m;
        interrupted += Str(f, "dataset") + "/" + Str(f, "name") + " (" +
                       upload::TerminalProgress::Bytes(static_cast<double>(Int(f, "size"))) + " in the cache)\n    " +
                       Str(f, "error") + "\n";
      }
    }
  }
  std::string refused;
  int r = 0;
  if (auto it = status.FindMember("refused"); it != status.MemberEnd() && it->value.IsArray()) {
    for (const auto& x : it->value.GetArray()) {
      ++r;
      refused += Str(x, "time") + "  " + Str(x, "what") + "\n    " + Str(x, "why") + "\n";
    }
  }
  if (r > 0) {
    int64_t total = Int(status, "refused_total");
    refused = "\n" + std::to_string(total) + " operation(s) refused because the platform cannot do them" +
              (total > r ? " (the latest " + std::to_string(r) + " below)" : "") +
              ": nothing was changed, on the platform or here\n\n" + refused;
  }
  if (n == 0 && m == 0) return "no failed files (" + Str(status, "time") + ")\n" + refused;
  std::string out;
  if (n > 0) {
    out += std::to_string(n) + " failed file(s) at " + Str(status, "time") +
           "; `ingestfs retry MOUNTPOINT` queues them again\n\n" + failed;
  }
  if (m > 0) {
    out += std::string(n > 0 ? "\n" : "") + std::to_string(m) + " interrupted file(s) at " + Str(status, "time") +
           ": their writer never finished them, so they are not uploaded. Write each again, or upload what is "
           "there with `ingestfs retry MOUNTPOINT --accept-partial PATH`\n\n" + interrupted;
  }
  return out + refused;
}

}  // namespace ingestfs::fs
