// The budgets every configuration input is held to, in one place: the file
// source, etcd values, S3 snapshots and the local cache, the Admin API body
// and config.yaml. Input beyond them is refused before it can cost memory
// or stack out of proportion to its size (a 1 KiB YAML alias bomb, a
// deeply nested value), and the previous configuration stays.
#pragma once
#include <boost/json/value.hpp>

#include <cstddef>
#include <string_view>

#include "core/status.h"

namespace holdfast::budgets {

// A whole document: a standalone file, a snapshot object, the cache file.
inline constexpr size_t kMaxDocumentBytes = 64u << 20;
// APISIX's MAX_REQ_BODY in apisix/admin/init.lua (also etcd's default
// --max-request-bytes, so a larger value could not be stored anyway).
inline constexpr size_t kMaxAdminBodyBytes = 1536u * 1024;
// Nesting levels of one resource (a route, a consumer, ...): the resource
// object itself is level 1. Checked where a resource enters (Admin API,
// etcd value); a document that carries resources is parsed at this limit
// plus its own wrapper depth, so whatever one source accepts every other
// source accepts too.
inline constexpr size_t kMaxResourceDepth = 64;
// YAML aliases may expand a document to at most this many times the nodes
// that were parsed (checked as the expansion grows).
inline constexpr size_t kAliasExpansionFactor = 10;

// Wrapper depths of the documents that carry resources.
inline constexpr size_t kStandaloneWrapper = 2;  // {"routes": [ <resource> ]}
inline constexpr size_t kCacheWrapper = 3;       // {"resources": {"routes": [ <resource> ]}}

struct Document {
  size_t max_bytes = kMaxDocumentBytes;
  size_t max_depth = kMaxResourceDepth;  // nesting levels of the whole document
  size_t alias_factor = kAliasExpansionFactor;
};

// The budget of a document whose resources sit `wrapper` levels deep.
constexpr Document document(size_t wrapper) { return Document{kMaxDocumentBytes, kMaxResourceDepth + wrapper, kAliasExpansionFactor}; }
// One resource on its own (an etcd value, an Admin API body).
constexpr Document resource(size_t max_bytes = kMaxDocumentBytes) {
  return Document{max_bytes, kMaxResourceDepth, kAliasExpansionFactor};
}

// Parses JSON within `b` (size first, then depth while parsing). Errors name
// the budget that was exceeded; allocation failure is an error, not a throw.
Result<boost::json::value> parse_json(std::string_view text, const Document& b);

// Nesting levels of `v` (a scalar is 0, `{}` and `[]` are 1), counted up to
// `stop` at most so that a caller never walks further than it needs to.
size_t depth(const boost::json::value& v, size_t stop = kMaxResourceDepth + 1);

// A resource assembled after parsing (a PATCH merged into a stored value)
// must still fit the per-resource limit.
Status check_resource_depth(const boost::json::value& v);
Status check_resource_depth(const boost::json::object& o);

}  // namespace holdfast::budgets
