// libFuzzer target: the GCS service-account key file (parse_service_account),
// read from disk and turned into the fields of a JWT and a token request.
// Whatever the file, the error names only the path (never the contents), and
// a file that parses yields fields without characters that could break the
// JWT, a URL or a header.
#include <cstdint>
#include <string>

#include "cloud/gcs/service_account.h"
#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto k = holdfast::gcs::parse_service_account(text, "/k.json");
  if (!k.ok()) {
    fuzz::check(k.error().rfind("credentials file /k.json", 0) == 0);
    // A short error only: it never carries the file along.
    fuzz::check(k.error().size() < 200);
    return 0;
  }
  for (const std::string* s : {&k->client_email, &k->private_key_id, &k->token_uri})
    for (char c : *s) fuzz::check(static_cast<unsigned char>(c) > 0x20 && c != 0x7f && c != '"' && c != '\\');
  fuzz::check(!k->client_email.empty() && !k->private_key.empty());
  fuzz::check(k->token_uri.rfind("http", 0) == 0);
  return 0;
}
