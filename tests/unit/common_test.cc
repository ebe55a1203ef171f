#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/crypto.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/heap_trim.h"
#include "common/log.h"
#include "common/sync_group.h"
#include "tests/support/process.h"
#include "common/names.h"
#include "common/strings.h"
#include "common/time_util.h"

namespace ingestfs {
namespace {

TEST(Names, AcceptsWhatThePlatformAccepts) {
  EXPECT_TRUE(ValidateFileName("plate1/A01.tif").ok());
  EXPECT_TRUE(ValidateFileName("run 42/Zürich ü.csv").ok());
  EXPECT_TRUE(ValidateFileName(std::string(255, 'a')).ok());
  std::string deep;
  for (int i = 0; i < 4; ++i) deep += std::string(250, 'd') + "/";
  deep += "f";
  EXPECT_EQ(deep.size(), 1005u);
  EXPECT_TRUE(ValidateFileName(deep).ok());
}

TEST(Names, RejectsEachBrokenRuleWithAReason) {
  struct Case {
    std::string name;
    std::string why;
  } cases[] = {
      {"", "empty"},
      {"/abs", "empty segment"},
      {"a//b", "empty segment"},
      {"a/", "empty segment"},
      {"a/../b", "'..'"},
      {"./a", "'.'"},
      {std::string("a\0b", 3), "NUL"},
      {"line\nbreak.txt", "control character"},
      {"tab\there", "control character"},
      {"del\x7f", "control character"},
      {std::string(256, 'x'), "longer than 255"},
      {std::string(1025, 'x'), "longer than 1024"},
      {"bad\xff", "UTF-8"},
      {"\xed\xa0\x80", "UTF-8"},  // surrogate
      {"\xc0\xaf", "UTF-8"},      // overlong '/'
  };
  for (const Case& c : cases) {
    Status st = ValidateFileName(c.name);
    EXPECT_FALSE(st.ok()) << c.name;
    EXPECT_NE(st.message().find(c.why), std::string::npos) << st.message();
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
  }
  EXPECT_FALSE(ValidateDatasetName("a/b").ok());
}

// A log file is appended to, and opened again by name after RequestLogReopen (logrotate moved
// it); lines below the level are dropped.
TEST(Log, FileIsReopenedByNameAfterRotationAndLevelsFilter) {
  testing::TempDir dir;
  std::string path = dir / "m.log";
  ASSERT_TRUE(UseLogFile(path).ok());
  SetLogLevel(LogLevel::kWarning);
  LOG_INFO("not shown");
  LOG_WARN("first %d", 1);
  ASSERT_EQ(::rename(path.c_str(), (path + ".1").c_str()), 0);
  LOG_WARN("second, still into the moved file");
  RequestLogReopen();
  LOG_ERROR("third, into a new file");
  SetLogLevel(LogLevel::kInfo);
  UseStderr();
  std::string old = *ReadFileToString(path + ".1"), now = *ReadFileToString(path);
  EXPECT_EQ(old.find("not shown"), std::string::npos) << old;
  EXPECT_NE(old.find(" warning: first 1\n"), std::string::npos) << old;
  EXPECT_NE(old.find("second"), std::string::npos) << old;
  EXPECT_EQ(now.find("second"), std::string::npos) << now;
  EXPECT_NE(now.find(" error: third, into a new file\n"), std::string::npos) << now;
  EXPECT_FALSE(UseLogFile(dir / "no/such/dir/m.log").ok());
  EXPECT_EQ(ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("warning"), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("loud"), std::nullopt);
}

// Under systemd, stderr is the journal when JOURNAL_STREAM names it: lines carry its priority.
TEST(Log, JournalStreamGetsPriorityPrefixes) {
  testing::TempDir dir;
  int saved = ::dup(STDERR_FILENO);
  int fd = ::open((dir / "err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_GE(::dup2(fd, STDERR_FILENO), 0);
  struct stat st {};
  ASSERT_EQ(::fstat(STDERR_FILENO, &st), 0);
  ::setenv("JOURNAL_STREAM", "1:2", 1);
  bool other = StderrIsJournal();
  ::setenv("JOURNAL_STREAM", (std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)).c_str(), 1);
  bool journal = StderrIsJournal();
  ::unsetenv("JOURNAL_STREAM");
  if (journal) UseJournalPrefixes();
  LOG_WARN("to the journal");
  LOG_ERROR("an error");
  UseStderr();
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(fd);
  EXPECT_FALSE(other) << "another stream is not stderr";
  EXPECT_TRUE(journal);
  std::string text = *ReadFileToString(dir / "err");
  EXPECT_EQ(text, "<4>warning: to the journal\n<3>error: an error\n");
}

TEST(Strings, MountTableEscapesAreUndone) {
  EXPECT_EQ(UnescapeOctal("/mnt/lab\\040data"), "/mnt/lab data");
  EXPECT_EQ(UnescapeOctal("a\\011b\\134c\\012"), "a\tb\\c\n");
  EXPECT_EQ(UnescapeOctal("no\\escape \\08 \\1"), "no\\escape \\08 \\1") << "not three octal digits: kept";
  EXPECT_EQ(UnescapeOctal("end\\"), "end\\");
}

TEST(Strings, ControlCharactersAreEscapedSoALineStaysOneLine) {
  EXPECT_EQ(EscapeControl("plain Zürich name.tif"), "plain Zürich name.tif");
  std::string raw = std::string("a\nb\rc\td") + '\x01' + "e" + '\x7f' + '\0';
  EXPECT_EQ(EscapeControl(raw), "a\\nb\\rc\\td\\x01e\\x7f\\x00");
  Status st = ValidateFileName("evil\nname");
  EXPECT_EQ(st.message().find('\n'), std::string::npos) << "the message names it on one line";
  EXPECT_NE(st.message().find("evil\\nname"), std::string::npos) << st.message();
}

// Every JSON text the project reads (platform answers, request bodies, journal and catalogue
// records) goes through json::Parse. A deeply nested text overflowed the stack of RapidJSON's
// recursive parser (and of a Value's destructor): a million levels must be an error, not a crash.
TEST(Json, AMillionLevelsOfNestingIsAnErrorNotACrash) {
  for (const std::string& open : {std::string("["), std::string("{\"a\":")}) {
    std::string deep;
    for (int i = 0; i < 1000000; ++i) deep += open;
    auto doc = json::Parse(deep, "the answer");
    ASSERT_FALSE(doc.ok());
    EXPECT_NE(doc.status().message().find("nested deeper than"), std::string::npos) << doc.status().message();
    EXPECT_NE(doc.status().message().find("the answer"), std::string::npos) << doc.status().message();
  }
  std::string ok;
  for (size_t i = 0; i < json::kMaxDepth; ++i) ok += "[";
  ok += "1";
  for (size_t i = 0; i < json::kMaxDepth; ++i) ok += "]";
  EXPECT_TRUE(json::Parse(ok, "the answer").ok()) << "the limit itself is allowed";
  EXPECT_FALSE(json::Parse("[" + ok + "]", "the answer").ok()) << "one more is not";
  EXPECT_TRUE(json::Parse(R"({"items":[{"name":"a","size":1}],"total":1})", "x").ok());
  EXPECT_FALSE(json::Parse(R"({"items":[)", "x").ok());
}

TEST(Strings, UriEncodeFollowsSigV4) {
  EXPECT_EQ(UriEncode("a b/c~d_e.f-g", true), "a%20b/c~d_e.f-g");
  EXPECT_EQ(UriEncode("a b/c", false), "a%20b%2Fc");
  EXPECT_EQ(UriEncode("ü+=", false), "%C3%BC%2B%3D");
  EXPECT_EQ(*UriDecode("a%20b%2Fc+"), "a b/c+");
  EXPECT_FALSE(UriDecode("%4").ok());
  EXPECT_FALSE(UriDecode("%zz").ok());
}

TEST(Strings, RedactUrlCutsTheSecretPart) {
  EXPECT_EQ(RedactUrl("http://127.0.0.1:9/ingest/k?X-Amz-Signature=abc&X-Amz-Credential=x"),
            "http://127.0.0.1:9/ingest/k?…");
  EXPECT_EQ(RedactUrl("https://user:pw@host/p"), "https://host/p");
  EXPECT_EQ(RedactUrl("http://h/p"), "http://h/p");
  EXPECT_EQ(RedactSecret("abcdefgh"), "abcd…");
}

TEST(Strings, PlainUrlIsThePlaceOnly) {
  EXPECT_EQ(PlainUrl("https://lab:pw@platform.example.org:8443/api?token=abc#x"), "https://platform.example.org:8443/api");
  EXPECT_EQ(PlainUrl("http://127.0.0.1:8080/api"), "http://127.0.0.1:8080/api");
  EXPECT_EQ(PlainUrl("http://h/a#frag"), "http://h/a");
  EXPECT_EQ(EscapeFuseOpt("http://h/a,b\\c"), "http://h/a\\,b\\\\c");
}

TEST(Strings, ParseDuration) {
  EXPECT_EQ(ParseDuration("90"), 90.0);
  EXPECT_EQ(ParseDuration("30s"), 30.0);
  EXPECT_EQ(ParseDuration("30m"), 1800.0);
  EXPECT_EQ(ParseDuration("1.5h"), 5400.0);
  EXPECT_EQ(ParseDuration("7d"), 7 * 86400.0);
  for (const char* bad : {"", "h", "-1m", "5x", "1 h", "m5"}) EXPECT_FALSE(ParseDuration(bad)) << bad;
}

TEST(Strings, ParseSize) {
  EXPECT_EQ(*ParseSize("8MiB"), 8u << 20);
  EXPECT_EQ(*ParseSize("8M"), 8u << 20);
  EXPECT_EQ(*ParseSize("512k"), 512u << 10);
  EXPECT_EQ(*ParseSize("1G"), 1ull << 30);
  EXPECT_EQ(*ParseSize("123"), 123u);
  EXPECT_FALSE(ParseSize("-1").ok());
  EXPECT_FALSE(ParseSize("12Q").ok());
  EXPECT_FALSE(ParseSize("").ok());
  EXPECT_FALSE(ParseSize("99999999999999999999T").ok());
}

TEST(Crypto, KnownDigestsAndBase64) {
  EXPECT_EQ(HexEncode(Sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HexEncode(Md5("The quick brown fox jumps over the lazy dog")), "9e107d9d372bb6826bd81d3542a419d6");
  EXPECT_EQ(Base64Encode(Md5("")), "1B2M2Y8AsgTpgAmY7PhCfg==");
  EXPECT_EQ(*Base64Decode("1B2M2Y8AsgTpgAmY7PhCfg=="), Md5(""));
  EXPECT_FALSE(Base64Decode("abc").ok());
  EXPECT_FALSE(Base64Decode("ab!=").ok());
  std::string u = RandomUuid();
  EXPECT_EQ(u.size(), 36u);
  EXPECT_EQ(u[14], '4');
}

TEST(Crypto, DigestRangeReadsTheRangeAndSaysWhenTheFileIsShorter) {
  testing::TempDir dir;
  std::string path = dir / "f";
  std::string body(3 * (1 << 20) + 5, 'x');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 7);
  ASSERT_TRUE(WriteFileAtomic(path, body).ok());
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  for (auto [off, len] : std::vector<std::pair<uint64_t, uint64_t>>{{0, 0}, {0, 1}, {10, 4096}, {5, (2 << 20) + 3},
                                                                    {0, body.size()}}) {
    Digest d(Digest::Kind::kMd5);
    auto n = DigestRange(fd.get(), off, len, d, path);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, len);
    EXPECT_EQ(d.Finish(), Md5(body.substr(off, len))) << off << "+" << len;
  }
  Digest d(Digest::Kind::kSha256);
  auto n = DigestRange(fd.get(), body.size() - 3, 100, d, path);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(d.Finish(), Sha256(body.substr(body.size() - 3)));
  EXPECT_EQ(*Sha256FileHex(path), HexEncode(Sha256(body)));
  ASSERT_TRUE(WriteFileAtomic(path, "").ok());
  EXPECT_EQ(*Sha256FileHex(path), HexEncode(Sha256("")));
}

TEST(SyncGroup, EveryCallerReturnsAfterASyncThatCoversItsWrite) {
  testing::TempDir dir;
  std::string path = dir / "log";
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  ASSERT_TRUE(fd.valid());
  SyncGroup group(fd.get(), true, path);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        std::string line = std::to_string(t) + ":" + std::to_string(i) + "\n";
        if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) return;
        if (group.Sync().ok()) ok++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 160);
  std::string text = *ReadFileToString(path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 160);

  // A failing sync is every waiting caller's error, naming the file.
  SyncGroup broken(-1, true, "the metadata log");
  Status st = broken.Sync();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("the metadata log"), std::string::npos);

  auto d = DurableDir::Open(dir.path());
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE((*d)->Sync().ok());
  EXPECT_FALSE(DurableDir::Open(dir / "missing").ok());
}

TEST(HeapTrimmer, TrimsAfterFreesAndOnceMoreThenRests) {
  HeapTrimmer trimmer(std::chrono::milliseconds(20));
  trimmer.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  EXPECT_EQ(trimmer.trims(), 0u) << "an idle process does no work";
  trimmer.Freed(1000);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (trimmer.trims() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(trimmer.trims(), 2u) << "one trim for the frees, one a period later";
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(trimmer.trims(), 2u) << "then it rests until something is freed again";
  trimmer.Stop();
  trimmer.Stop();  // twice is harmless
}

TEST(Time, AmzDateRoundTrip) {
  EXPECT_EQ(AmzDate(1369353600), "20130524T000000Z");
  EXPECT_EQ(*ParseAmzDate("20130524T000000Z"), 1369353600);
  EXPECT_FALSE(ParseAmzDate("2013-05-24").has_value());
  EXPECT_EQ(Iso8601Utc(1369353600), "2013-05-24T00:00:00Z");
  EXPECT_EQ(*ParseIso8601Utc("2013-05-24T00:00:00.123Z"), 1369353600);
}

}  // namespace
}  // namespace ingestfs
