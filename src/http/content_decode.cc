#include "http/content_decode.h"

#include <brotli/decode.h>
#include <zlib.h>

#include <algorithm>
#include <climits>
#include <memory>

#include "http/codec.h"

namespace holdfast::http {
namespace {

// Output grows by at most this much per decoder call, so a stream that would
// expand far beyond the limit never gets more room than the limit (+1 byte,
// to tell "exactly the limit" from "more than the limit").
constexpr size_t kStep = 64 * 1024;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Room for the next decoder call: [out.size(), out.size() + n), n > 0 while
// under cap. The caller shrinks `out` back to what was written.
size_t grow(std::string& out, size_t cap) {
  size_t n = std::min(kStep, cap - out.size());
  out.resize(out.size() + n);
  return n;
}

Decoded finish(std::string& out, size_t limit, DecodeStatus st) {
  if (out.size() > limit) {
    out.resize(limit);
    return {DecodeStatus::limited, {}};
  }
  return {st, {}};
}

Decoded gunzip(std::string_view in, size_t limit, std::string& out) {
  z_stream zs{};
  // 16 + 15: a gzip wrapper (not zlib, not raw deflate), as ffi-zlib's
  // inflateGzip that APISIX uses.
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return {DecodeStatus::corrupt, "inflateInit2 failed"};
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, inflateEnd);
  const size_t cap = limit + 1;
  size_t fed = 0;
  for (;;) {
    if (zs.avail_in == 0 && fed < in.size()) {
      size_t n = std::min<size_t>(in.size() - fed, UINT_MAX);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + fed));
      zs.avail_in = static_cast<uInt>(n);
      fed += n;
    }
    if (out.size() >= cap) return finish(out, limit, DecodeStatus::limited);
    size_t before = out.size();
    size_t room = grow(out, cap);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + before);
    zs.avail_out = static_cast<uInt>(room);
    int rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(before + (room - zs.avail_out));
    if (rc == Z_STREAM_END) return finish(out, limit, DecodeStatus::ok);
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR) {
      // No progress although the output had room: the input is used up.
      if (zs.avail_in == 0 && fed < in.size()) continue;
      return finish(out, limit, DecodeStatus::incomplete);
    }
    return {DecodeStatus::corrupt, std::string("inflate gzip err: ") + (zs.msg ? zs.msg : zError(rc))};
  }
}

Decoded unbrotli(std::string_view in, size_t limit, std::string& out) {
  std::unique_ptr<BrotliDecoderState, void (*)(BrotliDecoderState*)> st(
      BrotliDecoderCreateInstance(nullptr, nullptr, nullptr), BrotliDecoderDestroyInstance);
  if (!st) return {DecodeStatus::corrupt, "brotli decoder: out of memory"};
  const size_t cap = limit + 1;
  size_t avail_in = in.size();
  const uint8_t* next_in = reinterpret_cast<const uint8_t*>(in.data());
  for (;;) {
    if (out.size() >= cap) return finish(out, limit, DecodeStatus::limited);
    size_t before = out.size();
    size_t room = grow(out, cap);
    size_t avail_out = room;
    uint8_t* next_out = reinterpret_cast<uint8_t*>(out.data() + before);
    BrotliDecoderResult rc = BrotliDecoderDecompressStream(st.get(), &avail_in, &next_in, &avail_out, &next_out, nullptr);
    out.resize(before + (room - avail_out));
    switch (rc) {
      case BROTLI_DECODER_RESULT_SUCCESS: return finish(out, limit, DecodeStatus::ok);
      case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT: continue;
      case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT: return finish(out, limit, DecodeStatus::incomplete);
      default:
        return {DecodeStatus::corrupt,
                std::string("brotli decode err: ") + BrotliDecoderErrorString(BrotliDecoderGetErrorCode(st.get()))};
    }
  }
}

}  // namespace

bool content_coding_supported(std::string_view coding) {
  coding = trim(coding);
  return iequals(coding, "gzip") || iequals(coding, "br");
}

Decoded decode_content(std::string_view coding, std::string_view in, size_t limit, std::string& out) {
  out.clear();
  coding = trim(coding);
  if (iequals(coding, "gzip")) return gunzip(in, limit, out);
  if (iequals(coding, "br")) return unbrotli(in, limit, out);
  return {DecodeStatus::unsupported, {}};
}

}  // namespace holdfast::http
