// libFuzzer target: the XML reader for S3 and STS answers (xml_text), which
// turns an error body from the network into the code and message Holdfast
// logs. The first input byte chooses the element; the text returned is
// never longer than the input.
#include <cstdint>
#include <string>
#include <string_view>

#include "cloud/aws/xml.h"
#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static constexpr std::string_view kTags[] = {"Code", "Message", "Region", "AccessKeyId", "SecretAccessKey",
                                               "SessionToken", "Expiration", "Error", "", "a"};
  std::string_view tag = kTags[data[0] % std::size(kTags)];
  std::string_view xml(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string text = holdfast::aws::xml_text(xml, tag);
  fuzz::check(text.size() <= xml.size());
  return 0;
}
