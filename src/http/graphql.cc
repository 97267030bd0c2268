#include "http/graphql.h"

#include <cctype>

namespace holdfast::http {
namespace {

constexpr int kMaxDepth = 64;  // nested selections, lists, objects and types

enum class Tok { end, punct, spread, name, number, string, error };

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) { next(); }

  std::optional<GraphqlSummary> document() {
    if (tok_ == Tok::end) return std::nullopt;
    GraphqlSummary first;
    bool have_first = false;
    while (tok_ != Tok::end) {
      GraphqlSummary d;
      if (!definition(have_first ? nullptr : &d)) return std::nullopt;
      if (!have_first) first = std::move(d);
      have_first = true;
    }
    return first;
  }

 private:
  // --- lexer ---------------------------------------------------------------
  void next() {
    skip_ignored();
    text_ = {};
    if (pos_ >= s_.size()) { tok_ = Tok::end; return; }
    const size_t start = pos_;
    const char c = s_[pos_];
    if (c == '.') {
      if (s_.substr(pos_, 3) == "...") { pos_ += 3; tok_ = Tok::spread; }
      else tok_ = Tok::error;
    } else if (c == '!' || c == '$' || c == '&' || c == '(' || c == ')' || c == ':' || c == '=' || c == '@' ||
               c == '[' || c == ']' || c == '{' || c == '|' || c == '}') {
      ++pos_;
      tok_ = Tok::punct;
    } else if (is_name_start(c)) {
      while (pos_ < s_.size() && is_name_char(s_[pos_])) ++pos_;
      tok_ = Tok::name;
    } else if (c == '-' || is_digit(c)) {
      tok_ = lex_number() ? Tok::number : Tok::error;
    } else if (c == '"') {
      tok_ = lex_string() ? Tok::string : Tok::error;
    } else {
      tok_ = Tok::error;
    }
    text_ = s_.substr(start, pos_ - start);
  }

  void skip_ignored() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',') {
        ++pos_;
      } else if (s_.substr(pos_, 3) == "\xEF\xBB\xBF") {  // a byte order mark
        pos_ += 3;
      } else if (c == '#') {
        while (pos_ < s_.size() && s_[pos_] != '\n' && s_[pos_] != '\r') ++pos_;
      } else {
        break;
      }
    }
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  static bool is_name_start(char c) { return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
  static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

  bool lex_number() {
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size() || !is_digit(s_[pos_])) return false;
    if (s_[pos_] == '0') ++pos_;
    else while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) return false;
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) return false;
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    // A number may not run into a name or a '.' (e.g. 1x, 1.2.3).
    return pos_ >= s_.size() || !(is_name_start(s_[pos_]) || s_[pos_] == '.');
  }

  bool lex_string() {
    if (s_.substr(pos_, 3) == "\"\"\"") {  // block string: anything up to an unescaped """
      pos_ += 3;
      while (pos_ < s_.size()) {
        if (s_.substr(pos_, 4) == "\\\"\"\"") pos_ += 4;
        else if (s_.substr(pos_, 3) == "\"\"\"") { pos_ += 3; return true; }
        else ++pos_;
      }
      return false;
    }
    ++pos_;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == '"') { ++pos_; return true; }
      if (c == '\n' || c == '\r') return false;
      if (c == '\\') {
        if (pos_ + 1 >= s_.size()) return false;
        const char e = s_[pos_ + 1];
        if (e == 'u') {
          if (pos_ + 6 > s_.size()) return false;
          for (size_t i = pos_ + 2; i < pos_ + 6; ++i)
            if (!std::isxdigit(static_cast<unsigned char>(s_[i]))) return false;
          pos_ += 6;
          continue;
        }
        if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) return false;
        pos_ += 2;
        continue;
      }
      ++pos_;
    }
    return false;
  }

  // --- grammar ---------------------------------------------------------------
  bool is(char p) const { return tok_ == Tok::punct && text_.size() == 1 && text_[0] == p; }
  bool is_name(std::string_view n) const { return tok_ == Tok::name && text_ == n; }
  bool eat(char p) {
    if (!is(p)) return false;
    next();
    return true;
  }
  bool name(std::string* out = nullptr) {
    if (tok_ != Tok::name) return false;
    if (out) *out = std::string(text_);
    next();
    return true;
  }

  bool definition(GraphqlSummary* out) {
    if (is('{')) {  // the query shorthand
      if (out) out->operation = "query";
      return selection_set(0, out ? &out->root_fields : nullptr);
    }
    if (is_name("fragment")) {
      next();
      if (is_name("on")) return false;
      if (!name(out ? &out->name : nullptr)) return false;
      if (!type_condition() || !directives(false, 0)) return false;
      return selection_set(0, out ? &out->root_fields : nullptr);
    }
    if (!(is_name("query") || is_name("mutation") || is_name("subscription"))) return false;
    if (out) out->operation = std::string(text_);
    next();
    if (tok_ == Tok::name && !name(out ? &out->name : nullptr)) return false;
    if (is('(') && !variable_definitions()) return false;
    if (!directives(false, 0)) return false;
    return selection_set(0, out ? &out->root_fields : nullptr);
  }

  bool type_condition() {
    if (!is_name("on")) return false;
    next();
    return name();
  }

  bool variable_definitions() {
    if (!eat('(')) return false;
    do {
      if (!variable() || !eat(':') || !type(0)) return false;
      if (eat('=') && !value(true, 0)) return false;
      if (!directives(true, 0)) return false;
    } while (!is(')'));
    return eat(')');
  }

  bool variable() { return eat('$') && name(); }

  bool type(int depth) {
    if (depth > kMaxDepth) return false;
    if (eat('[')) {
      if (!type(depth + 1) || !eat(']')) return false;
    } else if (!name()) {
      return false;
    }
    eat('!');
    return true;
  }

  bool directives(bool constant, int depth) {
    while (eat('@')) {
      if (!name()) return false;
      if (is('(') && !arguments(constant, depth)) return false;
    }
    return true;
  }

  bool arguments(bool constant, int depth) {
    if (!eat('(')) return false;
    do {
      if (!name() || !eat(':') || !value(constant, depth)) return false;
    } while (!is(')'));
    return eat(')');
  }

  bool value(bool constant, int depth) {
    if (depth > kMaxDepth) return false;
    if (is('$')) return !constant && variable();
    if (tok_ == Tok::number || tok_ == Tok::string || tok_ == Tok::name) {
      next();  // true/false/null and enum values are names
      return true;
    }
    if (eat('[')) {
      while (!is(']'))
        if (!value(constant, depth + 1)) return false;
      return eat(']');
    }
    if (eat('{')) {
      while (!is('}'))
        if (!name() || !eat(':') || !value(constant, depth + 1)) return false;
      return eat('}');
    }
    return false;
  }

  // `fields` (the root selection set only) gets each selection's name.
  bool selection_set(int depth, std::vector<std::string>* fields) {
    if (depth > kMaxDepth || !eat('{')) return false;
    do {
      if (!selection(depth, fields)) return false;
    } while (!is('}'));
    return eat('}');
  }

  bool selection(int depth, std::vector<std::string>* fields) {
    if (tok_ == Tok::spread) {
      next();
      if (tok_ == Tok::name && !is_name("on")) {  // a fragment spread
        std::string n;
        name(&n);
        if (fields) fields->push_back(std::move(n));
        return directives(false, depth);
      }
      // An inline fragment: it has no name to list.
      if (is_name("on") && !type_condition()) return false;
      return directives(false, depth) && selection_set(depth + 1, nullptr);
    }
    std::string n;
    if (!name(&n)) return false;
    if (eat(':') && !name(&n)) return false;  // n was the alias
    if (fields) fields->push_back(std::move(n));
    if (is('(') && !arguments(false, depth)) return false;
    if (!directives(false, depth)) return false;
    if (is('{')) return selection_set(depth + 1, nullptr);
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
  Tok tok_ = Tok::end;
  std::string_view text_;
};

}  // namespace

std::optional<GraphqlSummary> parse_graphql(std::string_view doc) { return Parser(doc).document(); }

}  // namespace holdfast::http
