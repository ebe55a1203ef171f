// `ingestfs SOURCE MOUNTPOINT [-o opt,...] [-f] [-d]`: the mount (see --help, man ingestfs(1)).
#pragma once

namespace ingestfs::fs {

int RunMountCommand(int argc, char** argv);

}  // namespace ingestfs::fs
