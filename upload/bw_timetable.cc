#include "upload/bw_timetable.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "common/strings.h"

namespace ingestfs::upload {
namespace {

StatusOr<uint64_t> ParseRate(const std::string& text, const std::string& whole) {
  if (text == "off") return uint64_t{0};
  auto r = ParseSize(text);
  if (!r.ok() || *r < 1024) {
    if (whole == text) {
      return Status(Code::kInvalidArgument, "bwlimit=" + whole +
                                                " must be bytes per second, at least 1K (e.g. 10M, 500K), or a "
                                                "timetable TIME@RATE/TIME@RATE... (e.g. 08:00@512K/18:00@off)");
    }
    return Status(Code::kInvalidArgument, "bwlimit=" + whole + ": '" + text +
                                              "' must be bytes per second, at least 1K (e.g. 10M, 500K), or off");
  }
  return *r;
}

// "HH:MM" or "HH:MM:SS" -> seconds since midnight, or -1.
int ParseTime(const std::string& t) {
  int h = 0, m = 0, s = 0;
  char extra = 0;
  int n = std::sscanf(t.c_str(), "%2d:%2d:%2d%c", &h, &m, &s, &extra);
  bool shape = (t.size() == 5 && n == 2 && t[2] == ':') || (t.size() == 8 && n == 3 && t[2] == ':' && t[5] == ':');
  for (char c : t) shape &= (c == ':' || (c >= '0' && c <= '9'));
  if (!shape || h > 23 || m > 59 || s > 59) return -1;
  return h * 3600 + m * 60 + s;
}

}  // namespace

StatusOr<BwTimetable> BwTimetable::Parse(const std::string& text) {
  BwTimetable t;
  if (text.find('@') == std::string::npos) {
    ASSIGN_OR_RETURN(uint64_t rate, ParseRate(text, text));
    t.slots_.push_back({0, rate});
    return t;
  }
  for (const std::string& entry : Split(text, '/')) {
    size_t at = entry.find('@');
    auto bad = [&](const std::string& why) {
      return Status(Code::kInvalidArgument, "bwlimit=" + text + ": '" + entry + "' " + why +
                                                " (a timetable is TIME@RATE/TIME@RATE..., e.g. 08:00@512K/18:00@off)");
    };
    if (at == std::string::npos) return bad("has no @");
    int when = ParseTime(entry.substr(0, at));
    if (when < 0) return bad("does not start with a time HH:MM or HH:MM:SS");
    ASSIGN_OR_RETURN(uint64_t rate, ParseRate(entry.substr(at + 1), text));
    for (const Slot& s : t.slots_) {
      if (s.at == when) return bad("names a time given before");
    }
    t.slots_.push_back({when, rate});
  }
  std::sort(t.slots_.begin(), t.slots_.end(), [](const Slot& a, const Slot& b) { return a.at < b.at; });
  return t;
}

uint64_t BwTimetable::RateAt(int sec_of_day) const {
  if (slots_.empty()) return 0;
  // The last slot at or before now; before the day's first, the day before's last.
  uint64_t rate = slots_.back().rate;
  for (const Slot& s : slots_) {
    if (s.at <= sec_of_day) rate = s.rate;
  }
  return rate;
}

int BwTimetable::SecondsToChange(int sec_of_day) const {
  if (constant()) return -1;
  for (const Slot& s : slots_) {
    if (s.at > sec_of_day) return s.at - sec_of_day;
  }
  return 86400 - sec_of_day + slots_.front().at;
}

double LocalSecondOfDay() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  double frac = std::chrono::duration<double>(now - std::chrono::system_clock::from_time_t(t)).count();
  return tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec + std::clamp(frac, 0.0, 0.999);
}

BwScheduler::BwScheduler(BwTimetable table, RateLimiter* limiter, std::function<double()> clock)
    : table_(std::move(table)), limiter_(limiter), clock_(std::move(clock)) {}

BwScheduler::~BwScheduler() { Stop(); }

std::chrono::milliseconds BwScheduler::ApplyNow() {
  double now = clock_();
  int sec = static_cast<int>(now);
  limiter_->SetRate(table_.RateAt(sec));
  int to_change = table_.SecondsToChange(sec);
  // At most a minute between looks: the clock may be set, or jump for daylight saving.
  double wait = to_change < 0 ? 60.0 : std::min(60.0, to_change - (now - sec));
  return std::chrono::milliseconds(std::max<int64_t>(1, static_cast<int64_t>(wait * 1000 + 0.5)));
}

void BwScheduler::Start() {
  ApplyNow();
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      lock.unlock();
      auto wait = ApplyNow();
      lock.lock();
      cv_.wait_for(lock, wait, [this] { return stop_; });
    }
  });
}

void BwScheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string BwTimetable::RateText(uint64_t rate) {
  if (rate == 0) return "off";
  char buf[64];
  if (rate % (1 << 20) == 0) {
    std::snprintf(buf, sizeof(buf), "%llu MiB/s", static_cast<unsigned long long>(rate >> 20));
  } else if (rate % 1024 == 0) {
    std::snprintf(buf, sizeof(buf), "%llu KiB/s", static_cast<unsigned long long>(rate >> 10));
  } else {
    std::snprintf(buf, sizeof(buf), "%llu B/s", static_cast<unsigned long long>(rate));
  }
  return buf;
}

std::string BwTimetable::TimeText(int sec_of_day) {
  char buf[16];
  sec_of_day = ((sec_of_day % 86400) + 86400) % 86400;
  if (sec_of_day % 60 == 0) {
    std::snprintf(buf, sizeof(buf), "%02d:%02d", sec_of_day / 3600, sec_of_day / 60 % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%02d:%02d:%02d", sec_of_day / 3600, sec_of_day / 60 % 60, sec_of_day % 60);
  }
  return buf;
}

}  // namespace ingestfs::upload
