// juki: the 住基ネット business plugin. One plugin, a role per node (`[plugin.settings] role`).
// This first part serves the national role's 個人番号 generation (番号法8条, 7条2項); see
// ../README.md for the message catalogue and what follows.
#include "numbers.hpp"

#include <juki.capnp.h>

#include <renkei/sdk.hpp>
#include <renkei/validate.hpp>

#include <fstream>
#include <iterator>
#include <memory>

namespace {

using renkei::sdk::Error;

std::string hex(kj::ArrayPtr<const kj::byte> b) {
    static const char d[] = "0123456789abcdef";
    std::string s;
    for (auto c : b) {
        s.push_back(d[c >> 4]);
        s.push_back(d[c & 15]);
    }
    return s;
}

class Juki : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;

    void start() override {
        role_ = host().config_or("role", "");
        if (role_ != "national")
            throw Error(RENKEI_ERR_INVALID,
                        "settings.role: '" + role_ + "' is not served by this version (national only; cs and pref "
                        "arrive with the update chain)",
                        "settings.role", "juki.role");
        auto store = host().config("store");
        if (!store || store->empty()) throw Error(RENKEI_ERR_INVALID, "settings.store: required (SQLite file)", "settings.store");
        auto secret_file = host().config("number_secret_file");
        if (!secret_file) throw Error(RENKEI_ERR_INVALID, "settings.number_secret_file: required for role national",
                                      "settings.number_secret_file");
        std::ifstream in(*secret_file, std::ios::binary);
        if (!in) throw Error(RENKEI_ERR_INVALID, "settings.number_secret_file: cannot read " + *secret_file,
                             "settings.number_secret_file");
        std::vector<uint8_t> secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        numbers_ = std::make_unique<renkei::juki::NumberRegistry>(*store, std::move(secret));
        host().info("juki role national: 個人番号 generation from " + *store);
    }

    void handle(const renkei::sdk::Message& m) override {
        if (m.type() != "juki.NumberRequest")
            throw Error(RENKEI_ERR_UNSUPPORTED, "juki (national) does not handle " + m.type(), "type");
        auto payload = m.parse<renkei::juki::NumberRequest>();
        auto req = payload.get();
        std::string code = req.getResidentCode();
        if (auto r = renkei::validate::resident_code("residentCode", code); !r)
            throw Error(RENKEI_ERR_INVALID, r.message, r.field, r.rule);
        if (req.getChange() && req.getReason().size() == 0)
            throw Error(RENKEI_ERR_INVALID, "reason: a change of 個人番号 (番号法7条2項) must give its reason", "reason",
                        "juki.change_reason");
        auto a = numbers_->assign(hex(m.envelope().getId()), code, req.getChange(), req.getReason(), host().now_unix_ms());
        capnp::MallocMessageBuilder mb;
        auto out = mb.initRoot<renkei::juki::NumberAssigned>();
        out.setResidentCode(code);
        out.setMyNumber(a.my_number);
        out.setPrevious(a.previous);
        out.setGeneration(a.generation);
        auto flat = capnp::messageToFlatArray(mb);
        host().reply(m, "juki.NumberAssigned", flat.asBytes());
    }

private:
    std::string role_;
    std::unique_ptr<renkei::juki::NumberRegistry> numbers_;
};

} // namespace

RENKEI_PLUGIN(Juki, "juki", "0.1.0", RENKEI_KIND_BUSINESS, "juki.NumberRequest")
