// What the object stores that speak HTTP (S3, Azure Blob) share around their
// own signing and error parsing: a GET's answer as a stored object, a PUT's
// conditions and new version, the network error and the back-off between
// attempts. Control thread only.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <random>
#include <string>

#include "cloud/object_store.h"
#include "http/client.h"

namespace holdfast::cloud {

// A GET's answer: the body, versioned by its ETag.
StoreResult<StoredObject> stored_object(StoreResult<http::ClientResponse> r);
// A PUT's answer: the new ETag.
StoreResult<std::string> new_version(StoreResult<http::ClientResponse> r);
// create_only as If-None-Match: *, replace_version as If-Match: <ETag>.
void add_condition(http::Headers& h, const WriteCondition& cond);
// A request that got no answer; `timeout` when the client missed its deadline.
StoreError network_error(const std::string& what, const std::string& client_error);
// What a cancelled store answers.
StoreError cancelled_error(const std::string& what);
// The wait after a failed attempt (1, 2, ...): exponential back-off with
// jitter, 50-100 ms, 100-200 ms, 200-400 ms ...
boost::asio::awaitable<void> backoff(boost::asio::any_io_executor ex, int attempt,
                                     std::mt19937& rng);

}  // namespace holdfast::cloud
