// Sealed media bundles: round trips, and every way a bundle can be refused (altered anywhere,
// truncated anywhere, sealed to someone else, signed by someone untrusted, a manifest that lies),
// with nothing ever left in the import directory of a refused one.
#include "test_support.hpp"

#include <renkei/media.hpp>

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <set>

using namespace renkei;
using namespace renkei::test;
namespace fs = std::filesystem;

namespace {

MediaIdentity node(const std::string& id) {
    return MediaIdentity{id, crypto::SigningKey::generate(), crypto::SealKeyPair::generate(), {}};
}

// `a` trusts `b`'s signing and sealing keys.
void trust(MediaIdentity& a, const MediaIdentity& b) {
    a.parties[b.node_id] = {{b.sign.public_raw()}, b.seal.public_key};
}

std::string bytes_of(const fs::path& p) { return read_file(p); }

void put(const fs::path& p, const std::string& data) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Lines of pseudo-random printable text, `bytes` long, ending without a newline when `ragged`.
std::string text(size_t bytes, unsigned seed, bool ragged = false) {
    std::mt19937 rng(seed);
    std::string s;
    s.reserve(bytes);
    while (s.size() < bytes) {
        size_t len = 20 + rng() % 100;
        for (size_t i = 0; i < len && s.size() < bytes; ++i) s.push_back(static_cast<char>('A' + rng() % 26));
        if (s.size() < bytes) s.push_back('\n');
    }
    if (!ragged && s.back() != '\n') s.back() = '\n';
    if (ragged && s.back() == '\n') s.back() = 'Z';
    return s;
}

size_t count_lines(const std::string& s) {
    return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')) + (!s.empty() && s.back() != '\n' ? 1 : 0);
}

// The names in a directory (none when it does not exist).
std::set<std::string> listing(const fs::path& dir) {
    std::set<std::string> names;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir, ec)) names.insert(e.path().filename().string());
    return names;
}

// Where the parts of a bundle lie, read the way the format is specified (docs/media.md).
struct Layout {
    size_t header_at = 0, header_len = 0, manifest_at = 0, manifest_len = 0, head_sig_at = 0;
    struct Chunk {
        size_t frame_at, data_at, length, tag_at;
        bool final;
    };
    std::vector<Chunk> chunks;
    size_t trailer_at = 0, body_sig_at = 0, size = 0;
};

uint32_t be32(const std::string& b, size_t at) {
    auto u = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(b[at + i])); };
    return u(0) << 24 | u(1) << 16 | u(2) << 8 | u(3);
}

Layout layout_of(const std::string& b) {
    Layout l;
    l.size = b.size();
    l.header_len = be32(b, 8);
    l.header_at = 12;
    l.manifest_len = be32(b, l.header_at + l.header_len);
    l.manifest_at = l.header_at + l.header_len + 4;
    l.head_sig_at = l.manifest_at + l.manifest_len;
    size_t at = l.head_sig_at + 64;
    while (b.at(at) == 'C') {
        Layout::Chunk c{at, at + 6, be32(b, at + 2), 0, (b[at + 1] & 1) != 0};
        c.tag_at = c.data_at + c.length;
        l.chunks.push_back(c);
        at = c.tag_at + 16;
    }
    l.trailer_at = at;
    l.body_sig_at = at + 1;
    EXPECT_EQ(l.body_sig_at + 64, b.size()) << "test's reading of the layout";
    return l;
}

class Media : public ::testing::Test {
protected:
    void SetUp() override {
        trust(muni, pref);
        trust(muni, other);
        trust(muni, muni);
        trust(pref, muni);
        trust(pref, other);
        trust(other, muni);
        trust(other, pref);
    }

    ExportFile file(const std::string& name, const std::string& data, RecordCount count = {}) {
        auto p = tmp / "src" / name;
        fs::create_directories(p.parent_path());
        put(p, data);
        return {p, count};
    }

    BundleInfo export_to(const MediaIdentity& from, const std::string& to, const fs::path& out, std::vector<ExportFile> files,
                         uint64_t chunk = 64u << 10,
                         std::function<void(std::vector<ManifestFile>&)> edit = {}) {
        ExportOptions o;
        o.recipient = to;
        o.out = out;
        o.files = std::move(files);
        o.chunk_bytes = chunk;
        o.now_ms = 1'714'555'800'250;
        o.edit_manifest = std::move(edit);
        return export_bundle(from, o);
    }

    // A small bundle of three files and eight chunks, muni -> pref.
    fs::path small_bundle() {
        auto out = tmp / "small.rkm";
        if (!fs::exists(out))
            export_to(muni, "pref:13", out,
                      {file("a.txt", text(10000, 1)), file("b.txt", text(20000, 2, true)),
                       file("c.dat", std::string(4096 * 3, 'x'), RecordCount::parse("fixed:64"))},
                      4096);
        return out;
    }

    // Imports `bundle` as pref into a fresh directory; expects a refusal of `kind` whose message
    // holds `says`, and that the directory holds nothing afterwards.
    void expect_refused(const fs::path& bundle, MediaFailure kind, const std::string& says, const MediaIdentity* as = nullptr) {
        auto dir = tmp / ("in-" + std::to_string(++imports));
        try {
            import_bundle(as ? *as : pref, bundle, dir);
            ADD_FAILURE() << "imported, but should be refused (" << to_string(kind) << ": " << says << ")";
        } catch (const MediaError& e) {
            EXPECT_EQ(e.failure(), kind) << e.what();
            EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
        }
        EXPECT_TRUE(listing(dir).empty()) << "a refused import left files in " << dir;
    }

    // A copy of the small bundle with `edit` applied to its bytes.
    fs::path edited(const std::function<void(std::string&)>& edit) {
        auto b = bytes_of(small_bundle());
        edit(b);
        auto p = tmp / ("edited-" + std::to_string(++edits) + ".rkm");
        put(p, b);
        return p;
    }

    TempDir tmp;
    MediaIdentity muni = node("muni:131016"), pref = node("pref:13"), other = node("pref:14");
    int imports = 0, edits = 0;
};

} // namespace

TEST(RecordCount, ParsesLinesAndFixedAndNamesTheRule) {
    EXPECT_EQ(RecordCount::parse("lines").to_string(), "lines");
    EXPECT_EQ(RecordCount::parse("fixed:128").record_bytes, 128u);
    for (std::string bad : {"", "line", "fixed:", "fixed:0", "fixed:-1", "fixed:2000000", "fixed:12x"}) {
        try {
            RecordCount::parse(bad);
            ADD_FAILURE() << bad;
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("use \"lines\" or \"fixed:N\""), std::string::npos) << e.what();
        }
    }
}

TEST_F(Media, RoundTripOfSeveralFilesIncludingSeveralMegabytes) {
    std::string records = "1,山田太郎,東京都千代田区\n2,鈴木花子,大阪府大阪市\n3,佐藤次郎,北海道札幌市\n";
    std::string big = text(5'500'123, 7, true); // several MB, many chunks, a ragged last line
    std::string exact = text(3 * (64u << 10), 8); // exactly three chunks
    std::string fixed(100 * 250, '\0');
    for (size_t i = 0; i < fixed.size(); ++i) fixed[i] = static_cast<char>(i * 31);
    auto out = tmp / "bundle.rkm";
    auto info = export_to(muni, "pref:13", out,
                          {file("records.csv", records), file("empty.txt", ""), file("big.txt", big),
                           file("exact.txt", exact), file("fixed.dat", fixed, RecordCount::parse("fixed:100"))});
    ASSERT_EQ(info.files.size(), 5u);
    EXPECT_EQ(info.files[0].records, 3u);
    EXPECT_EQ(info.files[1].records, 0u);
    EXPECT_EQ(info.files[2].records, count_lines(big));
    EXPECT_EQ(info.files[4].records, 250u);
    EXPECT_EQ(info.sender, "muni:131016");
    EXPECT_EQ(info.recipient, "pref:13");
    EXPECT_EQ(info.created, "2024-05-01T09:30:00.250Z");
    EXPECT_EQ(listing(tmp.path()).count(".bundle.rkm.tmp"), 0u);
    for (auto& n : listing(tmp.path())) EXPECT_EQ(n.find(".tmp-"), std::string::npos) << "temporary file left: " << n;

    // No plaintext in the bundle.
    auto sealed = bytes_of(out);
    EXPECT_EQ(sealed.find("山田太郎"), std::string::npos);
    EXPECT_EQ(sealed.find(big.substr(1000, 40)), std::string::npos);
    EXPECT_GT(sealed.size(), big.size());

    // What an operator sees without the key is what was exported.
    auto seen = read_bundle_info(out);
    EXPECT_EQ(seen.bundle_id, info.bundle_id);
    EXPECT_EQ(seen.total_records(), info.total_records());
    EXPECT_EQ(seen.files[2].sha256, info.files[2].sha256);
    EXPECT_EQ(verify_bundle(other, out).bundle_id, info.bundle_id) << "any node trusting the sender can verify it";

    auto dir = tmp / "inbox";
    fs::create_directories(dir);
    put(dir / "unrelated.txt", "kept");
    auto result = import_bundle(pref, out, dir);
    ASSERT_EQ(result.written.size(), 5u);
    EXPECT_EQ(bytes_of(dir / "records.csv"), records);
    EXPECT_EQ(bytes_of(dir / "empty.txt"), "");
    EXPECT_EQ(bytes_of(dir / "big.txt"), big);
    EXPECT_EQ(bytes_of(dir / "exact.txt"), exact);
    EXPECT_EQ(bytes_of(dir / "fixed.dat"), fixed);
    EXPECT_EQ(bytes_of(dir / "unrelated.txt"), "kept");
    EXPECT_EQ(listing(dir), (std::set<std::string>{"records.csv", "empty.txt", "big.txt", "exact.txt", "fixed.dat",
                                                   "unrelated.txt"}))
        << "no staging directory left";
    struct stat st{};
    ASSERT_EQ(::stat((dir / "big.txt").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 077, 0u) << "imported files are private (0600)";

    // A second import finds the names taken and changes nothing.
    try {
        import_bundle(pref, out, dir);
        ADD_FAILURE() << "imported over existing files";
    } catch (const MediaError& e) {
        EXPECT_EQ(e.failure(), MediaFailure::exists) << e.what();
        EXPECT_NE(std::string(e.what()).find("already exists (never overwritten)"), std::string::npos) << e.what();
    }
    EXPECT_EQ(bytes_of(dir / "records.csv"), records);
}

TEST_F(Media, FlippedByteInTheHeaderManifestSignaturesCiphertextOrTagIsRefused) {
    auto original = bytes_of(small_bundle());
    auto l = layout_of(original);
    ASSERT_EQ(l.chunks.size(), 3u + 5u + 3u); // a.txt: 3, b.txt: 5, c.dat: 3 chunks of 4 KiB
    auto flip_at = [&](size_t at) { return edited([at](std::string& b) { b[at] ^= 0x01; }); };
    auto inside = [&](size_t at, size_t len, const std::string& needle) {
        auto pos = original.find(needle, at);
        EXPECT_LT(pos, at + len) << needle;
        return pos;
    };
    // A digit of the creation time in the header, and of a record count in the manifest: still
    // well-formed TOML, so only the sender's signature can tell.
    expect_refused(flip_at(inside(l.header_at, l.header_len, "2024-05-01") + 3), MediaFailure::altered,
                   "the header or manifest was altered");
    expect_refused(flip_at(inside(l.manifest_at, l.manifest_len, "records = ") + 10), MediaFailure::altered,
                   "the header or manifest was altered");
    expect_refused(flip_at(inside(l.manifest_at, l.manifest_len, "sha256 = '") + 12), MediaFailure::altered,
                   "the header or manifest was altered");
    expect_refused(flip_at(l.head_sig_at + 10), MediaFailure::altered, "the header or manifest was altered");
    expect_refused(flip_at(l.chunks[0].data_at + 100), MediaFailure::altered, "chunk 0 of a.txt");
    expect_refused(flip_at(l.chunks[4].data_at + 4095), MediaFailure::altered, "chunk 1 of b.txt");
    expect_refused(flip_at(l.chunks[2].tag_at + 15), MediaFailure::altered, "chunk 2 of a.txt");
    expect_refused(flip_at(l.chunks[10].tag_at), MediaFailure::altered, "chunk 2 of c.dat");
    expect_refused(flip_at(l.chunks[5].frame_at + 1), MediaFailure::altered, "chunk 2 of b.txt"); // marked final
    expect_refused(flip_at(l.chunks[7].frame_at + 1), MediaFailure::altered, "impossible frame"); // final, short, unmarked
    expect_refused(flip_at(l.chunks[7].frame_at + 5), MediaFailure::altered, "chunk 4 of b.txt"); // length
    expect_refused(flip_at(l.body_sig_at + 63), MediaFailure::altered, "over the whole bundle does not verify");

    // And a flip anywhere at all: every byte position of the bundle in steps, plus each part's
    // first and last byte, is refused with nothing imported.
    std::set<size_t> positions;
    for (size_t at = 0; at < original.size(); at += original.size() / 97) positions.insert(at);
    for (size_t at : {l.header_at, l.manifest_at - 1, l.manifest_at, l.head_sig_at - 1, l.head_sig_at, l.trailer_at,
                      l.body_sig_at, l.size - 1})
        positions.insert(at);
    for (auto& c : l.chunks)
        for (size_t at : {c.frame_at, c.frame_at + 2, c.data_at, c.tag_at - 1, c.tag_at, c.tag_at + 15}) positions.insert(at);
    for (size_t at : positions) {
        auto p = flip_at(at);
        auto dir = tmp / ("sweep-" + std::to_string(at));
        try {
            import_bundle(pref, p, dir);
            ADD_FAILURE() << "a flipped byte at " << at << " was not noticed";
        } catch (const MediaError& e) {
            EXPECT_NE(e.failure(), MediaFailure::io) << at << ": " << e.what();
        }
        EXPECT_TRUE(listing(dir).empty()) << at;
        // Verification without the key notices it as well.
        EXPECT_THROW(verify_bundle(other, p), MediaError) << at;
        fs::remove(p);
    }
}

TEST_F(Media, TruncatedAnywhereIsRefused) {
    auto original = bytes_of(small_bundle());
    auto l = layout_of(original);
    auto cut_at = [&](size_t n) { return edited([n](std::string& b) { b.resize(n); }); };
    expect_refused(cut_at(0), MediaFailure::malformed, "not a renkei media bundle");
    expect_refused(cut_at(10), MediaFailure::truncated, "the header length is cut short");
    expect_refused(cut_at(l.header_at + 20), MediaFailure::truncated, "the header is cut short");
    expect_refused(cut_at(l.manifest_at + 5), MediaFailure::truncated, "the manifest is cut short");
    expect_refused(cut_at(l.head_sig_at + 30), MediaFailure::truncated, "the header signature is cut short");
    expect_refused(cut_at(l.chunks[0].data_at + 10), MediaFailure::truncated, "chunk 0 of a.txt is cut short");
    expect_refused(cut_at(l.chunks[1].frame_at), MediaFailure::truncated, "a.txt ends without its final chunk");
    expect_refused(cut_at(l.chunks[3].frame_at), MediaFailure::truncated, "b.txt ends without its final chunk");
    expect_refused(cut_at(l.chunks[9].frame_at + 3), MediaFailure::truncated, "chunk 1 of c.dat's frame is cut short");
    expect_refused(cut_at(l.trailer_at), MediaFailure::truncated, "the trailer is missing");
    expect_refused(cut_at(l.body_sig_at), MediaFailure::truncated, "the trailer signature is cut short");
    expect_refused(cut_at(l.size - 1), MediaFailure::truncated, "the trailer signature is cut short");

    // Whole chunks cut out of the middle, the final chunk of the last file with them: the trailer
    // now comes too early.
    expect_refused(edited([&](std::string& b) { b.erase(l.chunks[9].frame_at, l.trailer_at - l.chunks[9].frame_at); }),
                   MediaFailure::truncated, "before the final chunk of c.dat");
    // A middle chunk cut out: the next one is out of place and does not authenticate there.
    expect_refused(edited([&](std::string& b) { b.erase(l.chunks[4].frame_at, l.chunks[5].frame_at - l.chunks[4].frame_at); }),
                   MediaFailure::altered, "chunk 1 of b.txt");
    // Two chunks swapped.
    expect_refused(edited([&](std::string& b) {
                       auto c4 = b.substr(l.chunks[4].frame_at, l.chunks[5].frame_at - l.chunks[4].frame_at);
                       auto c5 = b.substr(l.chunks[5].frame_at, l.chunks[6].frame_at - l.chunks[5].frame_at);
                       b.replace(l.chunks[4].frame_at, c4.size() + c5.size(), c5 + c4);
                   }),
                   MediaFailure::altered, "chunk 1 of b.txt");
    // Something appended after the trailer.
    expect_refused(edited([](std::string& b) { b += "extra"; }), MediaFailure::altered, "5 unexpected byte(s) after the trailer");
}

TEST_F(Media, SealedToAnotherNodeIsRefused) {
    auto out = tmp / "for-14.rkm";
    export_to(muni, "pref:14", out, {file("a.txt", text(5000, 3))});
    expect_refused(out, MediaFailure::wrong_recipient, "sealed to pref:14, not to this node pref:13; refused");
    auto dir = tmp / "ok-14";
    EXPECT_EQ(import_bundle(other, out, dir).written.size(), 1u) << "the node it is sealed to opens it";

    // pref:13's sealing key was rotated: a bundle sealed to the old key cannot be opened with the new one.
    auto before = tmp / "old-key.rkm";
    export_to(muni, "pref:13", before, {file("b.txt", text(5000, 4))});
    MediaIdentity rotated = pref;
    rotated.seal = crypto::SealKeyPair::generate();
    expect_refused(before, MediaFailure::wrong_recipient, "which pref:13 does not hold", &rotated);

    // And a header edited to name pref:13 instead fails the sender's signature.
    auto b = bytes_of(out);
    auto at = b.find("recipient = 'pref:14'");
    ASSERT_NE(at, std::string::npos);
    b[at + std::string("recipient = 'pref:1").size()] = '3';
    put(tmp / "readdressed.rkm", b);
    expect_refused(tmp / "readdressed.rkm", MediaFailure::altered, "the header or manifest was altered");
}

TEST_F(Media, SignedByAnUntrustedKeyOrUnknownSenderIsRefused) {
    MediaIdentity impostor = node("muni:131016"); // claims the node id, holds another key
    trust(impostor, pref);
    auto forged = tmp / "forged.rkm";
    export_to(impostor, "pref:13", forged, {file("a.txt", text(5000, 5))});
    expect_refused(forged, MediaFailure::untrusted_sender, "which is not trusted for muni:131016");

    MediaIdentity stranger = node("agency:nta");
    trust(stranger, pref);
    auto unknown = tmp / "stranger.rkm";
    export_to(stranger, "pref:13", unknown, {file("a.txt", text(5000, 6))});
    expect_refused(unknown, MediaFailure::untrusted_sender, "the sender agency:nta is not a node pref:13 trusts");

    // The sender key named in the header swapped for a trusted one: the signatures do not match it.
    auto b = bytes_of(forged);
    auto at = b.find(crypto::to_hex(impostor.sign.public_raw()));
    ASSERT_NE(at, std::string::npos);
    b.replace(at, 64, crypto::to_hex(muni.sign.public_raw()));
    put(tmp / "key-swapped.rkm", b);
    expect_refused(tmp / "key-swapped.rkm", MediaFailure::altered, "the header or manifest was altered");
}

TEST_F(Media, AManifestThatDisagreesWithTheFilesIsRefused) {
    auto data = text(30000, 9);
    auto lines = count_lines(data);
    auto count_off = tmp / "count.rkm";
    export_to(muni, "pref:13", count_off, {file("ok.txt", "one\ntwo\n"), file("a.txt", data)}, 4096,
              [](std::vector<ManifestFile>& files) { files[1].records += 1; });
    expect_refused(count_off, MediaFailure::mismatch,
                   "a.txt holds " + std::to_string(lines) + " record(s) (lines) but the manifest says " +
                       std::to_string(lines + 1));

    auto digest_off = tmp / "digest.rkm";
    export_to(muni, "pref:13", digest_off, {file("a.txt", data), file("z.txt", "z\n")}, 4096,
              [](std::vector<ManifestFile>& files) { files[0].sha256[5] = files[0].sha256[5] == 'a' ? 'b' : 'a'; });
    expect_refused(digest_off, MediaFailure::mismatch, "a.txt has SHA-256 ");

    auto size_off = tmp / "size.rkm";
    export_to(muni, "pref:13", size_off, {file("a.txt", data)}, 4096,
              [](std::vector<ManifestFile>& files) { files[0].bytes -= 10; });
    expect_refused(size_off, MediaFailure::mismatch, "a.txt is longer than the 29990 bytes the manifest says");

    auto fixed_off = tmp / "fixed.rkm";
    export_to(muni, "pref:13", fixed_off, {file("f.dat", std::string(1000, 'x'), RecordCount::parse("fixed:100"))}, 4096,
              [](std::vector<ManifestFile>& files) { files[0].count = RecordCount::parse("fixed:300"); });
    expect_refused(fixed_off, MediaFailure::mismatch, "f.dat holds no whole number of record(s) (fixed:300)");
}

TEST_F(Media, ExportRefusesBadInputAndNeverOverwrites) {
    auto out = tmp / "x.rkm";
    auto expect_bad = [&](std::vector<ExportFile> files, const std::string& to, const std::string& says,
                          MediaFailure kind = MediaFailure::bad_input) {
        try {
            export_to(muni, to, out, std::move(files));
            ADD_FAILURE() << says;
        } catch (const MediaError& e) {
            EXPECT_EQ(e.failure(), kind) << e.what();
            EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
        }
        for (auto& n : listing(tmp.path())) EXPECT_EQ(n.find(".tmp-"), std::string::npos) << n;
    };
    expect_bad({file("a.txt", "a\n")}, "agency:nobody", "no trusted sealing key for agency:nobody");
    expect_bad({}, "pref:13", "no files to export");
    expect_bad({file("f.dat", std::string(250, 'x'), RecordCount::parse("fixed:100"))}, "pref:13",
               "250 bytes is not a whole number of 100-byte records");
    fs::create_directories(tmp / "other");
    put(tmp / "other" / "a.txt", "b\n");
    expect_bad({file("a.txt", "a\n"), {tmp / "other" / "a.txt", {}}}, "pref:13", "another file is also named 'a.txt'");
    expect_bad({file(".hidden", "a\n")}, "pref:13", "starts with '.'");
    expect_bad({{tmp / "missing.txt", {}}}, "pref:13", "missing.txt: cannot open", MediaFailure::io);
    EXPECT_FALSE(fs::exists(out)) << "nothing written for refused exports";

    put(out, "precious");
    expect_bad({file("a.txt", "a\n")}, "pref:13", "already exists (never overwritten)", MediaFailure::exists);
    ASSERT_TRUE(fs::exists(out));
    EXPECT_EQ(bytes_of(out), "precious");
}

TEST_F(Media, CopyVerifiesAndReadsBack) {
    auto src = small_bundle();
    auto copy = tmp / "usb" / "copy.rkm";
    fs::create_directories(copy.parent_path());
    auto info = copy_bundle(muni, src, copy);
    EXPECT_EQ(bytes_of(copy), bytes_of(src));
    EXPECT_EQ(info.bundle_id, read_bundle_info(src).bundle_id);
    EXPECT_THROW(copy_bundle(muni, src, copy), MediaError) << "never over an existing file";

    auto bad = edited([](std::string& b) { b[b.size() / 2] ^= 0x40; });
    try {
        copy_bundle(muni, bad, tmp / "usb" / "bad.rkm");
        ADD_FAILURE() << "copied an altered bundle";
    } catch (const MediaError& e) {
        EXPECT_EQ(e.failure(), MediaFailure::altered) << e.what();
    }
    EXPECT_EQ(listing(tmp / "usb"), std::set<std::string>{"copy.rkm"});
}

TEST_F(Media, EraseOverwritesThenRemoves) {
    auto victim = tmp / "victim.rkm";
    fs::copy_file(small_bundle(), victim);
    auto original = bytes_of(victim);
    // Keep a descriptor: after the unlink it still reaches the blocks, which must no longer hold the bundle.
    int fd = ::open(victim.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    auto r = erase_file(victim);
    EXPECT_EQ(r.bytes, original.size());
    ASSERT_TRUE(r.bundle.has_value());
    EXPECT_EQ(r.bundle->bundle_id, read_bundle_info(small_bundle()).bundle_id);
    EXPECT_FALSE(fs::exists(victim));
    std::string after(original.size(), '\0');
    EXPECT_EQ(::pread(fd, after.data(), after.size(), 0), static_cast<ssize_t>(after.size()));
    ::close(fd);
    EXPECT_NE(after, original);
    EXPECT_EQ(after.find("RKMEDIA1"), std::string::npos);
    EXPECT_EQ(after.find("muni:131016"), std::string::npos);

    put(tmp / "linked", "x");
    fs::create_hard_link(tmp / "linked", tmp / "linked2");
    try {
        erase_file(tmp / "linked");
        ADD_FAILURE();
    } catch (const MediaError& e) {
        EXPECT_NE(std::string(e.what()).find("has 2 hard links"), std::string::npos) << e.what();
    }
    fs::create_symlink(tmp / "linked", tmp / "sym");
    try {
        erase_file(tmp / "sym");
        ADD_FAILURE();
    } catch (const MediaError& e) {
        EXPECT_NE(std::string(e.what()).find("is a symbolic link"), std::string::npos) << e.what();
    }
    EXPECT_EQ(bytes_of(tmp / "linked"), "x");
}

// ---------------------------------------------------------------------------------------------
// The import ledger: a node imports a bundle once (rule media.import_once), whatever the directory.

namespace {

constexpr int64_t kImportedAt = 1'714'561'200'000; // 2024-05-01T11:00:00.000Z

class MediaLedger : public Media {
protected:
    void SetUp() override {
        Media::SetUp();
        fs::create_directories(tmp / "pref-data");
        ledger = std::make_unique<ImportLedger>(tmp / "pref-data" / "media-imports.db");
    }

    ImportOptions as_sato(bool reimport = false, const std::string& purpose = "juki-30-6") {
        ImportOptions o;
        o.ledger = ledger.get();
        o.reimport = reimport;
        o.operator_id = "ops:sato";
        o.purpose = purpose;
        o.now_ms = kImportedAt;
        o.before_publish = [this](const BundleInfo&, const std::vector<ImportLedgerEntry>& earlier) {
            ++published;
            last_earlier = earlier;
        };
        return o;
    }

    // Expects import_bundle to refuse with `kind` and a message holding `says`; returns the message.
    std::string refused(const fs::path& bundle, const fs::path& dir, const ImportOptions& o, MediaFailure kind,
                        const std::string& says) {
        try {
            import_bundle(pref, bundle, dir, o);
            ADD_FAILURE() << "imported, but should be refused (" << to_string(kind) << ": " << says << ")";
        } catch (const MediaError& e) {
            EXPECT_EQ(e.failure(), kind) << e.what();
            EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
            EXPECT_TRUE(e.info().has_value()) << "the refusal carries the bundle id for the audit record";
            return e.what();
        }
        return {};
    }

    std::unique_ptr<ImportLedger> ledger;
    int published = 0;
    std::vector<ImportLedgerEntry> last_earlier;
};

} // namespace

TEST_F(MediaLedger, ASecondImportIsRefusedWhateverTheDirectoryAndWritesNothing) {
    auto bundle = small_bundle();
    auto id = read_bundle_info(bundle).bundle_id;
    auto first = tmp / "inbox";
    auto result = import_bundle(pref, bundle, first, as_sato());
    ASSERT_EQ(result.written.size(), 3u);
    EXPECT_TRUE(result.earlier.empty());
    EXPECT_EQ(published, 1);
    auto entries = ledger->imports_of(id);
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].bundle_id, id);
    EXPECT_EQ(entries[0].sender, "muni:131016");
    EXPECT_EQ(entries[0].operator_id, "ops:sato");
    EXPECT_EQ(entries[0].purpose, "juki-30-6");
    EXPECT_EQ(entries[0].out_dir, first.string());
    EXPECT_FALSE(entries[0].reimport);
    EXPECT_EQ(entries[0].started_ms, kImportedAt);
    ASSERT_TRUE(entries[0].finished_ms.has_value()) << "marked finished once the files are in place";
    auto before = listing(first);
    auto a = bytes_of(first / "a.txt");

    // Into a new directory: refused before anything is written, not even the directory.
    auto second = tmp / "inbox-2";
    auto message = refused(bundle, second, as_sato(), MediaFailure::already_imported,
                           "bundle_id " + id + ": already imported at 2024-05-01T11:00:00.000Z by ops:sato into " +
                               first.string() + "; rule media.import_once");
    EXPECT_NE(message.find("--reimport"), std::string::npos) << "says how to import it again: " << message;
    EXPECT_FALSE(fs::exists(second)) << "a refused import creates nothing";

    // Into an existing directory, also the same one: refused for the same reason, nothing added.
    auto third = tmp / "inbox-3";
    fs::create_directories(third);
    refused(bundle, third, as_sato(), MediaFailure::already_imported, "rule media.import_once");
    EXPECT_TRUE(listing(third).empty()) << "no staging directory, no file";
    refused(bundle, first, as_sato(), MediaFailure::already_imported, "rule media.import_once");
    EXPECT_EQ(listing(first), before);
    EXPECT_EQ(bytes_of(first / "a.txt"), a);

    EXPECT_EQ(published, 1) << "no refused import reached the point where the CLI writes its ok record";
    EXPECT_EQ(ledger->imports_of(id).size(), 1u) << "refusals are not recorded as imports";

    // The ledger is durable: another process (here another connection) sees the import.
    ImportLedger reopened(tmp / "pref-data" / "media-imports.db");
    auto again = as_sato();
    again.ledger = &reopened;
    refused(bundle, tmp / "inbox-4", again, MediaFailure::already_imported, "already imported at");
    EXPECT_FALSE(fs::exists(tmp / "inbox-4"));

    // Another bundle with the same files is another bundle.
    auto fresh = tmp / "fresh.rkm";
    export_to(muni, "pref:13", fresh, {file("a.txt", text(10000, 1))});
    EXPECT_EQ(import_bundle(pref, fresh, tmp / "inbox-5", as_sato()).written.size(), 1u);
}

TEST_F(MediaLedger, ReimportNeedsWhoAndWhyAndAnEarlierImportAndIsRecordedAsSuch) {
    auto bundle = small_bundle();
    auto id = read_bundle_info(bundle).bundle_id;

    // Without a purpose, an operator or a ledger; or of a bundle never imported here.
    refused(bundle, tmp / "r1", as_sato(true, ""), MediaFailure::bad_input, "--reimport needs");
    auto nobody = as_sato(true);
    nobody.operator_id.clear();
    refused(bundle, tmp / "r1", nobody, MediaFailure::bad_input, "--reimport needs");
    refused(bundle, tmp / "r1", as_sato(true), MediaFailure::bad_input,
            "bundle_id " + id + ": --reimport given, but this node has no import of it on record");
    EXPECT_FALSE(fs::exists(tmp / "r1"));
    EXPECT_TRUE(ledger->imports_of(id).empty());
    EXPECT_EQ(published, 0);

    auto first = tmp / "inbox";
    import_bundle(pref, bundle, first, as_sato());

    // The destination was restored from a backup that predates the import: import it again.
    auto restored = tmp / "restored";
    auto o = as_sato(true, "restore-2024-05");
    o.operator_id = "ops:suzuki";
    auto result = import_bundle(pref, bundle, restored, o);
    EXPECT_EQ(result.written.size(), 3u);
    EXPECT_EQ(bytes_of(restored / "a.txt"), bytes_of(first / "a.txt"));
    ASSERT_EQ(result.earlier.size(), 1u);
    EXPECT_EQ(result.earlier[0].out_dir, first.string());
    ASSERT_EQ(last_earlier.size(), 1u) << "the audit hook is told of the earlier import";
    EXPECT_EQ(last_earlier[0].operator_id, "ops:sato");
    auto entries = ledger->imports_of(id);
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_FALSE(entries[0].reimport);
    EXPECT_TRUE(entries[1].reimport);
    EXPECT_EQ(entries[1].operator_id, "ops:suzuki");
    EXPECT_EQ(entries[1].purpose, "restore-2024-05");
    EXPECT_EQ(entries[1].out_dir, restored.string());
    EXPECT_TRUE(entries[1].finished_ms.has_value());

    // Still once per node for a plain import; the refusal names the latest import.
    refused(bundle, tmp / "r2", as_sato(), MediaFailure::already_imported,
            "already imported at 2024-05-01T11:00:00.000Z by ops:suzuki into " + restored.string() +
                " (2 imports on record); rule media.import_once");
    EXPECT_FALSE(fs::exists(tmp / "r2"));
}

TEST_F(MediaLedger, ARefusalAfterTheClaimReleasesIt) {
    auto bundle = small_bundle();
    auto id = read_bundle_info(bundle).bundle_id;

    // The audit record cannot be written: nothing is imported and the claim goes.
    auto o = as_sato();
    o.before_publish = [](const BundleInfo&, const std::vector<ImportLedgerEntry>&) {
        throw std::runtime_error("audit trail unavailable");
    };
    EXPECT_THROW(import_bundle(pref, bundle, tmp / "inbox", o), std::runtime_error);
    EXPECT_TRUE(listing(tmp / "inbox").empty());
    EXPECT_TRUE(ledger->imports_of(id).empty());

    // A file appears under one of the names while the import runs: the ones moved go back.
    auto race = as_sato();
    race.before_publish = [&](const BundleInfo&, const std::vector<ImportLedgerEntry>&) { put(tmp / "inbox" / "c.dat", "mine"); };
    refused(bundle, tmp / "inbox", race, MediaFailure::exists, "appeared meanwhile");
    EXPECT_EQ(listing(tmp / "inbox"), (std::set<std::string>{"c.dat"}));
    EXPECT_EQ(bytes_of(tmp / "inbox" / "c.dat"), "mine");
    EXPECT_TRUE(ledger->imports_of(id).empty());

    // Then it imports, once.
    EXPECT_EQ(import_bundle(pref, bundle, tmp / "inbox-2", as_sato()).written.size(), 3u);
    refused(bundle, tmp / "inbox-3", as_sato(), MediaFailure::already_imported, "rule media.import_once");
}

TEST_F(MediaLedger, ACrashBetweenMovingTheFilesAndMarkingTheImportDoesNotAllowASilentDuplicate) {
    auto bundle = small_bundle();
    auto id = read_bundle_info(bundle).bundle_id;
    auto dir = tmp / "inbox";
    auto db = tmp / "pref-data" / "media-imports.db";
    ledger.reset();

    // A child process imports and dies right after the files are in place, before the ledger
    // marks the import finished (no destructor, no rollback: as a power cut or SIGKILL would).
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        try {
            ImportLedger own(db);
            ImportOptions o;
            o.ledger = &own;
            o.operator_id = "ops:sato";
            o.purpose = "juki-30-6";
            o.now_ms = kImportedAt;
            o.after_move = [] { ::_exit(42); };
            import_bundle(pref, bundle, dir, o);
        } catch (...) {
        }
        ::_exit(1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 42) << "the child got to the crash point";
    std::set<std::string> left;
    for (auto& n : listing(dir))
        if (n.rfind(".renkei-import-", 0) != 0) left.insert(n); // a crash leaves the (empty) staging directory
    EXPECT_EQ(left, (std::set<std::string>{"a.txt", "b.txt", "c.dat"})) << "the files were moved into place";

    ledger = std::make_unique<ImportLedger>(db);
    auto entries = ledger->imports_of(id);
    ASSERT_EQ(entries.size(), 1u) << "the claim was committed before the first file moved";
    EXPECT_FALSE(entries[0].finished_ms.has_value());

    // Not imported a second time, into another directory or (once its files are gone) the same.
    refused(bundle, tmp / "elsewhere", as_sato(), MediaFailure::already_imported,
            "bundle_id " + id + ": an import begun at 2024-05-01T11:00:00.000Z by ops:sato into " + dir.string() +
                " has not finished");
    EXPECT_FALSE(fs::exists(tmp / "elsewhere"));
    for (auto& n : listing(dir)) fs::remove_all(dir / n);
    refused(bundle, dir, as_sato(), MediaFailure::already_imported, "rule media.import_once");
    EXPECT_TRUE(listing(dir).empty());

    // The operator checks the directory and imports it again, explicitly.
    auto result = import_bundle(pref, bundle, dir, as_sato(true, "resume-after-crash"));
    EXPECT_EQ(result.written.size(), 3u);
    ASSERT_EQ(result.earlier.size(), 1u);
    EXPECT_FALSE(result.earlier[0].finished_ms.has_value());
}

TEST_F(MediaLedger, TwoClaimsOfOneBundleCannotBothSucceed) {
    auto info = read_bundle_info(small_bundle());
    ImportLedger other_process(tmp / "pref-data" / "media-imports.db");
    ImportLedgerEntry e;
    e.bundle_id = info.bundle_id;
    e.sender = info.sender;
    e.out_dir = (tmp / "a").string();
    e.operator_id = "ops:sato";
    e.purpose = "juki-30-6";
    e.started_ms = kImportedAt;
    auto c = ledger->claim(e, info, "bundle.rkm");
    EXPECT_TRUE(c.earlier.empty());
    e.out_dir = (tmp / "b").string();
    try {
        other_process.claim(e, info, "bundle.rkm");
        ADD_FAILURE() << "claimed twice";
    } catch (const MediaError& err) {
        EXPECT_EQ(err.failure(), MediaFailure::already_imported);
        EXPECT_NE(std::string(err.what()).find("has not finished (it is still running"), std::string::npos) << err.what();
    }
    ledger->release(c.seq);
    EXPECT_TRUE(ledger->imports_of(info.bundle_id).empty());
    auto again = other_process.claim(e, info, "bundle.rkm");
    other_process.finish(again.seq, kImportedAt);
    EXPECT_THROW(ledger->claim(e, info, "bundle.rkm"), MediaError);
}
