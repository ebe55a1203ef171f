#include "server/sigv4.h"

#include <algorithm>
#include <set>

#include "common/crypto.h"
#include "common/json.h"
#include "common/strings.h"
#include "common/time_util.h"

namespace ingestfs::server {

namespace {
constexpr char kAlgorithm[] = "AWS4-HMAC-SHA256";
constexpr long kMaxExpires = 604800;  // 7 days, as S3

std::string CollapseSpaces(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : Trim(v)) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

std::string Signature(const SigV4Credentials& creds, const std::string& amz_date,
                      const std::string& canonical_request) {
  std::string date = amz_date.substr(0, 8);
  std::string scope = date + "/" + creds.region + "/" + creds.service + "/aws4_request";
  std::string to_sign = std::string(kAlgorithm) + "\n" + amz_date + "\n" + scope + "\n" +
                        HexEncode(Sha256(canonical_request));
  return HexEncode(HmacSha256(SigningKey(creds.secret_key, date, creds.region, creds.service), to_sign));
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}
}  // namespace

std::string SigningKey(const std::string& secret, const std::string& date, const std::string& region,
                       const std::string& service) {
  std::string k = HmacSha256("AWS4" + secret, date);
  k = HmacSha256(k, region);
  k = HmacSha256(k, service);
  return HmacSha256(k, "aws4_request");
}

std::string CanonicalQuery(const QueryParams& params) {
  std::vector<std::pair<std::string, std::string>> enc;
  for (const auto& [k, v] : params) {
    if (k == "X-Amz-Signature") continue;
    enc.emplace_back(UriEncode(k, false), UriEncode(v, false));
  }
  std::sort(enc.begin(), enc.end());
  std::string out;
  for (const auto& [k, v] : enc) {
    if (!out.empty()) out.push_back('&');
    out += k + "=" + v;
  }
  return out;
}

std::string Presign(const SigV4Credentials& creds, const PresignInput& in) {
  std::string amz_date = AmzDate(in.now);
  std::string scope = amz_date.substr(0, 8) + "/" + creds.region + "/" + creds.service + "/aws4_request";
  QueryParams q = in.extra_query;
  q.emplace_back("X-Amz-Algorithm", kAlgorithm);
  q.emplace_back("X-Amz-Credential", creds.access_key + "/" + scope);
  q.emplace_back("X-Amz-Date", amz_date);
  q.emplace_back("X-Amz-Expires", std::to_string(in.expires_seconds));
  std::vector<std::pair<std::string, std::string>> headers = in.signed_headers;
  headers.emplace_back("host", in.host);
  std::sort(headers.begin(), headers.end());
  std::string names, canonical_headers;
  for (const auto& [name, value] : headers) {
    names += (names.empty() ? "" : ";") + name;
    canonical_headers += name + ":" + CollapseSpaces(value) + "\n";
  }
  q.emplace_back("X-Amz-SignedHeaders", names);
  std::string canonical_query = CanonicalQuery(q);
  std::string canonical_request = in.method + "\n" + UriEncode(in.path, true) + "\n" + canonical_query + "\n" +
                                  canonical_headers + "\n" + names + "\nUNSIGNED-PAYLOAD";
  return canonical_query + "&X-Amz-Signature=" + Signature(creds, amz_date, canonical_request);
}

std::optional<S3Error> Verify(const SigV4Credentials& creds, const VerifyInput& in) {
  auto get = [&](const char* name) -> std::optional<std::string> {
    std::optional<std::string> found;
    for (const auto& [k, v] : in.query) {
      if (k == name) {
        if (found) return std::nullopt;  // duplicated: treated as missing
        found = v;
      }
    }
    return found;
  };
  auto algorithm = get("X-Amz-Algorithm");
  auto credential = get("X-Amz-Credential");
  auto amz_date = get("X-Amz-Date");
  auto expires = get("X-Amz-Expires");
  auto signed_headers = get("X-Amz-SignedHeaders");
  auto signature = get("X-Amz-Signature");
  if (!algorithm && !credential && !signature) {
    return S3Error{403, "AccessDenied", "Access Denied: the request carries no presigned signature"};
  }
  if (!algorithm || !credential || !amz_date || !expires || !signed_headers || !signature) {
    return S3Error{400, "AuthorizationQueryParametersError",
                   "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
                   "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."};
  }
  if (*algorithm != kAlgorithm) {
    return S3Error{400, "AuthorizationQueryParametersError", "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\""};
  }
  std::vector<std::string> cred = Split(*credential, '/');
  if (cred.size() != 5 || cred[4] != "aws4_request" || cred[3] != creds.service) {
    return S3Error{400, "AuthorizationQueryParametersError", "Error parsing the X-Amz-Credential parameter"};
  }
  if (cred[0] != creds.access_key) {
    return S3Error{403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."};
  }
  if (cred[2] != creds.region) {
    return S3Error{400, "AuthorizationQueryParametersError",
                   "Error parsing the X-Amz-Credential parameter; the region '" + cred[2] +
                       "' is wrong; expecting '" + creds.region + "'"};
  }
  auto t = ParseAmzDate(*amz_date);
  if (!t || amz_date->substr(0, 8) != cred[1]) {
    return S3Error{400, "AuthorizationQueryParametersError", "X-Amz-Date must be in the ISO8601 Long Format and match the credential scope"};
  }
  auto exp = ParseInt(*expires);
  if (!exp || *exp < 1 || *exp > kMaxExpires) {
    return S3Error{400, "AuthorizationQueryParametersError",
                   "X-Amz-Expires must be between 1 and 604800 seconds"};
  }
  if (in.now < *t - 15 * 60) {
    return S3Error{403, "AccessDenied", "Request is not valid yet"};
  }
  if (in.now > *t + *exp) {
    return S3Error{403, "AccessDenied", "Request has expired"};
  }
  // Canonical headers, in the order the signer listed them (they must be sorted and lowercase).
  std::string canonical_headers;
  std::vector<std::string> names = Split(*signed_headers, ';');
  bool has_host = false;
  for (const std::string& name : names) {
    if (name.empty() || name != ToLower(name)) {
      return S3Error{400, "AuthorizationQueryParametersError", "X-Amz-SignedHeaders is malformed"};
    }
    if (name == "host") has_host = true;
    auto value = in.header(name);
    if (!value) {
      return S3Error{403, "SignatureDoesNotMatch",
                     "The request signature we calculated does not match the signature you provided: "
                     "signed header '" + name + "' is missing"};
    }
    canonical_headers += name + ":" + CollapseSpaces(*value) + "\n";
  }
  if (!has_host) {
    return S3Error{400, "AuthorizationQueryParametersError", "X-Amz-SignedHeaders must include host"};
  }
  std::string payload = "UNSIGNED-PAYLOAD";
  if (auto p = get("X-Amz-Content-Sha256")) payload = *p;
  std::string canonical_request = in.method + "\n" + UriEncode(in.path, true) + "\n" +
                                  CanonicalQuery(in.query) + "\n" + canonical_headers + "\n" +
                                  *signed_headers + "\n" + payload;
  SigV4Credentials c = creds;
  std::string expected = Signature(c, *amz_date, canonical_request);
  if (!ConstantTimeEquals(expected, *signature)) {
    return S3Error{403, "SignatureDoesNotMatch",
                   "The request signature we calculated does not match the signature you provided. "
                   "Check your key and signing method."};
  }
  return std::nullopt;
}

namespace {
std::string PolicyDate(std::time_t t) {
  std::string iso = Iso8601Utc(t);  // 2026-11-21T10:00:00Z -> 2026-11-21T10:00:00.000Z, as S3 writes it
  return iso.substr(0, iso.size() - 1) + ".000Z";
}

std::optional<std::string> Field(const QueryParams& fields, const std::string& lower_name) {
  for (const auto& [k, v] : fields) {
    if (ToLower(k) == lower_name) return v;
  }
  return std::nullopt;
}

S3Error PolicyFailed(const std::string& why) { return S3Error{403, "AccessDenied", "Invalid according to Policy: " + why}; }
}  // namespace

QueryParams PresignPost(const SigV4Credentials& creds, const PostPolicyInput& in) {
  std::string amz_date = AmzDate(in.now);
  std::string credential = creds.access_key + "/" + amz_date.substr(0, 8) + "/" + creds.region + "/" + creds.service +
                           "/aws4_request";
  std::string policy = json::Object([&](json::Writer& w) {
    json::KeyString(w, "expiration", PolicyDate(in.now + in.expires_seconds));
    json::Key(w, "conditions");
    w.StartArray();
    auto eq = [&](const char* name, const std::string& value) {
      w.StartObject();
      json::KeyString(w, name, value);
      w.EndObject();
    };
    eq("bucket", in.bucket);
    eq("key", in.key);
    w.StartArray();
    json::String(w, "content-length-range");
    w.Int64(0);
    w.Uint64(in.max_size);
    w.EndArray();
    eq("x-amz-algorithm", kAlgorithm);
    eq("x-amz-credential", credential);
    eq("x-amz-date", amz_date);
    if (!in.security_token.empty()) eq("x-amz-security-token", in.security_token);
    w.EndArray();
  });
  std::string policy64 = Base64Encode(policy);
  std::string signature = HexEncode(
      HmacSha256(SigningKey(creds.secret_key, amz_date.substr(0, 8), creds.region, creds.service), policy64));
  QueryParams fields = {{"key", in.key},
                        {"x-amz-algorithm", kAlgorithm},
                        {"x-amz-credential", credential},
                        {"x-amz-date", amz_date}};
  if (!in.security_token.empty()) fields.emplace_back("x-amz-security-token", in.security_token);
  fields.emplace_back("policy", policy64);
  fields.emplace_back("x-amz-signature", signature);
  return fields;
}

PostVerdict VerifyPost(const SigV4Credentials& creds, const std::string& bucket, const QueryParams& fields,
                       std::time_t now) {
  PostVerdict out;
  auto fail = [&](S3Error e) {
    out.error = std::move(e);
    return out;
  };
  auto policy64 = Field(fields, "policy");
  auto signature = Field(fields, "x-amz-signature");
  auto algorithm = Field(fields, "x-amz-algorithm");
  auto credential = Field(fields, "x-amz-credential");
  auto amz_date = Field(fields, "x-amz-date");
  auto key = Field(fields, "key");
  if (!key) return fail({400, "InvalidArgument", "Bucket POST must contain a field named 'key'."});
  if (!policy64 || !signature || !algorithm || !credential || !amz_date) {
    return fail({403, "AccessDenied", "Bucket POST must contain the fields policy, x-amz-algorithm, x-amz-credential, "
                                      "x-amz-date and x-amz-signature."});
  }
  if (*algorithm != kAlgorithm) return fail({400, "InvalidArgument", "x-amz-algorithm only supports AWS4-HMAC-SHA256"});
  std::vector<std::string> cred = Split(*credential, '/');
  if (cred.size() != 5 || cred[4] != "aws4_request" || cred[3] != creds.service) {
    return fail({400, "InvalidArgument", "Error parsing the x-amz-credential field"});
  }
  if (cred[0] != creds.access_key) {
    return fail({403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."});
  }
  std::string expected = HexEncode(HmacSha256(SigningKey(creds.secret_key, cred[1], cred[2], cred[3]), *policy64));
  if (cred[2] != creds.region || !ConstantTimeEquals(expected, *signature)) {
    return fail({403, "SignatureDoesNotMatch",
                 "The request signature we calculated does not match the signature you provided. "
                 "Check your key and signing method."});
  }
  auto raw = Base64Decode(*policy64);
  auto doc = raw.ok() ? json::Parse(*raw, "policy") : StatusOr<json::Document>(raw.status());
  if (!doc.ok() || !doc->IsObject()) return fail({400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON."});
  auto expiration = json::GetString(*doc, "expiration");
  std::optional<std::time_t> expires = expiration.ok() ? ParseIso8601Utc(*expiration) : std::nullopt;
  if (!expires) return fail({400, "InvalidPolicyDocument", "Invalid Policy: Policy missing expiration."});
  if (now > *expires) return fail(PolicyFailed("Policy expired."));
  const json::Value* conditions = json::Find(*doc, "conditions");
  if (conditions == nullptr || !conditions->IsArray()) {
    return fail({400, "InvalidPolicyDocument", "Invalid Policy: Policy missing conditions."});
  }
  std::set<std::string> covered = {"policy", "x-amz-signature", "file"};
  auto value_of = [&](const std::string& name) -> std::optional<std::string> {
    if (name == "bucket") return bucket;
    return Field(fields, name);
  };
  for (const json::Value& c : conditions->GetArray()) {
    if (c.IsObject() && c.MemberCount() == 1 && c.MemberBegin()->value.IsString()) {
      std::string name = ToLower(c.MemberBegin()->name.GetString());
      std::string want = c.MemberBegin()->value.GetString();
      covered.insert(name);
      auto got = value_of(name);
      if (!got || *got != want) {
        return fail(PolicyFailed("Policy Condition failed: [\"eq\", \"$" + name + "\", \"" + want + "\"]"));
      }
      continue;
    }
    if (!c.IsArray() || c.Size() != 3 || !c[0].IsString()) {
      return fail({400, "InvalidPolicyDocument", "Invalid Policy: Invalid Condition: " + json::ToString(c)});
    }
    std::string op = c[0].GetString();
    if (op == "content-length-range" && c[1].IsUint64() && c[2].IsUint64()) {
      out.grant.min_size = c[1].GetUint64();
      out.grant.max_size = c[2].GetUint64();
      continue;
    }
    if ((op == "eq" || op == "starts-with") && c[1].IsString() && c[2].IsString() && c[1].GetString()[0] == '$') {
      std::string name = ToLower(c[1].GetString() + 1);
      std::string want = c[2].GetString();
      covered.insert(name);
      auto got = value_of(name);
      bool ok = got && (op == "eq" ? *got == want : StartsWith(*got, want));
      if (!ok) {
        return fail(PolicyFailed("Policy Condition failed: [\"" + op + "\", \"$" + name + "\", \"" + want + "\"]"));
      }
      continue;
    }
    return fail({400, "InvalidPolicyDocument", "Invalid Policy: Invalid Condition: " + json::ToString(c)});
  }
  for (const auto& [k, v] : fields) {
    std::string name = ToLower(k);
    if (covered.count(name) == 0 && !StartsWith(name, "x-ignore-")) {
      return fail(PolicyFailed("Extra input fields: " + k));
    }
  }
  out.grant.key = *key;
  return out;
}

}  // namespace ingestfs::server
