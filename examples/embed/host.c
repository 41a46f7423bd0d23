/*
 * examples/embed/host.c: a C program that embeds Lua and opens the
 * producers module in its own lua_State, with no Lua search path: the
 * module's Lua files are compiled into libproducers.
 *
 * Usage: host SCRIPT.lua [ARGS...]   (the script sees them in `arg`)
 *
 * Build against an installed producers (the package named for your Lua:
 * lua5.4-producers, luajit-producers ...; it brings Lua's flags):
 *   cmake -S examples/embed -B build-host -DCMAKE_PREFIX_PATH=PREFIX && cmake --build build-host
 * or: cc host.c $(pkg-config --cflags --libs lua5.4-producers) -o host
 */
#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <producers.h>

int main(int argc, char **argv)
{
    lua_State *L;
    int i, status;

    if (argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT.lua [ARGS...]\n", argv[0]);
        return 2;
    }
    L = luaL_newstate();
    if (!L)
        return 1;
    luaL_openlibs(L);
    producers_preload(L);        /* require("producers") now works */

    lua_createtable(L, argc, 0);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - 1);
    }
    lua_setglobal(L, "arg");

    status = luaL_dofile(L, argv[1]);
    if (status != LUA_OK)
        fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    lua_close(L);                /* frees any producer the script left open */
    return status == LUA_OK ? 0 : 1;
}
