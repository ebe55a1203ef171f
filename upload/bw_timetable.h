// BwTimetable: the upload speed cap by time of day (-o bwlimit=), as labs keep their network
// free in working hours: "10M" caps all day; "08:00@512K/18:00@off" caps at 512 KiB/s from
// 08:00 and lifts the cap at 18:00, every day, the last entry of a day running on past midnight
// into the first of the next. Times are the machine's local time, HH:MM or HH:MM:SS. '/' and
// '@' separate (a comma separates -o options; neither needs quoting in fstab).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "upload/rate_limiter.h"

namespace ingestfs::upload {

class BwTimetable {
 public:
  struct Slot {
    int at = 0;         // seconds since local midnight
    uint64_t rate = 0;  // bytes per second; 0: no cap
  };
  // The option's text; a clear error names what is wrong with it.
  static StatusOr<BwTimetable> Parse(const std::string& text);

  // The cap in force at `sec_of_day` (0 to 86399).
  uint64_t RateAt(int sec_of_day) const;
  // Seconds from `sec_of_day` until the cap next changes (1 to 86400), or -1 when it never does.
  int SecondsToChange(int sec_of_day) const;
  bool constant() const { return slots_.size() <= 1; }
  const std::vector<Slot>& slots() const { return slots_; }
  // "512 KiB/s" or "off".
  static std::string RateText(uint64_t rate);
  // "HH:MM" or "HH:MM:SS".
  static std::string TimeText(int sec_of_day);

 private:
  std::vector<Slot> slots_;  // by time of day; one slot without a time for a constant cap
};

// Seconds since local midnight, with the fraction.
double LocalSecondOfDay();

// Keeps a RateLimiter at the timetable's cap: sets it at Start, then at each change (looking
// at least once a minute), across midnight; a remount starts from the cap in force.
class BwScheduler {
 public:
  // `clock`: seconds since local midnight (a fake one in tests).
  BwScheduler(BwTimetable table, RateLimiter* limiter, std::function<double()> clock = LocalSecondOfDay);
  ~BwScheduler();
  void Start();
  void Stop();
  // Sets the cap in force now; returns how long until the next look.
  std::chrono::milliseconds ApplyNow();

 private:
  BwTimetable table_;
  RateLimiter* limiter_;
  std::function<double()> clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace ingestfs::upload
