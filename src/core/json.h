/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * json.h: message values into bytes (json.c), JSON text into Lua values
 * (json_decode.c).
 */
#ifndef PRD_CORE_JSON_H
#define PRD_CORE_JSON_H

#include "core/base.h"

typedef struct prd_buf prd_buf;          /* the encoder's state (json.c) */

void prd_json_open(lua_State *L);           /* pushes the JSON state */
prd_buf *prd_json_buffer(lua_State *L, int state_idx, int json_idx);
const char *prd_json_encode_value(lua_State *L, int idx, int state_idx, prd_buf *b,
                                  size_t *len);
const char *prd_json_encode_table(lua_State *L, int idx, prd_buf *b, size_t *len);
void prd_json_call_encoder(lua_State *L, int *busy, int state_idx, int enc_idx, int val_idx);

int prd_json_decode(lua_State *L, const char *s, size_t len);
int prd_json_decode_fn(lua_State *L);

#endif
