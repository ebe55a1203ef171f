// ingestfs: the command. `ingestfs upload ...` uploads through the engine; status, wait, retry
// and unmount talk to a running mount; anything else is the mount itself.
#include <cstring>
#include <iostream>
#include <string>

#include "fs/control.h"
#include "fs/mount_command.h"
#include "fs/upload_command.h"

namespace {
constexpr char kUsage[] = R"(Usage: ingestfs SOURCE MOUNTPOINT [-o option,...] [-f] [-d]
       ingestfs upload [options] FILE...
       ingestfs status|wait|retry|unmount MOUNTPOINT

  ingestfs SOURCE MOUNTPOINT   mount the platform (ingestfs --help for the options)
  ingestfs upload              upload files and wait until the platform confirms them
                               (ingestfs upload --help)
  ingestfs status MOUNTPOINT   what the mount still has to upload (--json)
  ingestfs wait MOUNTPOINT     wait until everything is uploaded (--timeout S; exit 1 if any failed
                               or was interrupted)
  ingestfs retry MOUNTPOINT    put failed files back in the queue; --accept-partial PATH uploads
                               what an interrupted file holds (ingestfs retry --help)
  ingestfs unmount MOUNTPOINT  unmount once nothing is left to upload (--wait [--timeout S]
                               to drain first, --force to unmount anyway; ingestfs unmount --help)
)";
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "upload") return ingestfs::fs::RunUploadCommand(argc - 1, argv + 1);
  if (cmd == "status" || cmd == "wait" || cmd == "retry" || cmd == "unmount") return ingestfs::fs::RunControlCommand(argc - 1, argv + 1);
  // Everything else is the mount, so that mount(8) and fstab can call `ingestfs SOURCE MP -o ...`.
  return ingestfs::fs::RunMountCommand(argc, argv);
}
