/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * crc32c.c: CRC-32C, slicing-by-8 over tables computed on first use, or
 * the SSE4.2 crc32 instruction on an x86-64 that has it (the same
 * polynomial: eight times fewer instructions a record).
 *
 * Caveats: the tables (and the choice of the instruction) are made by the
 * first caller without a lock; two threads racing there write the same
 * values, and the spool computes a CRC in prd_spool_open before any
 * thread of its own exists.
 */
#include <string.h>

#include "crc32c.h"

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static int table_ready;

static void build_table(void)
{
  uint32_t i, j, c;
  for (i = 0; i < 256; i++) {
    c = i;
    for (j = 0; j < 8; j++)
      c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
    table[0][i] = c;
  }
  for (i = 0; i < 256; i++)
    for (j = 1; j < 8; j++)
      table[j][i] = (table[j - 1][i] >> 8) ^ table[0][table[j - 1][i] & 0xff];
  table_ready = 1;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_HW_CRC 1
static int use_hw = -1;  /* -1: not known yet */

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t len)
{
  uint64_t c = ~crc, w;
  while (len >= 8) {
    memcpy(&w, p, 8);  /* x86 is little-endian: the same bytes as the tables take */
    c = __builtin_ia32_crc32di(c, w);
    p += 8;
    len -= 8;
  }
  while (len--)
    c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
  return ~(uint32_t)c;
}
#endif

void prd_crc32c_hardware(int on)
{
#ifdef HAVE_HW_CRC
  use_hw = on ? -1 : 0;
#else
  (void)on;
#endif
}

uint32_t prd_crc32c(uint32_t crc, const void *data, size_t len)
{
  const unsigned char *p = data;
#ifdef HAVE_HW_CRC
  if (use_hw < 0)
    use_hw = __builtin_cpu_supports("sse4.2") != 0;
  if (use_hw)
    return crc_hw(crc, p, len);
#endif
  if (!table_ready)
    build_table();
  crc = ~crc;
  while (len >= 8) {
    /* byte by byte little-endian assembly: no alignment or endianness assumption */
    uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
    crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
          table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
          table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
    p += 8;
    len -= 8;
  }
  while (len--)
    crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
  return ~crc;
}
