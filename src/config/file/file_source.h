// Standalone provider: apisix.yaml / apisix.json beside config.yaml, checked
// every second; YAML is applied only when it ends with #END.
#pragma once
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/value.hpp>

#include <string>

#include "config/manager.h"
#include "core/status.h"

namespace holdfast::config {

// Reads and parses a standalone file (env substitution, #END check).
Result<boost::json::value> read_standalone(const std::string& path, bool yaml);

class FileSource {
 public:
  FileSource(boost::asio::io_context& io, Manager& mgr, std::string path, bool yaml);
  void start();   // loads now, then polls every second
  bool check();   // one poll; true when a new document was applied
  void stop();    // no further polls (shutdown)

 private:
  void schedule();
  boost::asio::steady_timer timer_;
  Manager& mgr_;
  std::string path_;
  bool yaml_;
  std::string last_stamp_;
  std::string last_error_;
  bool stopped_ = false;
};

}  // namespace holdfast::config
