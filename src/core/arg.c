/*
 * producers - a Kafka producer for Lua over the transport.
 * SPDX-License-Identifier: MIT
 *
 * arg.c: the checks of arguments and options every method shares:
 * callables (and whether a callback can see a report), timeouts in
 * seconds, strings C must not cut at a NUL byte, integers in a range.
 */
#include <limits.h>

#include "core/arg.h"
#include "core/call.h"

/* True if the value at idx can be called: a function, or has __call. */
int prd_arg_callable(lua_State *L, int idx)
{
    if (lua_isfunction(L, idx))
        return 1;
    if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
        lua_pop(L, 1);
        return 1;
    }
    return 0;
}

/*
 * Whether the callable at idx can see a delivery report: a Lua function
 * declared with one parameter, function(err), cannot, and then no report
 * table is built for it. Lua 5.2+ tell through lua_getinfo; LuaJIT's
 * debug.getinfo has the same fields; on Lua 5.1 every callback gets one.
 */
int prd_arg_takes_report(lua_State *L, int idx)
{
    int takes = 1;

    if (lua_type(L, idx) != LUA_TFUNCTION || lua_iscfunction(L, idx))
        return 1;
    idx = lua_absindex(L, idx);
#if LUA_VERSION_NUM >= 502
    {
        lua_Debug ar;

        lua_pushvalue(L, idx);
        if (lua_getinfo(L, ">u", &ar))
            takes = ar.nparams >= 2 || ar.isvararg;
    }
#else
    {
        int top = lua_gettop(L);

        lua_pushglobaltable(L);         /* raw reads: no metamethod runs */
        lua_pushliteral(L, "debug");
        lua_rawget(L, -2);              /* _G, debug */
        if (lua_istable(L, -1)) {       /* a sandbox may have none */
            lua_pushliteral(L, "getinfo");
            lua_rawget(L, -2);
            lua_pushvalue(L, idx);
            lua_pushliteral(L, "u");
            if (prd_call_pcall(L, NULL, 2, 1, 0) == LUA_OK && lua_istable(L, -1)) {
                lua_getfield(L, -1, "nparams");
                lua_getfield(L, -2, "isvararg");
                if (lua_isnumber(L, -2))
                    takes = lua_tointeger(L, -2) >= 2 || lua_toboolean(L, -1);
            }
        }
        lua_settop(L, top);
    }
#endif
    return takes;
}

/* Optional timeout in seconds at idx, as milliseconds for the transport. */
int prd_arg_timeout_ms(lua_State *L, int idx, int default_ms)
{
    lua_Number s;

    if (lua_isnoneornil(L, idx))
        return default_ms;
    s = luaL_checknumber(L, idx);
    luaL_argcheck(L, s >= 0, idx, "timeout must be a number of seconds >= 0");
    if (s * 1000 >= (lua_Number)INT_MAX)
        return INT_MAX;
    return (int)(s * 1000 + 0.5);
}

/*
 * The number at idx (a number: the caller checks the type) as an integer
 * from min to max, in *n: returns 0, or PRD_ARG_FRACTION when it has no
 * integer value (a fraction, or beyond lua_Integer) and PRD_ARG_OUTSIDE
 * when it is not within min..max (NaN included). Each caller words its
 * own error, in the order it checks the two.
 */
int prd_arg_integer(lua_State *L, int idx, lua_Integer min, lua_Integer max, lua_Integer *n)
{
    lua_Number x = lua_tonumber(L, idx);
    int exact = 0, outside;

    *n = lua_tointegerx(L, idx, &exact);
    outside = exact ? *n < min || *n > max
                    : !(x >= (lua_Number)min && x <= (lua_Number)max);
    return (exact ? 0 : PRD_ARG_FRACTION) | (outside ? PRD_ARG_OUTSIDE : 0);
}
