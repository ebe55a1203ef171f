// ingestfs: the command. `ingestfs upload ...` uploads through the engine; the mount comes next.
#include <cstring>
#include <iostream>
#include <string>

#include "fs/upload_command.h"

namespace {
constexpr char kUsage[] = R"(Usage: ingestfs COMMAND [options]

Commands:
  upload    upload files to the platform and wait until it confirms them
            (ingestfs upload --help)

Options:
  -h, --help     this text
  --version      the version
)";
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help") {
    std::cout << kUsage;
    return 0;
  }
  if (cmd == "--version") {
    std::cout << "ingestfs " << INGESTFS_VERSION << "\n";
    return 0;
  }
  if (cmd == "upload") return ingestfs::fs::RunUploadCommand(argc - 1, argv + 1);
  std::cerr << "ingestfs: unknown command '" << cmd << "'\n" << kUsage;
  return 2;
}
