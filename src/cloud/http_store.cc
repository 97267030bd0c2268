#include "cloud/http_store.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <string_view>

namespace holdfast::cloud {
namespace asio = boost::asio;

StoreResult<StoredObject> stored_object(StoreResult<http::ClientResponse> r) {
  StoreResult<StoredObject> out;
  if (!r.ok()) {
    out.error = std::move(r.error);
    return out;
  }
  StoredObject o;
  o.version = r.value->header("etag");
  o.body = std::move(r.value->body);
  out.value = std::move(o);
  return out;
}

StoreResult<std::string> new_version(StoreResult<http::ClientResponse> r) {
  StoreResult<std::string> out;
  if (!r.ok())
    out.error = std::move(r.error);
  else
    out.value = r.value->header("etag");
  return out;
}

void add_condition(http::Headers& h, const WriteCondition& cond) {
  if (cond.kind == WriteCondition::Kind::create_only) h.emplace_back("if-none-match", "*");
  if (cond.kind == WriteCondition::Kind::replace_version) h.emplace_back("if-match", cond.version);
}

StoreError network_error(const std::string& what, const std::string& client_error) {
  // The HTTP client ends a message about a missed deadline with "timed out".
  const bool timed_out = std::string_view(client_error).ends_with("timed out");
  return StoreError{timed_out ? StoreErrorKind::timeout : StoreErrorKind::transient, "NetworkError",
                    what + ": " + client_error};
}

StoreError cancelled_error(const std::string& what) {
  return StoreError{StoreErrorKind::cancelled, "Cancelled", what + ": cancelled (shutting down)"};
}

asio::awaitable<void> backoff(asio::any_io_executor ex, int attempt, std::mt19937& rng) {
  const int64_t cap = 100LL << (attempt - 1);
  asio::steady_timer timer(ex);
  timer.expires_after(
      std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(cap / 2, cap)(rng)));
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
}

}  // namespace holdfast::cloud
