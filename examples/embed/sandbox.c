/*
 * examples/embed/sandbox.c: a host that gives scripts only the base,
 * package, string, table and math libraries (no io, no os) and routes
 * what the producers library would write to stderr through its own log
 * function (producers_set_log). It reports how long lua_close took, as
 * lua_close also frees the producers a script left open.
 *
 * Usage: sandbox SCRIPT.lua   (prints "hook LEVEL: message" lines, then
 *                              "lua_close: N ms")
 * Build: cc sandbox.c $(pkg-config --cflags --libs lua5.4-producers) -o sandbox
 */
#include <stdio.h>
#include <time.h>

#include <producers.h>   /* first: it brings <lua.h> itself */
#include <lauxlib.h>
#include <lualib.h>

static void host_log(void *ud, const char *level, const char *message)
{
    fprintf((FILE *)ud, "hook %s: %s\n", level, message);
    fflush((FILE *)ud);
}

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    static const luaL_Reg libs[] = {
        {"_G", luaopen_base}, {LUA_LOADLIBNAME, luaopen_package},
        {LUA_STRLIBNAME, luaopen_string}, {LUA_TABLIBNAME, luaopen_table},
        {LUA_MATHLIBNAME, luaopen_math}, {NULL, NULL}};
    const luaL_Reg *lib;
    lua_State *L;
    long t0;
    int status;

    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRIPT.lua\n", argv[0]);
        return 2;
    }
    L = luaL_newstate();
    if (!L)
        return 1;
    for (lib = libs; lib->func; lib++) {
#if LUA_VERSION_NUM >= 502
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
#else                    /* 5.1, LuaJIT: luaopen_* set their global */
        lua_pushcfunction(L, lib->func);
        lua_pushstring(L, lib->name);
        lua_call(L, 1, 0);
#endif
    }
    producers_preload(L);
    producers_set_log(L, host_log, stdout);

    status = luaL_dofile(L, argv[1]);
    if (status != LUA_OK)
        printf("sandbox: %s\n", lua_tostring(L, -1));
    t0 = now_ms();
    lua_close(L);
    printf("lua_close: %ld ms\n", now_ms() - t0);
    return status == LUA_OK ? 0 : 1;
}
