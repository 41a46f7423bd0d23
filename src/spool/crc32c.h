/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * crc32c.h: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of every spool frame, ack entry and file header. Software
 * only (slicing-by-8 tables built once); "123456789" gives 0xE3069283.
 */
#ifndef PRD_SPOOL_CRC32C_H
#define PRD_SPOOL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc: 0 to start, or a previous result to continue over more bytes */
uint32_t prd_crc32c(uint32_t crc, const void *data, size_t len);

/* tests: 0 computes with the tables, else the CPU's instruction when it
 * has one (the default) */
void prd_crc32c_hardware(int on);

#endif
