// file-logger (priority 399): APISIX's log entry for each request (or for
// those `match` selects), one JSON document per line, appended to `path`.
// Workers only queue the line (plugins/log_sink.h); the control thread
// appends what is queued a few times a second, so a slow disk never holds a
// request. A relative path is relative to Holdfast's working directory.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "plugins/common.h"
#include "plugins/log_entry.h"
#include "plugins/log_sink.h"

namespace holdfast::plugins {
namespace {

struct FileDestination final : logsink::Destination {
  std::string path;

  std::string encode(const std::vector<std::string>& entries) const override {
    std::string out;
    for (const auto& e : entries) {
      out += e;
      out += '\n';
    }
    return out;
  }

  // Control thread: a short append, like the access log's.
  void send(boost::asio::any_io_executor, std::string payload, std::function<void(std::string)> done) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      done("failed to open file: " + path + ", error info: " + std::strerror(errno));
      return;
    }
    std::string_view rest = payload;
    std::string error;
    while (!rest.empty()) {
      ssize_t n = ::write(fd, rest.data(), rest.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error = "failed to write file: " + path + ", error info: " + std::strerror(errno);
        break;
      }
      rest.remove_prefix(static_cast<size_t>(n));
    }
    ::close(fd);
    done(std::move(error));
  }
};

class FileLogger final : public Plugin {
 public:
  logentry::LoggerFields fields;
  std::shared_ptr<const router::Expr> match;
  std::shared_ptr<logsink::Sink> sink;

  void header_filter(RequestCtx& ctx) const override { logentry::header_filter(ctx, fields.opts); }
  void log(RequestCtx& ctx) const override {
    if (match && !match->eval(ctx)) return;
    logsink::push(*sink, logentry::entry_for(ctx, fields, "file-logger"));
  }
};

// APISIX's schema leaves other fields open: they are warned about and ignored.
const FieldRules kFields{.implemented = {"path", "log_format", "include_req_body", "include_req_body_expr", "include_resp_body",
          "include_resp_body_expr", "match"}};
const FieldRules kMetadataFields{.implemented = {"log_format"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<FileLogger>();
  Checker c(conf, "file-logger");
  c.only(kFields.implemented);
  std::string path = c.str("path", true, 1).value_or("");
  logentry::parse_logger_fields(c, "file-logger", p->fields);
  if (const json::array* m = c.array("match")) {
    if (m->size() > 20) {
      c.fail("property \"match\" validation failed: expect array to have at most 20 items");
    } else {
      auto x = router::Expr::compile(*m);
      if (!x) c.fail("failed to validate the 'match' expression: " + x.error());
      else p->match = *x;
    }
  }
  if (c.failed()) return Error{c.error()};
  // Lines leave at the next control-thread tick (no batching delay).
  logsink::Batching b;
  b.name = "file logger";
  b.inactive_timeout = 0;
  b.buffer_duration = 0;
  p->sink = logsink::sink_for("file-logger", json::serialize(conf), b, [path] {
    auto d = std::make_unique<FileDestination>();
    d->path = path;
    return std::unique_ptr<logsink::Destination>(std::move(d));
  });
  return std::shared_ptr<const Plugin>(std::move(p));
}

Result<std::shared_ptr<const Metadata>> metadata(const json::object& value) {
  return logentry::parse_format_metadata(value, "file-logger");
}

}  // namespace

extern const PluginDef kFileLogger{"file-logger", 399, false, &create, nullptr, &metadata, &kFields, &kMetadataFields};

}  // namespace holdfast::plugins
