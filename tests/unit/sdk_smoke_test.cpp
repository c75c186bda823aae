#include <gtest/gtest.h>
#include <renkei/plugin.h>
TEST(Abi, VersionIsOne) { EXPECT_EQ(RENKEI_ABI_MAJOR, 1u); }
