#include "router/expr.h"

#include <boost/json.hpp>
#include <cstdlib>

#include "core/log.h"
#include "core/user_regex.h"
#include "router/ipmatch.h"

namespace holdfast::router {
namespace json = boost::json;

enum class Op { eq, ne, gt, ge, lt, le, re, re_i, in, has, ipmatch };
enum class Logic { and_, or_ };

struct Expr::Node {
  // group
  bool is_group = false;
  Logic logic = Logic::and_;
  bool negate = false;
  std::vector<std::unique_ptr<Node>> children;
  // condition
  std::string var;
  Op op = Op::eq;
  json::value rhs;
  std::shared_ptr<const UserRegex> re;
  IpMatcher ips;
};

namespace {

std::optional<double> to_number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::string tmp(s);
  char* end = nullptr;
  double d = std::strtod(tmp.c_str(), &end);
  if (!end || *end != '\0') return std::nullopt;
  return d;
}

std::optional<double> json_number(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.as_int64());
  if (v.is_uint64()) return static_cast<double>(v.as_uint64());
  if (v.is_double()) return v.as_double();
  if (v.is_string()) return to_number(v.as_string());
  return std::nullopt;
}

std::string json_to_string(const json::value& v) {
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_bool()) return v.as_bool() ? "true" : "false";
  if (v.is_null()) return "";
  return json::serialize(v);
}

Result<Op> parse_op(std::string op) {
  for (auto& c : op) c = static_cast<char>(tolower(c));
  if (op == "==") return Op::eq;
  if (op == "~=") return Op::ne;
  if (op == ">") return Op::gt;
  if (op == ">=") return Op::ge;
  if (op == "<") return Op::lt;
  if (op == "<=") return Op::le;
  if (op == "~~") return Op::re;
  if (op == "~*") return Op::re_i;
  if (op == "in") return Op::in;
  if (op == "has") return Op::has;
  if (op == "ipmatch") return Op::ipmatch;
  return Error{"failed to validate the 'vars' expression: invalid operator '" + op + "'"};
}

bool is_logic_word(const json::value& v, Logic& logic, bool& negate) {
  if (!v.is_string()) return false;
  std::string s(v.as_string());
  for (auto& c : s) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));  // "or" == "OR"
  if (s == "AND") { logic = Logic::and_; negate = false; return true; }
  if (s == "OR") { logic = Logic::or_; negate = false; return true; }
  if (s == "!AND") { logic = Logic::and_; negate = true; return true; }
  if (s == "!OR") { logic = Logic::or_; negate = true; return true; }
  return false;
}

Result<std::unique_ptr<Expr::Node>> compile_node(const json::value& v, int depth);

Result<std::unique_ptr<Expr::Node>> compile_condition(const json::array& a) {
  auto n = std::make_unique<Expr::Node>();
  if (a.empty() || !a[0].is_string())
    return Error{"failed to validate the 'vars' expression: rule should be an array of [var, operator, value]"};
  n->var = std::string(a[0].as_string());
  std::string op;
  size_t rhs_index;
  if (a.size() == 2) {
    op = "==";
    rhs_index = 1;
  } else if (a.size() == 3) {
    // A number is named as Lua's concatenation prints it (traffic-split.t).
    if (a[1].is_int64())
      return Error{"failed to validate the 'vars' expression: invalid operator '" + std::to_string(a[1].as_int64()) + "'"};
    if (!a[1].is_string()) return Error{"failed to validate the 'vars' expression: invalid operator"};
    op = std::string(a[1].as_string());
    rhs_index = 2;
  } else if (a.size() == 4) {
    if (!a[1].is_string() || a[1].as_string() != "!" || !a[2].is_string())
      return Error{"failed to validate the 'vars' expression: invalid operator"};
    n->negate = true;
    op = std::string(a[2].as_string());
    rhs_index = 3;
  } else {
    return Error{"failed to validate the 'vars' expression: rule too short or too long"};
  }
  auto parsed = parse_op(op);
  if (!parsed) return Error{parsed.error()};
  n->op = *parsed;
  n->rhs = a[rhs_index];
  if (n->op == Op::re || n->op == Op::re_i) {
    if (!n->rhs.is_string()) return Error{"failed to validate the 'vars' expression: regex must be a string"};
    // lua-resty-expr: ngx.re.find with "jo", "joi" for `~*`.
    RegexFlags f;
    f.caseless = n->op == Op::re_i;
    auto re = UserRegex::compile(std::string(n->rhs.as_string()), f);
    if (!re) return Error{"failed to validate the 'vars' expression: invalid regex '" + std::string(n->rhs.as_string()) + "': " + re.error()};
    n->re = std::move(*re);
  } else if (n->op == Op::in) {
    if (!n->rhs.is_array()) return Error{"failed to validate the 'vars' expression: invalid value for 'in': expected array"};
  } else if (n->op == Op::ipmatch) {
    std::vector<std::string> list;
    if (n->rhs.is_string()) list.emplace_back(n->rhs.as_string());
    else if (n->rhs.is_array()) {
      for (const auto& e : n->rhs.as_array()) {
        if (!e.is_string()) return Error{"failed to validate the 'vars' expression: ipmatch needs IP strings"};
        list.emplace_back(e.as_string());
      }
    } else return Error{"failed to validate the 'vars' expression: ipmatch needs IP strings"};
    auto m = IpMatcher::compile(list);
    if (!m) return Error{"failed to validate the 'vars' expression: " + m.error()};
    n->ips = std::move(*m);
  }
  return n;
}

Result<std::unique_ptr<Expr::Node>> compile_node(const json::value& v, int depth) {
  if (depth > 32) return Error{"failed to validate the 'vars' expression: nested too deeply"};
  if (!v.is_array()) return Error{"failed to validate the 'vars' expression: rule should be an array"};
  const json::array& a = v.as_array();
  // A group is an array whose elements are arrays (optionally led by a logic word).
  size_t start = 0;
  Logic logic = Logic::and_;
  bool negate = false;
  bool has_word = !a.empty() && is_logic_word(a[0], logic, negate);
  if (has_word) start = 1;
  bool is_group = has_word || a.empty() || a[0].is_array();
  // lua-resty-expr: `[]` matches everything, but an empty group inside is
  // "rule too short"; a lone condition must be wrapped in a list.
  if (depth > 0 && a.empty()) return Error{"failed to validate the 'vars' expression: rule too short"};
  if (depth == 0 && !is_group)
    return Error{"failed to validate the 'vars' expression: rule should be wrapped inside brackets"};
  if (!is_group) return compile_condition(a);
  auto g = std::make_unique<Expr::Node>();
  g->is_group = true;
  g->logic = logic;
  g->negate = negate;
  for (size_t i = start; i < a.size(); ++i) {
    auto child = compile_node(a[i], depth + 1);
    if (!child) return Error{child.error()};
    g->children.push_back(std::move(*child));
  }
  return g;
}

bool eval_condition(const Expr::Node& n, const VarSource& vars) {
  std::optional<std::string> lhs = vars.var(n.var);
  bool r = false;
  switch (n.op) {
    case Op::eq:
    case Op::ne: {
      bool eq;
      if (n.rhs.is_number()) {
        auto l = lhs ? to_number(*lhs) : std::nullopt;
        if (!l) { r = n.op == Op::ne; break; }
        eq = *l == *json_number(n.rhs);
      } else if (n.rhs.is_null()) {
        eq = !lhs.has_value();
      } else {
        eq = lhs && *lhs == json_to_string(n.rhs);
      }
      r = n.op == Op::eq ? eq : !eq;
      break;
    }
    case Op::gt: case Op::ge: case Op::lt: case Op::le: {
      auto l = lhs ? to_number(*lhs) : std::nullopt;
      auto rr = json_number(n.rhs);
      if (!l || !rr) { r = false; break; }
      r = n.op == Op::gt ? *l > *rr : n.op == Op::ge ? *l >= *rr : n.op == Op::lt ? *l < *rr : *l <= *rr;
      break;
    }
    case Op::re:
    case Op::re_i:
      if (lhs) {
        std::string why;
        RegexMatch m = n.re->find(*lhs, 0, nullptr, &why);
        // A regex error (match limit) is a false comparison, as ngx.re.find
        // returning an error is in lua-resty-expr.
        if (m == RegexMatch::error)
          log::error("vars: regex '{}' on ${} failed: {}", n.re->pattern(), n.var, why);
        r = m == RegexMatch::match;
      }
      break;
    case Op::in:
      if (lhs) {
        for (const auto& e : n.rhs.as_array()) {
          if (e.is_number()) {
            auto l = to_number(*lhs);
            if (l && *l == *json_number(e)) { r = true; break; }
          } else if (json_to_string(e) == *lhs) { r = true; break; }
        }
      }
      break;
    case Op::has:
      // Variables here are strings; treat a comma-separated value as the array.
      if (lhs) {
        std::string needle = json_to_string(n.rhs);
        std::string_view s = *lhs;
        while (true) {
          size_t c = s.find(',');
          std::string_view item = s.substr(0, c);
          while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
          while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
          if (item == needle) { r = true; break; }
          if (c == std::string_view::npos) break;
          s.remove_prefix(c + 1);
        }
      }
      break;
    case Op::ipmatch:
      r = lhs && n.ips.match(*lhs);
      break;
  }
  return n.negate ? !r : r;
}

bool eval_node(const Expr::Node& n, const VarSource& vars) {
  if (!n.is_group) return eval_condition(n, vars);
  bool r = n.logic == Logic::and_;
  for (const auto& c : n.children) {
    bool v = eval_node(*c, vars);
    if (n.logic == Logic::and_ && !v) { r = false; break; }
    if (n.logic == Logic::or_ && v) { r = true; break; }
  }
  return n.negate ? !r : r;
}

}  // namespace

Expr::~Expr() = default;

Result<std::shared_ptr<const Expr>> Expr::compile(const json::value& v) {
  auto root = compile_node(v, 0);
  if (!root) return Error{root.error()};
  auto e = std::make_shared<Expr>();
  e->root_ = std::move(*root);
  return std::shared_ptr<const Expr>(std::move(e));
}

bool Expr::eval(const VarSource& vars) const { return eval_node(*root_, vars); }

namespace {
bool node_reads(const Expr::Node& n, std::string_view prefix) {
  if (!n.is_group) return n.var.starts_with(prefix);
  for (const auto& c : n.children)
    if (node_reads(*c, prefix)) return true;
  return false;
}
}  // namespace

bool Expr::reads(std::string_view prefix) const { return root_ && node_reads(*root_, prefix); }

}  // namespace holdfast::router
