// traffic-split (priority 966): sends a request to one of a rule's weighted
// upstreams (APISIX's canary release). The first rule whose `match` passes
// (any one of its `vars` expressions) picks among its weighted_upstreams by
// weighted round-robin; an entry without an upstream stands for the route's
// own. The upstreams are compiled into the snapshot (traffic_split.h).
#include "plugins/traffic_split.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <numeric>

#include "plugins/common.h"

namespace holdfast::plugins::traffic_split {
namespace {

struct Target {
  std::string upstream_id;                      // a reference, or
  std::shared_ptr<const model::Upstream> conf;  // an inline upstream, or neither: the route's own
  int64_t weight = 1;
  std::shared_ptr<snapshot::CompiledUpstream>
      compiled;  // set by bind(); null: the route's (or missing)
};

// lua-resty-balancer's roundrobin, which APISIX builds over a rule's
// weighted upstreams: nginx's interleaved weighted round-robin (current
// weight stepping down by the weights' gcd). Over every sum(weight)/gcd
// picks each entry is chosen weight/gcd times. APISIX starts each worker
// at a random entry; here every worker starts at the first, so the order
// is reproducible.
struct RoundRobin {
  std::vector<int64_t> weights;
  int64_t gcd = 0, max_weight = 0;
  struct alignas(64) State {
    int last = -1;
    int64_t cw = 0;
  };
  mutable std::vector<State> state;  // one per worker: no sharing, no locks

  void init(int workers) {
    gcd = max_weight = 0;
    for (int64_t w : weights) {
      gcd = std::gcd(gcd, w);
      max_weight = std::max(max_weight, w);
    }
    state.assign(static_cast<size_t>(std::max(workers, 1)), State{-1, max_weight});
  }
  size_t pick(int worker) const {
    const int n = static_cast<int>(weights.size());
    if (n == 1) return 0;  // APISIX's only_key: whatever its weight
    State& s = state[static_cast<size_t>(worker) % state.size()];
    // Every weight 0: cw stays 0 and every entry qualifies in turn (as in
    // Lua); otherwise cw never reaches 0, so a weight-0 entry is never picked.
    for (;;) {
      while (++s.last < n)
        if (weights[static_cast<size_t>(s.last)] >= s.cw) return static_cast<size_t>(s.last);
      s.last = -1;
      s.cw -= gcd;
      if (s.cw <= 0) s.cw = max_weight;
    }
  }
};

struct Rule {
  bool has_match = false;
  std::vector<std::shared_ptr<const router::Expr>>
      match;  // any one passing is enough; null: no vars (passes)
  std::vector<Target> targets;
  RoundRobin rr;
  std::string missing_id;         // an upstream_id that names no upstream (set by bind)
  std::vector<json::value> vars;  // match[i].vars as written (null: none), until compiled
};

class TrafficSplit final : public Plugin {
 public:
  std::vector<Rule> rules;

  Action access(RequestCtx& ctx) const override {
    const Rule* chosen = nullptr;
    for (size_t i = 0; i < rules.size(); ++i) {
      const Rule& rule = rules[i];
      // APISIX checks each rule's upstream_ids before trying its match,
      // until a rule passes.
      if (!rule.missing_id.empty()) {
        ctx.respond(500, "failed to fetch upstream info by upstream id: " + rule.missing_id, "");
        return Action::respond;
      }
      bool pass = true;
      if (rule.has_match) {
        // An empty `match` leaves APISIX's match_passed as the previous rule
        // left it: true only when it is the first rule.
        pass = rule.match.empty() && i == 0;
        for (const auto& e : rule.match)
          if (!e || e->eval(ctx)) {
            pass = true;
            break;
          }
      }
      if (pass) {
        chosen = &rule;
        break;
      }
    }
    if (!chosen) return Action::next;
    const Target& t = chosen->targets[chosen->rr.pick(ctx.worker)];
    ctx.upstream_override = t.compiled.get();
    return Action::next;
  }
};

std::string item_error(std::string_view key, size_t index, const std::string& why) {
  return fmt::format("property \"{}\" validation failed: failed to validate item {}: {}", key,
                     index + 1, why);
}

// One weighted_upstreams entry, with APISIX's schema messages.
Result<Target> parse_target(const json::value& v) {
  if (!v.is_object()) return Error{"wrong type: expected object, got " + model::type_name(v)};
  const json::object& o = v.as_object();
  Checker c(o, "weighted_upstreams");
  Target t;
  if (const json::value* id = o.if_contains("upstream_id")) {
    auto parsed = model::parse_id(*id);
    if (!parsed)
      return Error{
          "property \"upstream_id\" validation failed: object matches none of the required"};
    t.upstream_id = *parsed;
  }
  if (const json::value* up = o.if_contains("upstream")) {
    auto parsed = model::parse_upstream(*up, true);
    if (!parsed) return Error{"property \"upstream\" validation failed: " + parsed.error()};
    // APISIX takes the reference when both are given (new_rr_obj).
    if (t.upstream_id.empty()) t.conf = *parsed;
  }
  t.weight = c.integer("weight", false, 0).value_or(1);
  if (c.failed()) return Error{c.error()};
  return t;
}

Result<Rule> parse_rule(const json::value& v) {
  if (!v.is_object()) return Error{"wrong type: expected object, got " + model::type_name(v)};
  const json::object& o = v.as_object();
  Rule rule;
  if (const json::value* m = o.if_contains("match")) {
    if (!m->is_array())
      return Error{"property \"match\" validation failed: wrong type: expected array, got " +
                   model::type_name(*m)};
    rule.has_match = true;
    const json::array& items = m->as_array();
    for (size_t j = 0; j < items.size(); ++j) {
      if (!items[j].is_object())
        return Error{item_error("match", j,
                                "wrong type: expected object, got " + model::type_name(items[j]))};
      const json::value* vars = items[j].as_object().if_contains("vars");
      if (!vars) {
        rule.match.push_back(nullptr);  // lua-resty-expr without a rule: passes
        rule.vars.emplace_back();
        continue;
      }
      if (!vars->is_array())
        return Error{
            item_error("match", j,
                       "property \"vars\" validation failed: wrong type: expected array, got " +
                           model::type_name(*vars))};
      // Compiled after the whole schema check (create), as APISIX does.
      rule.match.push_back(nullptr);
      rule.vars.push_back(*vars);
    }
  }
  if (const json::value* w = o.if_contains("weighted_upstreams")) {
    if (!w->is_array())
      return Error{
          "property \"weighted_upstreams\" validation failed: wrong type: expected array, got " +
          model::type_name(*w)};
    const json::array& items = w->as_array();
    if (items.empty())
      return Error{
          "property \"weighted_upstreams\" validation failed: expect array to have at least 1 "
          "items"};
    if (items.size() > 20)
      return Error{
          "property \"weighted_upstreams\" validation failed: expect array to have at most 20 "
          "items"};
    for (size_t j = 0; j < items.size(); ++j) {
      auto t = parse_target(items[j]);
      if (!t) return Error{item_error("weighted_upstreams", j, t.error())};
      // APISIX's roundrobin is keyed by upstream_id (and one key for "the
      // route's upstream"): a repeated key is one entry, the last weight wins.
      bool merged = false;
      if (!t->conf)
        for (auto& prev : rule.targets)
          if (!prev.conf && prev.upstream_id == t->upstream_id) {
            prev.weight = t->weight;
            merged = true;
          }
      if (!merged) rule.targets.push_back(std::move(*t));
    }
  } else {
    rule.targets.push_back(Target{});  // APISIX's default: [{weight = 1}], the route's upstream
  }
  return rule;
}

const FieldRules kMatch{.implemented = {"vars"}};
// `upstream` is checked whole by the upstream parser (APISIX's upstream
// schema is closed).
const FieldRules kWeighted{.implemented = {"upstream_id", "upstream", "weight"}};
const FieldRules kRule{.implemented = {"match", "weighted_upstreams"},
                       .nested = {{"match", &kMatch}, {"weighted_upstreams", &kWeighted}}};
const FieldRules kFields{.implemented = {"rules"}, .nested = {{"rules", &kRule}}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<TrafficSplit>();
  Checker c(conf, "traffic-split");
  if (const json::array* rules = c.array("rules")) {
    for (size_t i = 0; i < rules->size(); ++i) {
      auto r = parse_rule((*rules)[i]);
      if (!r) return Error{item_error("rules", i, r.error())};
      p->rules.push_back(std::move(*r));
    }
  }
  if (c.failed()) return Error{c.error()};
  // APISIX checks the expressions after its schema, with no property path
  // (Expr's errors carry APISIX's prefix).
  for (auto& r : p->rules) {
    for (size_t j = 0; j < r.vars.size(); ++j) {
      if (r.vars[j].is_null()) continue;
      auto e = router::Expr::compile(r.vars[j]);
      if (!e) {
        std::string why = e.error();
        if (!why.starts_with(router::kVarsError)) why = std::string(router::kVarsError) + why;
        return Error{why};
      }
      r.match[j] = *e;
    }
    r.vars.clear();
  }
  for (auto& r : p->rules) {
    for (const auto& t : r.targets) r.rr.weights.push_back(t.weight);
    r.rr.init(1);  // bind() sizes it for the workers
  }
  return std::shared_ptr<const Plugin>(std::move(p));
}

}  // namespace

bool bind(const Chain& chain, int workers, const Resolve& resolve) {
  bool reads_body = false;
  for (const auto& e : chain.entries) {
    auto* ts = dynamic_cast<const TrafficSplit*>(e.plugin.get());
    if (!ts) continue;
    // Not yet shared with any worker (see the header).
    auto& rules = const_cast<TrafficSplit*>(ts)->rules;
    for (size_t i = 0; i < rules.size(); ++i) {
      Rule& rule = rules[i];
      rule.missing_id.clear();
      for (size_t j = 0; j < rule.targets.size(); ++j) {
        Target& t = rule.targets[j];
        if (t.upstream_id.empty() && !t.conf) continue;  // the route's own
        t.compiled = resolve(UpstreamRef{i, j, t.upstream_id, t.conf});
        if (!t.compiled && rule.missing_id.empty()) rule.missing_id = t.upstream_id;
      }
      rule.rr.init(workers);
      for (const auto& e : rule.match)
        if (e && (e->reads("post_arg") || e->reads("graphql_"))) reads_body = true;
    }
  }
  return reads_body;
}

}  // namespace holdfast::plugins::traffic_split

namespace holdfast::plugins {
extern const PluginDef kTrafficSplit{
    "traffic-split", 966, false, &traffic_split::create, nullptr, nullptr, &traffic_split::kFields};
}  // namespace holdfast::plugins
