#include "cache/receipts.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_util.h"
#include "common/time_util.h"

namespace ingestfs::cache {

std::string CsvField(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string ReceiptLine(const Receipt& r) {
  return Iso8601Utc(r.time) + "," + CsvField(r.dataset) + "," + CsvField(r.name) + "," + std::to_string(r.size) + "," +
         CsvField(r.sha256) + "," + CsvField(r.job_id) + "," + std::to_string(r.version) + "\n";
}

Status ReceiptLog::Append(const Receipt& r) {
  std::lock_guard<std::mutex> lock(mu_);
  UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + path_);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + path_);
  std::string text = st.st_size == 0 ? std::string(kHeader) + ReceiptLine(r) : ReceiptLine(r);
  RETURN_IF_ERROR(WriteAll(fd.get(), text.data(), text.size(), path_));
  if (::fdatasync(fd.get()) != 0) return Status::FromErrno(errno, "fdatasync " + path_);
  if (st.st_size == 0) return FsyncDir(path_.substr(0, path_.rfind('/')));
  return Status::Ok();
}

}  // namespace ingestfs::cache
