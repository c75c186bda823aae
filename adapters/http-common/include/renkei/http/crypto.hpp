// The few primitives the HTTP adapters need, through OpenSSL 3 EVP.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace renkei::http {

std::vector<uint8_t> hmac_sha256(const std::vector<uint8_t>& key, std::string_view data);
std::vector<uint8_t> sha256(std::string_view data);
std::vector<uint8_t> random_bytes(size_t n);
std::string hex(const uint8_t* p, size_t n);
inline std::string hex(const std::vector<uint8_t>& v) { return hex(v.data(), v.size()); }
// Lower- or upper-case hex; empty on any other character or an odd length.
std::vector<uint8_t> from_hex(std::string_view s);
// Constant time for equal lengths.
bool equal(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b);

} // namespace renkei::http
