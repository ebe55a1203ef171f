// RapidJSON helpers: parsing with a clear error, typed field access that reports which field
// is missing or of the wrong type, and a compact writer. Header-only.
// Thread safety: pure functions over caller-owned values.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ingestfs::json {

using Document = rapidjson::Document;
using Value = rapidjson::Value;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

// Largest string a parsed response may hold in one field; bigger is treated as hostile.
inline constexpr size_t kMaxStringField = 64 * 1024;

// Deepest nesting of arrays and objects a parsed text may have; deeper is treated as hostile.
// (The project's own texts and the platforms' answers nest a few levels.)
inline constexpr size_t kMaxDepth = 64;

namespace internal {
// A first pass that only counts nesting. RapidJSON builds a Document recursively and a Value's
// destructor recurses too, so a text must be known shallow before it becomes a Document; the
// pass itself runs RapidJSON's iterative parser, whose stack is on the heap.
struct DepthCheck : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, DepthCheck> {
  size_t depth = 0;
  bool too_deep = false;
  bool Default() { return true; }
  bool Open() {
    if (++depth <= kMaxDepth) return true;
    too_deep = true;
    return false;
  }
  bool StartObject() { return Open(); }
  bool StartArray() { return Open(); }
  bool EndObject(rapidjson::SizeType) { --depth; return true; }
  bool EndArray(rapidjson::SizeType) { --depth; return true; }
};
}  // namespace internal

inline StatusOr<Document> Parse(std::string_view text, std::string_view what) {
  constexpr unsigned kFlags = rapidjson::kParseStopWhenDoneFlag | rapidjson::kParseIterativeFlag;
  auto invalid = [&](const std::string& why) {
    return Status(Code::kInvalidArgument, std::string(what) + " is not valid JSON (" + why + ")");
  };
  {
    rapidjson::MemoryStream ms(text.data(), text.size());
    rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(ms);
    internal::DepthCheck check;
    rapidjson::Reader reader;
    reader.Parse<kFlags>(in, check);
    if (check.too_deep) return invalid("nested deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  Document doc;
  doc.Parse<kFlags>(text.data(), text.size());
  if (doc.HasParseError()) {
    return invalid(std::string(rapidjson::GetParseError_En(doc.GetParseError())) + " at offset " +
                   std::to_string(doc.GetErrorOffset()));
  }
  return doc;
}

inline const Value* Find(const Value& obj, const char* field) {
  if (!obj.IsObject()) return nullptr;
  auto it = obj.FindMember(field);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

inline StatusOr<std::string> GetString(const Value& obj, const char* field,
                                       size_t max_len = kMaxStringField) {
  const Value* v = Find(obj, field);
  if (v == nullptr) return Status(Code::kInvalidArgument, std::string("field '") + field + "' is missing");
  if (!v->IsString()) return Status(Code::kInvalidArgument, std::string("field '") + field + "' is not a string");
  if (v->GetStringLength() > max_len) {
    return Status(Code::kInvalidArgument, std::string("field '") + field + "' is longer than " +
                                               std::to_string(max_len) + " bytes");
  }
  return std::string(v->GetString(), v->GetStringLength());
}

// Missing or null -> nullopt; present but not a string -> error.
inline StatusOr<std::optional<std::string>> GetOptionalString(const Value& obj, const char* field,
                                                              size_t max_len = kMaxStringField) {
  const Value* v = Find(obj, field);
  if (v == nullptr || v->IsNull()) return std::optional<std::string>();
  ASSIGN_OR_RETURN(std::string s, GetString(obj, field, max_len));
  return std::optional<std::string>(std::move(s));
}

// Lenient readers for trusted records (our own logs): the field's value, or "" / 0 when it is
// missing or of another type.
inline std::string StringOr(const Value& obj, const char* field) {
  const Value* v = Find(obj, field);
  return v != nullptr && v->IsString() ? std::string(v->GetString(), v->GetStringLength()) : std::string();
}
inline int64_t IntOr(const Value& obj, const char* field) {
  const Value* v = Find(obj, field);
  return v != nullptr && v->IsInt64() ? v->GetInt64() : 0;
}
inline bool BoolOr(const Value& obj, const char* field) {
  const Value* v = Find(obj, field);
  return v != nullptr && v->IsBool() && v->GetBool();
}

inline StatusOr<int64_t> GetInt(const Value& obj, const char* field) {
  const Value* v = Find(obj, field);
  if (v == nullptr) return Status(Code::kInvalidArgument, std::string("field '") + field + "' is missing");
  if (!v->IsInt64()) return Status(Code::kInvalidArgument, std::string("field '") + field + "' is not an integer");
  return v->GetInt64();
}

inline std::string ToString(const Value& v) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  v.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

inline void String(Writer& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
inline void Key(Writer& w, std::string_view s) {
  w.Key(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
inline void KeyString(Writer& w, std::string_view k, std::string_view v) {
  Key(w, k);
  String(w, v);
}
inline void KeyInt(Writer& w, std::string_view k, int64_t v) {
  Key(w, k);
  w.Int64(v);
}
inline void KeyBool(Writer& w, std::string_view k, bool v) {
  Key(w, k);
  w.Bool(v);
}
inline std::string Done(const rapidjson::StringBuffer& buf) { return std::string(buf.GetString(), buf.GetSize()); }

// Runs `fill` on a fresh writer and returns the text: json::Build([&](json::Writer& w) {...}).
template <typename F>
std::string Build(F&& fill) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  fill(w);
  return Done(buf);
}

// The same for one object: `fill` writes the members between '{' and '}'.
template <typename F>
std::string Object(F&& fill) {
  return Build([&](Writer& w) {
    w.StartObject();
    fill(w);
    w.EndObject();
  });
}

}  // namespace ingestfs::json
