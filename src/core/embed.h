/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * embed.h: the module's Lua files compiled into the embedding library.
 */
#ifndef PRD_EMBED_H
#define PRD_EMBED_H

#include <stddef.h>

typedef struct prd_embedded {
    const char *module;      /* "producers", "producers.kafka", ... */
    const char *chunkname;   /* "=producers/kafka.lua" */
    const char *bytes;
    size_t len;
} prd_embedded;

extern const prd_embedded prd_embedded_files[];   /* ends with module NULL */

#endif
