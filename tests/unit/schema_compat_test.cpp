// Schemas evolve by Cap'n Proto's rules only: a field once released keeps its name, ordinal and
// type, and a struct keeps its id. plugin-api/schema/compat/released.txt records the released
// shape; this test fails on any change to it, while new fields (new ordinals) pass.
// To record a new release: RENKEI_SCHEMA_SNAPSHOT=<file> ./schema_compat_test, review, commit.
#include "test_support.hpp"

#include <renkei/schema/common.capnp.h>
#include <renkei/schema/envelope.capnp.h>

#include <capnp/schema.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

namespace {

std::string hex_id(uint64_t id) {
    char buf[32];
    snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(id));
    return buf;
}

std::string type_name(capnp::Type t) {
    using W = capnp::schema::Type::Which;
    switch (t.which()) {
    case W::VOID: return "Void";
    case W::BOOL: return "Bool";
    case W::INT8: return "Int8";
    case W::INT16: return "Int16";
    case W::INT32: return "Int32";
    case W::INT64: return "Int64";
    case W::UINT8: return "UInt8";
    case W::UINT16: return "UInt16";
    case W::UINT32: return "UInt32";
    case W::UINT64: return "UInt64";
    case W::FLOAT32: return "Float32";
    case W::FLOAT64: return "Float64";
    case W::TEXT: return "Text";
    case W::DATA: return "Data";
    case W::LIST: return "List(" + type_name(t.asList().getElementType()) + ")";
    case W::ENUM: return "enum " + hex_id(t.asEnum().getProto().getId());
    case W::STRUCT: return "struct " + hex_id(t.asStruct().getProto().getId());
    case W::INTERFACE: return "interface " + hex_id(t.asInterface().getProto().getId());
    case W::ANY_POINTER: return "AnyPointer";
    }
    return "?";
}

void describe(capnp::StructSchema s, const std::string& name, std::set<std::string>& out) {
    out.insert("struct " + name + " " + hex_id(s.getProto().getId()));
    for (auto f : s.getFields()) {
        std::string fname = name + "." + std::string(f.getProto().getName().cStr());
        auto proto = f.getProto();
        if (proto.isGroup()) {
            describe(f.getType().asStruct(), fname, out);
            continue;
        }
        std::string ord = proto.getOrdinal().isExplicit() ? std::to_string(proto.getOrdinal().getExplicit()) : "?";
        out.insert("field " + fname + " @" + ord + " :" + type_name(f.getType()));
    }
}

void describe(capnp::EnumSchema e, const std::string& name, std::set<std::string>& out) {
    out.insert("enum " + name + " " + hex_id(e.getProto().getId()));
    for (auto en : e.getEnumerants())
        out.insert("enumerant " + name + "." + std::string(en.getProto().getName().cStr()) + " @" +
                   std::to_string(en.getOrdinal()));
}

std::set<std::string> current() {
    using namespace renkei::schema;
    std::set<std::string> out;
    describe(capnp::Schema::from<Envelope>(), "Envelope", out);
    describe(capnp::Schema::from<Fault>(), "Fault", out);
    describe(capnp::Schema::from<SignedEnvelope>(), "SignedEnvelope", out);
    describe(capnp::Schema::from<SignatureAlg>(), "SignatureAlg", out);
    describe(capnp::Schema::from<Date>(), "Date", out);
    describe(capnp::Schema::from<Sex>(), "Sex", out);
    describe(capnp::Schema::from<Name>(), "Name", out);
    describe(capnp::Schema::from<Address>(), "Address", out);
    describe(capnp::Schema::from<Person>(), "Person", out);
    return out;
}

} // namespace

TEST(SchemaCompat, ReleasedShapeIsUnchanged) {
    auto now = current();
    if (const char* snap = std::getenv("RENKEI_SCHEMA_SNAPSHOT")) {
        std::ofstream out(snap);
        for (auto& l : now) out << l << "\n";
    }
    std::ifstream in(std::string(RENKEI_SOURCE_DIR) + "/plugin-api/schema/compat/released.txt");
    ASSERT_TRUE(in) << "plugin-api/schema/compat/released.txt is missing";
    int lines = 0;
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        ++lines;
        EXPECT_TRUE(now.count(line)) << "released schema element changed or removed: " << line;
    }
    EXPECT_GT(lines, 30);
}
