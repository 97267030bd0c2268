// traffic-split's weighted upstreams, bound by the snapshot compiler to the
// compiled upstreams they name (the plugin itself never sees a snapshot).
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "model/resources.h"
#include "plugins/plugin.h"

namespace holdfast::plugins::traffic_split {

// One weighted_upstreams entry that names an upstream: by `upstream_id`, or
// inline (`conf`). Entries with neither use the route's upstream and are
// never handed to the resolver.
struct UpstreamRef {
  size_t rule = 0, index = 0;  // 0-based positions in rules[] and weighted_upstreams[]
  std::string upstream_id;     // empty: inline
  std::shared_ptr<const model::Upstream> conf;
};

// The compiled upstream of one entry; null when upstream_id names no
// upstream (the resolver logs it; requests reaching that rule get APISIX's 500).
using Resolve = std::function<std::shared_ptr<snapshot::CompiledUpstream>(const UpstreamRef&)>;

// Binds every traffic-split instance of `chain`, sizing its per-worker
// round-robin state for `workers`. Called by the snapshot compiler on the
// chains it just built, before the snapshot is published: until then the
// compiler is the only user of those instances.
// True when some `vars` of theirs reads the request body (post_arg_*,
// post_arg.*, graphql_*): the snapshot then has bodies read before routing,
// as for route vars.
bool bind(const Chain& chain, int workers, const Resolve& resolve);

}  // namespace holdfast::plugins::traffic_split
