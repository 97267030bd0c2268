// `holdfast snapshot inspect|verify|pull|push`: operator commands against
// the fallback buckets configured in config.yaml.
#pragma once

namespace holdfast::cli {

// argv starts after "snapshot". Returns the process exit code.
int snapshot_main(int argc, char** argv);

}  // namespace holdfast::cli
