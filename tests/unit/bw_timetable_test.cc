// The upload cap's timetable (-o bwlimit=): parsing, the cap in force at each time of day
// (across midnight), and the scheduler that keeps a RateLimiter at it, on a fake clock.
#include <gtest/gtest.h>

#include "upload/bw_timetable.h"
#include "upload/rate_limiter.h"

namespace ingestfs::upload {
namespace {

constexpr int H = 3600;

TEST(BwTimetable, AConstantRateOrATimetable) {
  auto c = BwTimetable::Parse("10M");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->constant());
  EXPECT_EQ(c->RateAt(0), 10u << 20);
  EXPECT_EQ(c->SecondsToChange(5), -1);

  auto t = BwTimetable::Parse("18:00@off/08:00@512K/12:30:15@2M");  // any order
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_FALSE(t->constant());
  EXPECT_EQ(t->RateAt(7 * H), 0u) << "before the day's first entry: the day before's last (off)";
  EXPECT_EQ(t->RateAt(8 * H), 512u << 10);
  EXPECT_EQ(t->RateAt(12 * H + 30 * 60 + 14), 512u << 10);
  EXPECT_EQ(t->RateAt(12 * H + 30 * 60 + 15), 2u << 20);
  EXPECT_EQ(t->RateAt(18 * H), 0u);
  EXPECT_EQ(t->RateAt(86399), 0u);
  EXPECT_EQ(t->SecondsToChange(7 * H), H);
  EXPECT_EQ(t->SecondsToChange(8 * H), 4 * H + 30 * 60 + 15);
  EXPECT_EQ(t->SecondsToChange(23 * H), 9 * H) << "across midnight";
  EXPECT_EQ(BwTimetable::TimeText(12 * H + 30 * 60 + 15), "12:30:15");
  EXPECT_EQ(BwTimetable::TimeText(8 * H), "08:00");
  EXPECT_EQ(BwTimetable::RateText(512u << 10), "512 KiB/s");
  EXPECT_EQ(BwTimetable::RateText(0), "off");

  auto night = BwTimetable::Parse("22:00@50M/06:00@1M");  // a cap that runs over midnight
  ASSERT_TRUE(night.ok());
  EXPECT_EQ(night->RateAt(23 * H), 50u << 20);
  EXPECT_EQ(night->RateAt(2 * H), 50u << 20);
  EXPECT_EQ(night->RateAt(6 * H), 1u << 20);
}

TEST(BwTimetable, BadTimetablesAreClearErrors) {
  for (const char* bad : {"fast", "100", "8:00@1M", "08:00", "08:00@", "08:00@fast", "24:00@1M", "08:60@1M",
                          "08:00@1M/08:00@2M", "08:00@1M//18:00@off", "08:00:5@1M", "08-00@1M", "@1M"}) {
    auto t = BwTimetable::Parse(bad);
    EXPECT_FALSE(t.ok()) << bad;
    if (!t.ok()) {
      EXPECT_EQ(t.status().message().rfind(std::string("bwlimit=") + bad, 0), 0u) << t.status().message();
    }
  }
}

TEST(BwScheduler, KeepsTheLimiterAtTheCapInForceOnAFakeClock) {
  auto t = BwTimetable::Parse("08:00@512K/18:00@off");
  ASSERT_TRUE(t.ok());
  RateLimiter limiter(0);
  double now = 7 * H + 59 * 60 + 59.5;  // half a second before 08:00
  BwScheduler s(*t, &limiter, [&now] { return now; });
  EXPECT_EQ(s.ApplyNow(), std::chrono::milliseconds(500)) << "wakes at the change, not a second late";
  EXPECT_EQ(limiter.rate(), 0u);
  now = 8 * H;
  EXPECT_EQ(s.ApplyNow(), std::chrono::milliseconds(60000)) << "looks again within a minute";
  EXPECT_EQ(limiter.rate(), 512u << 10);
  now = 17 * H + 59 * 60 + 30;
  EXPECT_EQ(s.ApplyNow(), std::chrono::milliseconds(30000));
  now = 23 * H + 59 * 60 + 59.9;  // just before midnight, still off until 08:00
  s.ApplyNow();
  EXPECT_EQ(limiter.rate(), 0u);
  now = 0.2;
  s.ApplyNow();
  EXPECT_EQ(limiter.rate(), 0u);
}

TEST(RateLimiter, NoCapTakesAtOnceAndANewCapHolds) {
  RateLimiter l(0);
  EXPECT_EQ(l.Take(1 << 20), 1u << 20);
  l.SetRate(64 << 10);
  EXPECT_LE(l.Take(1 << 20), 16384u) << "a quarter second's burst, at least 16 KiB";
  EXPECT_EQ(l.rate(), 64u << 10);
}

}  // namespace
}  // namespace ingestfs::upload
