// examples/embed/host.cpp: a C++ host. producers.h may come before or
// after lua.hpp: it includes <lua.h> with C linkage itself.
//
// Build: g++ host.cpp $(pkg-config --cflags --libs luajit-producers) -o host
#include <producers.h>
#include <lua.hpp>

#include <cstdio>
#include <cstring>

int main(int argc, char **argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s SCRIPT.lua\n", argv[0]);
        return 2;
    }
    if (std::strcmp(producers_version(), PRODUCERS_VERSION) != 0) {
        std::fprintf(stderr, "host: header %s, library %s\n", PRODUCERS_VERSION, producers_version());
        return 1;
    }
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    producers_preload(L);
    int status = luaL_dofile(L, argv[1]);
    if (status != LUA_OK)
        std::fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return status == LUA_OK ? 0 : 1;
}
