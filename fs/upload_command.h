// `ingestfs upload`: the upload engine as a command (see --help, man ingestfs(1)).
#pragma once

namespace ingestfs::fs {

// argv[0] is "upload". Returns the process exit code: 0 when every file is confirmed by the
// platform, 1 when any failed, 2 for a usage error.
int RunUploadCommand(int argc, char** argv);

}  // namespace ingestfs::fs
