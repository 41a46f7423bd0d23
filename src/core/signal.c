/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * signal.c: interrupts of a waiting call, and opt-in signal traps for
 * plain Lua programs (docs/signals.md).
 *
 * A call that waits for librdkafka (poll, flush, close's flush, the
 * serving of commit and abort) waits in slices and, between them, asks
 * prd_watch_check whether it was interrupted since it started:
 * - by the stock interpreter's Ctrl-C: lua.c's SIGINT handler (and
 *   luajit's) sets a hook that raises "interrupted!" at the next Lua
 *   instruction, which never comes while C waits. A hook, mask or count
 *   that changed since the call started is taken for it: the call
 *   returns at once and the hook fires in the caller. Lua run by the call
 *   (callbacks) may set hooks of its own: the serving takes the hook
 *   anew after running Lua (prd_watch_hook).
 * - by a signal trapped with producers.signals.trap: its handler counts
 *   the signal; a count that changed since the call started is one.
 *
 * No signal handler is installed unless trap is called: nginx and C
 * hosts own their signals. The traps are the process's (signals are):
 * trap in one Lua state, caught in every one.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/signal.h"

/* What trap knows, by name (without "SIG"). */
static struct {
    int signo;
    const char *name;
    int trapped;                 /* our handler is installed */
    struct sigaction old;        /* what it replaced, for restore */
} signals[] = {
    {.signo = SIGINT, .name = "INT"},   {.signo = SIGTERM, .name = "TERM"},
    {.signo = SIGHUP, .name = "HUP"},   {.signo = SIGQUIT, .name = "QUIT"},
    {.signo = SIGUSR1, .name = "USR1"}, {.signo = SIGUSR2, .name = "USR2"},
};
#define NSIGNALS ((int)(sizeof signals / sizeof signals[0]))

/* Written by the handler only (the trapped signals are blocked while it
 * runs, so it never nests); read by the waiting calls and caught(). */
static volatile sig_atomic_t caught_count;   /* trapped signals caught */
static volatile sig_atomic_t first_caught;   /* the first one's number; 0: none */
static volatile sig_atomic_t last_caught;    /* the latest one's number */

static void on_signal(int signo)
{
    if (!first_caught)
        first_caught = signo;
    last_caught = signo;
    caught_count++;
}

static int find_signal(const char *name)
{
    int i;

    if (strncmp(name, "SIG", 3) == 0)
        name += 3;
    for (i = 0; i < NSIGNALS; i++)
        if (strcmp(signals[i].name, name) == 0)
            return i;
    return -1;
}

static const char *signal_name(int signo)
{
    int i;

    for (i = 0; i < NSIGNALS; i++)
        if (signals[i].signo == signo)
            return signals[i].name;
    return "?";
}

void prd_watch_hook(lua_State *L, prd_watch *w)
{
    w->hook = lua_gethook(L);
    w->mask = lua_gethookmask(L);
    w->count = lua_gethookcount(L);
    if (w->main) {
        w->main_hook = lua_gethook(w->main);
        w->main_mask = lua_gethookmask(w->main);
    }
}

/* The main thread when L is a coroutine (Lua 5.2+), else NULL. LuaJIT's
 * hooks are the whole state's. */
static lua_State *main_thread(lua_State *L)
{
#if defined(LUA_RIDX_MAINTHREAD) && !defined(LUAJIT_VERSION)
    lua_State *main;

    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    main = lua_tothread(L, -1);
    lua_pop(L, 1);
    return main != L ? main : NULL;
#else
    (void)L;
    return NULL;
#endif
}

void prd_watch_start(lua_State *L, prd_watch *w)
{
    w->main = main_thread(L);
    prd_watch_hook(L, w);
    w->caught = caught_count;
}

int prd_watch_check(lua_State *L, const prd_watch *w)
{
    if (caught_count != w->caught)
        return last_caught;
    if (lua_gethook(L) != w->hook || lua_gethookmask(L) != w->mask ||
        lua_gethookcount(L) != w->count)
        return PRD_INTR_HOOK;
    if (w->main && (lua_gethook(w->main) != w->main_hook ||
                    lua_gethookmask(w->main) != w->main_mask))
        return PRD_INTR_HOOK;
    return 0;
}

/* The failure of a wait cut short by why (prd_watch_check): nil,
 * "interrupted by SIGINT", "_INTR", err with err.queued. */
int prd_watch_fail(lua_State *L, int why, long queued)
{
    char text[64];

    if (why == PRD_INTR_HOOK)
        snprintf(text, sizeof text, "interrupted");
    else
        snprintf(text, sizeof text, "interrupted by SIG%s", signal_name(why));
    return prd_fail_queued(L, PRD_ERR_INTR, "_INTR", text, 0, queued);
}

/* The names of the table at 1 (or of the arguments) as indexes into
 * signals[], checked all before any is trapped. */
static int check_names(lua_State *L, int *which, const char *what)
{
    int n = 0, i, top = lua_gettop(L), idx;

    if (lua_type(L, 1) == LUA_TTABLE)
        top = (int)lua_rawlen(L, 1);
    luaL_argcheck(L, top >= 1, 1, "expected signal names, e.g. {\"INT\", \"TERM\"}");
    luaL_argcheck(L, top <= NSIGNALS * 2, 1, "too many signal names");
    for (i = 1; i <= top; i++) {
        const char *name;

        if (lua_type(L, 1) == LUA_TTABLE) {
            lua_rawgeti(L, 1, i);
            idx = lua_gettop(L);
        } else {
            idx = i;
        }
        if (lua_type(L, idx) != LUA_TSTRING)
            return luaL_error(L, "%s: signal names are strings (INT, TERM, HUP, QUIT, "
                                 "USR1, USR2), got %s", what, luaL_typename(L, idx));
        name = lua_tostring(L, idx);
        if ((which[n] = find_signal(name)) < 0)
            return luaL_error(L, "%s: unknown signal '%s' (INT, TERM, HUP, QUIT, USR1, "
                                 "USR2)", what, name);
        n++;
        if (lua_type(L, 1) == LUA_TTABLE)
            lua_pop(L, 1);
    }
    return n;
}

/***
 * Installs a handler for each named signal (INT, TERM, HUP, QUIT, USR1,
 * USR2; "SIGINT" works too) that only records it: the program does not
 * end, caught() says which came, and a call waiting for librdkafka
 * (poll, flush, close's flush) returns early when one arrives while it
 * waits. Without SA_RESTART, so a blocking read (io.read) returns an
 * error ("Interrupted system call"). Trapping a trapped signal again
 * changes nothing. Forgets what was caught when nothing was trapped.
 * @function trap
 * @tparam table names e.g. {"INT", "TERM"}
 * @treturn true
 */
static int signals_trap(lua_State *L)
{
    int which[NSIGNALS * 2], n = check_names(L, which, "trap"), i, any = 0;
    struct sigaction sa;

    for (i = 0; i < NSIGNALS; i++)
        any |= signals[i].trapped;
    if (!any)
        caught_count = first_caught = last_caught = 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < NSIGNALS; i++)
        sigaddset(&sa.sa_mask, signals[i].signo);
    sa.sa_flags = 0;                      /* no SA_RESTART: reads return EINTR */
    for (i = 0; i < n; i++) {
        int k = which[i];

        if (signals[k].trapped)
            continue;
        if (sigaction(signals[k].signo, &sa, &signals[k].old) != 0)
            return luaL_error(L, "trap: sigaction(SIG%s) failed", signals[k].name);
        signals[k].trapped = 1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
 * The first trapped signal caught since trap, or nil.
 * @function caught
 * @treturn string its name ("INT", "TERM", ...) or nil
 * @treturn int its number (exit with 128 + it, as a shell reports a
 * program the signal ended)
 * @treturn int how many trapped signals were caught
 */
static int signals_caught(lua_State *L)
{
    int signo = first_caught;

    if (!signo) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, signal_name(signo));
    lua_pushinteger(L, signo);
    lua_pushinteger(L, caught_count);
    return 3;
}

/***
 * Puts back the handlers trap replaced (the interpreter's, or the
 * default), for every trapped signal, or for the names given. What was
 * caught is still reported by caught().
 * @function restore
 * @tparam[opt] table names
 * @treturn true
 */
static int signals_restore(lua_State *L)
{
    int which[NSIGNALS * 2], n, i;

    if (lua_isnoneornil(L, 1)) {
        for (n = 0; n < NSIGNALS; n++)
            which[n] = n;
    } else {
        n = check_names(L, which, "restore");
    }
    for (i = 0; i < n; i++) {
        int k = which[i];

        if (!signals[k].trapped)
            continue;
        if (sigaction(signals[k].signo, &signals[k].old, NULL) != 0)
            return luaL_error(L, "restore: sigaction(SIG%s) failed", signals[k].name);
        signals[k].trapped = 0;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
 * The names of the signals trapped now, in a list.
 * @function trapped
 * @treturn table
 */
static int signals_trapped(lua_State *L)
{
    int i, n = 0;

    lua_newtable(L);
    for (i = 0; i < NSIGNALS; i++)
        if (signals[i].trapped) {
            lua_pushstring(L, signals[i].name);
            lua_rawseti(L, -2, ++n);
        }
    return 1;
}

static const luaL_Reg signal_functions[] = {
    {"trap", signals_trap},
    {"caught", signals_caught},
    {"restore", signals_restore},
    {"trapped", signals_trapped},
    {NULL, NULL},
};

void prd_signal_open(lua_State *L)
{
    lua_newtable(L);
    luaL_setfuncs(L, signal_functions, 0);
}
