#include <renkei/legacy_file/profile.hpp>

#include <renkei/validate.hpp>

#include <toml++/toml.h>

#include <fstream>
#include <sstream>

namespace renkei::legacy_file {
namespace {

struct ItemInfo {
    Item item;
    const char* path; // under [field], also the schema name juki's refusals use
    bool required;
};

// Every item a profile can map; the required ones are what juki's CS requires of a record.
constexpr ItemInfo kItems[kItemCount] = {
    {Item::residentCode, "person.residentCode", true},
    {Item::myNumber, "person.myNumber", true},
    {Item::kanji, "person.name.kanji", true},
    {Item::kana, "person.name.kana", true},
    {Item::dateOfBirth, "person.dateOfBirth", true},
    {Item::sex, "person.sex", true},
    {Item::address, "person.address.text", true},
    {Item::localGovCode, "person.address.localGovCode", true},
    {Item::townCode, "person.address.townCode", false},
    {Item::formerSurname, "person.formerSurname", false},
    {Item::formerSurnameKana, "formerSurnameKana", false},
    {Item::aliasName, "person.aliasName", false},
    {Item::reason, "reason", true},
    {Item::changeDate, "changeDate", true},
    {Item::previousResidentCode, "previousResidentCode", false},
    {Item::previousMunicipality, "previousMunicipality", false},
    {Item::operatorId, "operatorId", false},
    {Item::terminalId, "terminalId", false},
};

const char* const kReasons[] = {"unspecified", "moveIn", "moveOut", "moveWithin", "birth", "death",
                                "entryByOffice", "correctionByOffice", "removalByOffice", "residentCodeChange",
                                "myNumberChange", "itemChange"};

std::string read_all(const std::filesystem::path& file, const char* what) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw ProfileError(file.string() + ": cannot read the " + what);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

class Reader {
public:
    explicit Reader(std::string source) : source_(std::move(source)) {}

    [[noreturn]] void fail(const toml::node* at, const std::string& key, const std::string& what) const {
        int line = at ? static_cast<int>(at->source().begin.line) : 0;
        throw ProfileError(source_ + ":" + std::to_string(line) + ": " + key + ": " + what);
    }

    toml::table parse(std::string_view text) {
        try {
            return toml::parse(text, source_);
        } catch (const toml::parse_error& e) {
            throw ProfileError(source_ + ":" + std::to_string(e.source().begin.line) + ": " +
                               std::string(e.description()));
        }
    }

    void only(const toml::table& t, const std::string& prefix, std::initializer_list<const char*> keys) const {
        for (auto& [k, v] : t) {
            bool known = false;
            for (auto* key : keys) known = known || k.str() == key;
            if (!known) {
                std::string list;
                for (auto* key : keys) list += std::string(list.empty() ? "" : ", ") + key;
                fail(&v, prefix + std::string(k.str()), "unknown key (known here: " + list + ")");
            }
        }
    }

    std::optional<std::string> str(const toml::table& t, const std::string& prefix, const char* key) const {
        auto* n = t.get(key);
        if (!n) return std::nullopt;
        if (!n->is_string()) fail(n, prefix + key, "must be a string");
        return n->as_string()->get();
    }
    std::optional<int64_t> integer(const toml::table& t, const std::string& prefix, const char* key, int64_t lo,
                                   int64_t hi) const {
        auto* n = t.get(key);
        if (!n) return std::nullopt;
        if (!n->is_integer()) fail(n, prefix + key, "must be an integer");
        auto v = n->as_integer()->get();
        if (v < lo || v > hi)
            fail(n, prefix + key, "must be in " + std::to_string(lo) + ".." + std::to_string(hi));
        return v;
    }
    std::optional<bool> boolean(const toml::table& t, const std::string& prefix, const char* key) const {
        auto* n = t.get(key);
        if (!n) return std::nullopt;
        if (!n->is_boolean()) fail(n, prefix + key, "must be true or false");
        return n->as_boolean()->get();
    }
    const toml::table* table(const toml::table& t, const std::string& prefix, const char* key) const {
        auto* n = t.get(key);
        if (!n) return nullptr;
        if (!n->is_table()) fail(n, prefix + key, "must be a table");
        return n->as_table();
    }

    const std::string& source() const { return source_; }

private:
    std::string source_;
};

// Walks [field] and checks that every leaf names a known item.
void collect_unknown(const Reader& r, const toml::table& t, const std::string& path) {
    for (auto& [k, v] : t) {
        std::string p = path.empty() ? std::string(k.str()) : path + "." + std::string(k.str());
        bool item = false, prefix = false;
        for (auto& info : kItems) {
            item = item || p == info.path;
            prefix = prefix || std::string_view(info.path).substr(0, p.size() + 1) == p + ".";
        }
        if (item) continue;
        if (prefix && v.is_table()) {
            collect_unknown(r, *v.as_table(), p);
            continue;
        }
        std::string known;
        for (auto& info : kItems) known += std::string(known.empty() ? "" : ", ") + info.path;
        r.fail(&v, "field." + p, "not a 本人確認情報 item this adapter maps (known: " + known + ")");
    }
}

std::optional<char32_t> code_point(std::string_view s) {
    // "U+XXXX"
    if (s.size() < 6 || s.size() > 8 || (s[0] != 'U' && s[0] != 'u') || s[1] != '+') return std::nullopt;
    char32_t v = 0;
    for (size_t i = 2; i < s.size(); ++i) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return std::nullopt;
        v = v * 16 + static_cast<char32_t>(d);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return std::nullopt;
    return v;
}

} // namespace

const char* item_name(Item item) { return kItems[static_cast<size_t>(item)].path; }

const FieldSpec* Profile::field(Item item) const {
    for (auto& f : fields)
        if (f.item == item) return &f;
    return nullptr;
}

bool is_private_use(char32_t c) {
    return (c >= 0xE000 && c <= 0xF8FF) || (c >= 0xF0000 && c <= 0xFFFFD) || (c >= 0x100000 && c <= 0x10FFFD);
}

Profile parse_profile(std::string_view toml_text, const std::string& source, const std::filesystem::path& base_dir) {
    Reader r(source);
    auto root = r.parse(toml_text);
    r.only(root, "", {"name", "description", "encoding", "format", "csv", "fixed", "limits", "gaiji_table", "field"});
    Profile p;
    p.source = source;
    auto name = r.str(root, "", "name");
    if (!name || name->empty()) r.fail(nullptr, "name", "required: the profile's name");
    p.name = *name;
    p.description = r.str(root, "", "description").value_or("");
    auto enc = r.str(root, "", "encoding");
    if (!enc) r.fail(nullptr, "encoding", "required: utf-8 or cp932");
    if (*enc == "utf-8" || *enc == "UTF-8") p.encoding = Encoding::utf8;
    else if (*enc == "cp932" || *enc == "CP932") p.encoding = Encoding::cp932;
    else r.fail(root.get("encoding"), "encoding", "must be utf-8 or cp932");
    auto fmt = r.str(root, "", "format");
    if (!fmt) r.fail(nullptr, "format", "required: csv or fixed");
    if (*fmt == "csv") p.format = Format::csv;
    else if (*fmt == "fixed") p.format = Format::fixed;
    else r.fail(root.get("format"), "format", "must be csv or fixed");

    if (auto* csv = r.table(root, "", "csv")) {
        if (p.format != Format::csv) r.fail(csv, "csv", "only for format = \"csv\"");
        r.only(*csv, "csv.", {"header", "delimiter", "quote", "skip_records", "require_final_newline"});
        p.header = r.boolean(*csv, "csv.", "header").value_or(true);
        for (auto [key, out] : {std::pair{"delimiter", &p.delimiter}, std::pair{"quote", &p.quote}}) {
            if (auto v = r.str(*csv, "csv.", key)) {
                if (v->size() != 1 || static_cast<unsigned char>((*v)[0]) >= 0x80 || (*v)[0] == '\n' || (*v)[0] == '\r')
                    r.fail(csv->get(key), std::string("csv.") + key, "must be one ASCII character other than a line end");
                *out = (*v)[0];
            }
        }
        if (p.delimiter == p.quote) r.fail(csv, "csv.quote", "must differ from csv.delimiter");
        p.skip_records = static_cast<size_t>(r.integer(*csv, "csv.", "skip_records", 0, 1000).value_or(0));
        p.require_final_newline = r.boolean(*csv, "csv.", "require_final_newline").value_or(true);
    }
    if (auto* fixed = r.table(root, "", "fixed")) {
        if (p.format != Format::fixed) r.fail(fixed, "fixed", "only for format = \"fixed\"");
        r.only(*fixed, "fixed.", {"record_bytes", "line_end", "skip_records", "require_final_newline"});
        auto rb = r.integer(*fixed, "fixed.", "record_bytes", 1, 65536);
        if (!rb) r.fail(fixed, "fixed.record_bytes", "required: bytes per record, without the line end");
        p.record_bytes = static_cast<size_t>(*rb);
        auto le = r.str(*fixed, "fixed.", "line_end").value_or("crlf");
        if (le == "crlf") p.line_end = LineEnd::crlf;
        else if (le == "lf") p.line_end = LineEnd::lf;
        else if (le == "none") p.line_end = LineEnd::none;
        else r.fail(fixed->get("line_end"), "fixed.line_end", "must be crlf, lf or none");
        p.skip_records = static_cast<size_t>(r.integer(*fixed, "fixed.", "skip_records", 0, 1000).value_or(0));
        p.require_final_newline = r.boolean(*fixed, "fixed.", "require_final_newline").value_or(p.line_end != LineEnd::none);
    } else if (p.format == Format::fixed) {
        r.fail(nullptr, "fixed", "required for format = \"fixed\" (record_bytes, line_end)");
    }
    if (auto* lim = r.table(root, "", "limits")) {
        r.only(*lim, "limits.", {"max_records", "max_line_bytes"});
        p.max_records = static_cast<size_t>(r.integer(*lim, "limits.", "max_records", 1, 10000000).value_or(100000));
        p.max_line_bytes = static_cast<size_t>(r.integer(*lim, "limits.", "max_line_bytes", 16, 1 << 20).value_or(65536));
    }
    if (p.format == Format::fixed && p.record_bytes > p.max_line_bytes)
        r.fail(nullptr, "fixed.record_bytes", "exceeds limits.max_line_bytes");
    if (auto g = r.str(root, "", "gaiji_table")) {
        std::filesystem::path gp(*g);
        p.gaiji_table = gp.is_absolute() ? gp : base_dir / gp;
    }

    auto* fields = r.table(root, "", "field");
    if (!fields) r.fail(nullptr, "field", "required: the mapping of 本人確認情報 items ([field.person.residentCode] ...)");
    collect_unknown(r, *fields, "");
    for (auto& info : kItems) {
        auto* node = fields->at_path(info.path).node();
        std::string key = std::string("field.") + info.path;
        if (!node) {
            if (info.required) r.fail(fields, key, "required: every record of juki needs it");
            continue;
        }
        if (!node->is_table()) r.fail(node, key, "must be a table (column = ..., offset = ..., or value = ...)");
        auto& t = *node->as_table();
        FieldSpec f;
        f.item = info.item;
        f.line = static_cast<int>(node->source().begin.line);
        r.only(t, key + ".", {"column", "offset", "width", "value", "trim", "kana", "date", "codes"});
        auto column = t.get("column");
        if (column && column->is_string()) f.column = column->as_string()->get();
        else if (column && column->is_integer()) {
            auto v = column->as_integer()->get();
            if (v < 1 || v > 4096) r.fail(column, key + ".column", "a column number must be in 1..4096");
            f.index = static_cast<size_t>(v);
        } else if (column) r.fail(column, key + ".column", "must be a header name or a 1-based column number");
        auto offset = r.integer(t, key + ".", "offset", 0, 65535);
        auto width = r.integer(t, key + ".", "width", 1, 65536);
        f.value = r.str(t, key + ".", "value");
        int sources = (column ? 1 : 0) + (offset || width ? 1 : 0) + (f.value ? 1 : 0);
        if (sources != 1) r.fail(node, key, "give exactly one source: column (csv), offset + width (fixed) or value");
        if (column && p.format != Format::csv) r.fail(column, key + ".column", "only for format = \"csv\"");
        if (column && !f.index && f.column.empty()) r.fail(column, key + ".column", "must not be empty");
        if (column && !f.index && !p.header)
            r.fail(column, key + ".column", "a column by name needs csv.header = true; give its number instead");
        if (offset || width) {
            if (p.format != Format::fixed) r.fail(node, key, "offset and width are only for format = \"fixed\"");
            if (!offset || !width) r.fail(node, key, "give both offset and width (bytes)");
            f.offset = static_cast<size_t>(*offset);
            f.width = static_cast<size_t>(*width);
            if (f.offset + f.width > p.record_bytes)
                r.fail(node, key, "offset + width (" + std::to_string(f.offset + f.width) +
                                      ") is beyond fixed.record_bytes (" + std::to_string(p.record_bytes) + ")");
        }
        f.trim = r.boolean(t, key + ".", "trim").value_or(true);
        if (auto kana = r.str(t, key + ".", "kana")) {
            if (info.item != Item::kana && info.item != Item::formerSurnameKana)
                r.fail(t.get("kana"), key + ".kana", "only for kana items");
            if (*kana == "halfwidth") f.halfwidth_kana = true;
            else if (*kana != "fullwidth") r.fail(t.get("kana"), key + ".kana", "must be fullwidth or halfwidth");
        }
        if (auto d = r.str(t, key + ".", "date")) {
            if (info.item != Item::dateOfBirth && info.item != Item::changeDate)
                r.fail(t.get("date"), key + ".date", "only for date items");
            if (*d == "yyyymmdd") f.date = DateFormat::yyyymmdd;
            else if (*d == "yyyy-mm-dd") f.date = DateFormat::yyyy_mm_dd;
            else if (*d == "yyyy/mm/dd") f.date = DateFormat::yyyy_slash_mm_dd;
            else if (*d == "gyymmdd") f.date = DateFormat::gyymmdd;
            else r.fail(t.get("date"), key + ".date", "must be yyyymmdd, yyyy-mm-dd, yyyy/mm/dd or gyymmdd (和暦)");
        }
        if (auto* codes = r.table(t, key + ".", "codes")) {
            if (info.item != Item::reason && info.item != Item::sex)
                r.fail(codes, key + ".codes", "only for reason and person.sex");
            for (auto& [k, v] : *codes) {
                std::string ck = key + ".codes." + std::string(k.str());
                if (!v.is_string()) r.fail(&v, ck, "must be a string");
                std::string target = v.as_string()->get();
                bool ok = false;
                if (info.item == Item::reason) {
                    for (size_t i = 1; i < std::size(kReasons); ++i) ok = ok || target == kReasons[i];
                    if (!ok) {
                        std::string list;
                        for (size_t i = 1; i < std::size(kReasons); ++i) list += std::string(i > 1 ? ", " : "") + kReasons[i];
                        r.fail(&v, ck, "must name a juki ChangeReason (" + list + ")");
                    }
                } else if (target != "male" && target != "female") {
                    r.fail(&v, ck, "must be male or female");
                }
                f.codes[std::string(k.str())] = target;
            }
        }
        if ((info.item == Item::reason || info.item == Item::sex) && f.codes.empty() && !f.value)
            r.fail(node, key, "needs codes = { \"<vendor code>\" = \"<schema value>\", ... }");
        p.fields.push_back(std::move(f));
    }
    return p;
}

Profile load_profile(const std::filesystem::path& file) {
    return parse_profile(read_all(file, "profile"), file.string(), file.parent_path());
}

GaijiTable parse_gaiji_table(std::string_view toml_text, const std::string& source) {
    Reader r(source);
    auto root = r.parse(toml_text);
    r.only(root, "", {"municipality", "description", "char"});
    GaijiTable g;
    g.source = source;
    auto m = r.str(root, "", "municipality");
    if (!m) r.fail(nullptr, "municipality", "required: the 全国地方公共団体コード the table belongs to");
    if (auto v = validate::local_gov_code("municipality", *m); !v) r.fail(root.get("municipality"), "municipality", v.message);
    g.municipality = *m;
    auto* chars = root.get("char");
    if (!chars) return g;
    if (!chars->is_array_of_tables()) r.fail(chars, "char", "must be an array of tables ([[char]])");
    size_t i = 0;
    for (auto& n : *chars->as_array()) {
        std::string key = "char[" + std::to_string(i++) + "]";
        auto& t = *n.as_table();
        r.only(t, key + ".", {"vendor", "canonical", "note"});
        auto vendor = r.str(t, key + ".", "vendor");
        auto canonical = r.str(t, key + ".", "canonical");
        if (!vendor || !canonical) r.fail(&n, key, "needs vendor = \"U+E000\" and canonical = \"U+XXXX[ U+XXXX]\"");
        auto v = code_point(*vendor);
        if (!v || !is_private_use(*v))
            r.fail(t.get("vendor"), key + ".vendor", "must be a private-use code point written U+XXXX (E000..F8FF or planes 15-16)");
        std::u32string c;
        std::istringstream parts(*canonical);
        std::string part;
        while (parts >> part) {
            auto cp = code_point(part);
            if (!cp || *cp < 0x20) r.fail(t.get("canonical"), key + ".canonical", "each code point must be written U+XXXX");
            c.push_back(*cp);
        }
        if (c.empty() || c.size() > 4) r.fail(t.get("canonical"), key + ".canonical", "must give 1 to 4 code points");
        if (!g.map.emplace(*v, c).second) r.fail(t.get("vendor"), key + ".vendor", "mapped twice");
    }
    return g;
}

GaijiTable load_gaiji_table(const std::filesystem::path& file) {
    return parse_gaiji_table(read_all(file, "外字 table"), file.string());
}

} // namespace renkei::legacy_file
