#include "cloud/store_request.h"

#include <random>

#include "cloud/http_store.h"

namespace holdfast::cloud {
namespace asio = boost::asio;

asio::awaitable<StoreResult<http::ClientResponse>> send_request(asio::any_io_executor ex, http::HttpClient& client,
                                                                CachedToken* tokens, const StoreRequest& req) {
  StoreResult<http::ClientResponse> out;
  std::mt19937 rng{std::random_device{}()};
  bool refreshed = false;
  for (int attempt = 1; attempt <= req.max_attempts; ++attempt) {
    if (req.cancelled && *req.cancelled) co_return StoreResult<http::ClientResponse>{{}, cancelled_error(req.what)};
    std::string token, target;
    http::Headers headers;
    if (tokens) {
      auto t = co_await tokens->get(refreshed && attempt == 1);
      if (!t) {
        // The provider logged why, once.
        out.error = StoreError{StoreErrorKind::no_credentials, "NoCredentials", req.what + ": " + t.error()};
        co_return out;
      }
      token = std::move(*t);
    }
    req.prepare(token, target, headers);
    auto r = co_await client.request(req.method, target, std::move(headers), req.body, req.timeout);
    if (req.cancelled && *req.cancelled) co_return StoreResult<http::ClientResponse>{{}, cancelled_error(req.what)};
    if (!r) {
      out.error = network_error(req.what, r.error());
    } else if (r->status < 300) {
      out.value = std::move(*r);
      co_return out;
    } else {
      out.error = req.error(*r);
      if (tokens && out.error.kind == StoreErrorKind::credentials && !refreshed) {
        // An expired or revoked token: a new one at once, and one more try.
        refreshed = true;
        attempt = 0;
        continue;
      }
      if (!req.retryable(r->status, out.error.code)) co_return out;
    }
    if (attempt == req.max_attempts) break;
    co_await backoff(ex, attempt, rng);
  }
  co_return out;
}

RequestStore::RequestStore(asio::any_io_executor ex, const std::string& endpoint, const char* kind)
    : ex_(std::move(ex)), endpoint_(endpoint), kind_(kind) {
  if (auto u = http::Url::parse(endpoint)) {
    base_ = *u;
    while (!base_.path.empty() && base_.path.back() == '/') base_.path.pop_back();
    base_ok_ = !base_.host.empty();
  }
  if (base_ok_) client_ = std::make_unique<http::HttpClient>(ex_, base_);
}

RequestStore::~RequestStore() = default;

CredentialStats RequestStore::credential_stats() const {
  if (!tokens_) return {};
  return {tokens_->refreshes(), tokens_->refresh_failures()};
}

void RequestStore::cancel() {
  cancelled_ = true;
  if (client_) client_->cancel();
}

asio::awaitable<StoreResult<http::ClientResponse>> RequestStore::send(StoreRequest& req) {
  if (!base_ok_) {
    StoreResult<http::ClientResponse> out;
    out.error.message = std::string("invalid ") + kind_ + " endpoint " + endpoint_;
    co_return out;
  }
  req.cancelled = &cancelled_;
  co_return co_await send_request(ex_, *client_, tokens_.get(), req);
}

}  // namespace holdfast::cloud
