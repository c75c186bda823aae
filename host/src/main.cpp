#include <cstdio>
int main() { std::puts("renkei " RENKEI_VERSION); }
