// What the auth plugins (key-auth, basic-auth, jwt-auth, hmac-auth) share: attaching
// the consumer to the request as APISIX's consumer.attach_consumer does, the
// anonymous consumer, the realm schema and query-argument access.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "plugins/common.h"

namespace holdfast::plugins {

// APISIX's attach_consumer: the request is now `consumer`'s ($consumer_name,
// consumer-restriction, consumer plugins), and X-Consumer-Username,
// X-Credential-Identifier and X-Consumer-Custom-ID are set to its values.
// One without a value is removed, so what a client sent under these names
// never reaches the upstream of an authenticated route.
void attach_consumer(RequestCtx& ctx, const Consumer& consumer);

// APISIX's get_anonymous_consumer: the consumer (never a credential) named
// `name`, or null.
const Consumer* anonymous_consumer(const RequestCtx& ctx, const std::string& name);

// How every auth plugin's rewrite ends (APISIX's "authenticate or fall
// back"): `found`, the consumer the request's credential names, or failing
// that the consumer `anonymous` names (when set), is attached and nullptr
// returned. Otherwise the message to answer 401 with: `failure` when no
// anonymous consumer is configured, "Invalid user authorization" when the
// one named does not exist (logged under `plugin`).
const char* authenticate_or_anonymous(RequestCtx& ctx, const Consumer* found, const char* failure,
                                      const std::string& anonymous, std::string_view plugin);

// APISIX's schema_def.get_realm_schema: 1-128 printable ASCII characters
// without `"` and `\`, so the value cannot end the quoted string in
// WWW-Authenticate. Returns `def` when absent; failures go to the checker.
std::string check_realm(Checker& c, const char* def);

// The query argument `name` as core.request.get_uri_args gives it: decoded;
// "" for a bare `?name`; nullopt when absent. Sent twice it is a Lua table
// there, which matches no credential: `several` says so.
std::optional<std::string> query_arg(std::string_view q, std::string_view name, bool& several);
// The query without the `name` argument (hide_credentials). APISIX
// re-encodes the whole table (set_uri_args); the other arguments go on as
// the client sent them here.
std::string without_query_arg(std::string_view q, std::string_view name);

// Compares two secrets in time independent of where they differ (the
// length may show).
bool secret_equal(std::string_view a, std::string_view b);

}  // namespace holdfast::plugins
