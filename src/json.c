/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * json.c: message values into bytes. Tables are encoded by a lua-cjson
 * instance of our own (cjson.new()), so a script that changes the global
 * cjson's settings neither breaks nor changes what a producer sends.
 *
 * Caveats (lua-cjson's): numbers are written with 14 significant digits;
 * an empty table encodes as {}; NaN and infinities are refused; a table
 * nested deeper than 1000 levels (a cycle, for instance) is refused.
 */
#include <string.h>

#include "prd.h"

/* Pushes the encode function of a fresh lua-cjson instance. */
void prd_json_open(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);                  /* cjson */
    lua_getfield(L, -1, "new");
    if (!lua_isfunction(L, -1))
        luaL_error(L, "producers: lua-cjson without cjson.new(), need 2.1 or later");
    lua_call(L, 0, 1);                  /* cjson, instance */
    lua_getfield(L, -1, "encode");      /* cjson, instance, encode */
    lua_replace(L, -3);
    lua_pop(L, 1);                      /* encode */
}

/*
 * Checks the message value at idx and pushes its bytes: the string itself,
 * a table's JSON, or nil for a tombstone. encoder_idx holds the encode
 * function. Returns the bytes (NULL for nil) with their length; they live
 * as long as the pushed value stays on the stack.
 */
const char *prd_encode_value(lua_State *L, int idx, int encoder_idx,
                             size_t *len)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        lua_pushvalue(L, idx);
        return lua_tolstring(L, -1, len);
    case LUA_TNIL:
    case LUA_TNONE:
        lua_pushnil(L);
        *len = 0;
        return NULL;
    case LUA_TTABLE:
        lua_pushvalue(L, encoder_idx);
        lua_pushvalue(L, idx);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            const char *why = lua_tostring(L, -1);
            luaL_error(L, "value: cannot encode table as JSON: %s",
                       why ? why : "(error object is not a string)");
        }
        return lua_tolstring(L, -1, len);
    default:
        luaL_error(L, "value: expected table, string or nil, got %s",
                   luaL_typename(L, idx));
        return NULL;
    }
}
