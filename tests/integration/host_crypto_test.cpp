// Plugins sign, seal and open through the host, in-process and isolated, without ever seeing a
// private key; the results verify with the node's public keys.
#include "collector.hpp"
#include "test_support.hpp"

#include <renkei/host.hpp>
#include <renkei/keys.hpp>

#include <gtest/gtest.h>

using namespace renkei;
using namespace renkei::test;

class HostCrypto : public ::testing::TestWithParam<Isolation> {};

TEST_P(HostCrypto, PluginSignsSealsAndOpensWithHostKeys) {
    TempDir tmp;
    auto card = generate_node_keys(tmp / "keys", "muni:131016");
    HostConfig cfg;
    cfg.node_id = "muni:131016";
    cfg.data_dir = tmp / "data";
    cfg.keys_dir = tmp / "keys";
    PluginConfig pc;
    pc.name = "signer";
    pc.path = plugin_path("tests/plugins", "signer");
    pc.isolation = GetParam();
    pc.settings = toml::table{{"recipient", "muni:131016"}};
    cfg.plugins.push_back(pc);
    HostOptions opts;
    opts.runner_path = RENKEI_BINARY;
    Host host(cfg, opts);
    host.start();
    Collector client("client", {"signer.Signed", "signer.Sealed", "signer.Opened", "signer.Sign.Fault",
                                "signer.Seal.Fault", "signer.Open.Fault"});
    host.add_endpoint(client.endpoint());

    const std::string doc = "本人確認情報 update 0001";
    send_request(host, client.name(), "signer.Sign", doc);
    send_request(host, client.name(), "signer.Seal", doc);
    auto got = client.wait_for(2);
    ASSERT_EQ(got.size(), 2u);
    std::string sig, sealed;
    for (auto& r : got) {
        if (r.type == "signer.Signed") sig = r.payload;
        if (r.type == "signer.Sealed") sealed = r.payload;
    }
    auto verify = crypto::VerifyKey::from_raw(crypto::from_hex(card.sign_public));
    EXPECT_TRUE(verify.verify(crypto::view(doc), crypto::view(sig)));
    EXPECT_FALSE(verify.verify(crypto::view(doc + "x"), crypto::view(sig)));
    ASSERT_GT(sealed.size(), doc.size());
    EXPECT_EQ(sealed.find(doc), std::string::npos); // not readable on the way

    send_request(host, client.name(), "signer.Open", sealed);
    std::string tampered = sealed;
    tampered[tampered.size() / 2] ^= 1;
    send_request(host, client.name(), "signer.Open", tampered);
    got = client.wait_for(4);
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(got[2].type, "signer.Opened");
    EXPECT_EQ(got[2].payload, doc);
    EXPECT_EQ(got[3].type, "signer.Open.Fault");
    EXPECT_EQ(got[3].fault_code, static_cast<uint32_t>(RENKEI_ERR_DENIED));
    host.stop();
}

TEST_P(HostCrypto, WithoutKeysPluginsGetAClearError) {
    TempDir tmp;
    HostConfig cfg;
    cfg.node_id = "muni:131016";
    cfg.data_dir = tmp / "data";
    cfg.keys_dir = tmp / "no-keys";
    PluginConfig pc;
    pc.name = "signer";
    pc.path = plugin_path("tests/plugins", "signer");
    pc.isolation = GetParam();
    cfg.plugins.push_back(pc);
    HostOptions opts;
    opts.runner_path = RENKEI_BINARY;
    Host host(cfg, opts);
    host.start();
    Collector client("client", {"signer.Signed", "signer.Sign.Fault"});
    host.add_endpoint(client.endpoint());
    send_request(host, client.name(), "signer.Sign", "x");
    auto got = client.wait_for(1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].type, "signer.Sign.Fault");
    EXPECT_NE(got[0].fault_message.find("run renkei keygen"), std::string::npos) << got[0].fault_message;
    host.stop();
}

INSTANTIATE_TEST_SUITE_P(Modes, HostCrypto, ::testing::Values(Isolation::in_process, Isolation::process),
                         [](const auto& info) { return info.param == Isolation::process ? "isolated" : "in_process"; });
