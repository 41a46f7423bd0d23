/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * embed.c: producers_preload and producers_version, for C hosts
 * (include/producers.h). Puts a loader for each of the module's Lua
 * files, compiled in, and for producers.core into package.preload. Each
 * file's chunk gets its module name and, second, host.c's writer, which
 * log.lua's default logger uses: it works with no io or os library and
 * reaches the host's producers_set_log hook.
 */
#include "core/host.h"
#include "core/embed.h"
#include "producers.h"

/* package.preload loader: upvalue 1 is the index in prd_embedded_files. */
static int load_embedded(lua_State *L)
{
    const prd_embedded *f = &prd_embedded_files[lua_tointeger(L, lua_upvalueindex(1))];

    if (luaL_loadbuffer(L, f->bytes, f->len, f->chunkname) != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, f->module);
    lua_pushcfunction(L, prd_host_write);
    lua_call(L, 2, 1);
    return 1;
}

const char *producers_version(void)
{
    return PRD_VERSION;
}

void producers_preload(lua_State *L)
{
    int i;

    luaL_getsubtable(L, LUA_REGISTRYINDEX, "_PRELOAD");
    lua_pushcfunction(L, luaopen_producers_core);
    lua_setfield(L, -2, "producers.core");
    for (i = 0; prd_embedded_files[i].module; i++) {
        lua_pushinteger(L, i);
        lua_pushcclosure(L, load_embedded, 1);
        lua_setfield(L, -2, prd_embedded_files[i].module);
    }
    lua_pop(L, 1);
}
