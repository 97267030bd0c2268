// Just enough XML for AWS responses: the text of the first <Tag>...</Tag>.
#pragma once
#include <string>
#include <string_view>

namespace holdfast::aws {

// Text of the first element named `tag` (entities decoded), or "" if absent.
std::string xml_text(std::string_view xml, std::string_view tag);

}  // namespace holdfast::aws
