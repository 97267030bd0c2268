// libFuzzer target: the HTTP/1.1 -> HTTP/2 response translation of
// downstream HTTP/2 streams (H1ToH2), on arbitrary bytes split into
// arbitrary writes. Checks that body bytes never exceed what was fed, that
// end() comes at most once, and that nothing is emitted after an error.
#include <cstdint>
#include <string>
#include <string_view>

#include "harness.h"
#include "http/h1_to_h2.h"

using namespace holdfast::http;
using fuzz::check;

namespace {
struct Sink : H1ToH2::Sink {
  int heads = 0, ends = 0, trailer_sets = 0;
  size_t body = 0;
  void head(int status, const std::vector<Header>& fields, bool) override {
    check(status >= 200 && status <= 599);
    for (const auto& f : fields)
      for (char c : f.name) check(!(c >= 'A' && c <= 'Z'));
    ++heads;
  }
  void data(const char*, size_t n) override {
    check(heads == 1 && ends == 0);
    body += n;
  }
  void trailers(const std::vector<Header>&) override { ++trailer_sets; }
  void end() override { ++ends; }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view method = (data[0] & 3) == 0 ? "HEAD" : (data[0] & 3) == 1 ? "POST" : "GET";
  const size_t step = 1 + data[1] % 64;  // the size of each write
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  H1ToH2 c;
  c.reset(method);
  Sink s;
  bool ok = true;
  while (!in.empty() && ok) {
    std::string_view part = in.substr(0, step);
    in.remove_prefix(part.size());
    ok = c.feed(part, s);
  }
  if (ok) c.finish(s);
  check(s.heads <= 1 && s.ends <= 1 && s.trailer_sets <= 1);
  check(s.body <= size);
  if (s.ends == 1 && ok) check(c.done());  // bytes after a whole response are an error
  return 0;
}
