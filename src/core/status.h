// Errors as values for control-side code (config parsing, sources, manager).
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace holdfast {

struct Error {
  std::string message;
};

// A value or an error message; deliberately small (std::expected is C++23).
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error e) : v_(std::move(e)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const std::string& error() const { return std::get<1>(v_).message; }

 private:
  std::variant<T, Error> v_;
};

// For operations that produce nothing but can fail.
class Status {
 public:
  Status() = default;
  Status(Error e) : err_(std::move(e.message)) {}
  static Status ok_status() { return {}; }
  bool ok() const { return !err_; }
  explicit operator bool() const { return ok(); }
  const std::string& error() const { return *err_; }

 private:
  std::optional<std::string> err_;
};

}  // namespace holdfast
