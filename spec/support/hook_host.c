/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spec/support/hook_host.c: a C host whose signal handler sets a Lua
 * hook, the way lua.c's SIGINT handler does, but a hook that only
 * removes itself and raises nothing: a waiting call interrupted by the
 * hook change returns its values to the script (docs/signals.md,
 * src/core/signal.c's prd_watch_check). spec/core/hook_interrupt_spec.lua
 * builds it against the build under test.
 *
 * Usage: hook_host ADDRESS   (a refused address: flush waits for ever)
 * Prints "flush|ok|message|name|queued|type(err)|ms" for p:flush(8), then
 * "hook ran N" (the times the hook ran in Lua).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <producers.h>

static lua_State *hooked;                 /* the state the handler hooks */
static volatile sig_atomic_t hook_runs;   /* the hook's calls */

/* Runs at the next Lua instruction after the signal: removes itself. */
static void quiet_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    hook_runs++;
}

/* lua.c's laction, without the error: only sets the hook. */
static void on_alarm(int signo)
{
    (void)signo;
    lua_sethook(hooked, quiet_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void set_timer(long ms)
{
    struct itimerval t;

    memset(&t, 0, sizeof t);
    t.it_value.tv_sec = ms / 1000;
    t.it_value.tv_usec = (ms % 1000) * 1000;
    t.it_interval = t.it_value;            /* again, should one come too early */
    setitimer(ITIMER_REAL, &t, NULL);
}

/* arm(ms): SIGALRM every ms milliseconds, taken by this thread only. */
static int l_arm(lua_State *L)
{
    struct sigaction sa;
    sigset_t set;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    set_timer((long)luaL_checkinteger(L, 1));
    return 0;
}

/* disarm(): no more SIGALRM. */
static int l_disarm(lua_State *L)
{
    (void)L;
    set_timer(0);
    return 0;
}

static const char *script =
    "local address = ...\n"
    "local producers = require('producers')\n"
    "local now = require('producers.core').time_ms\n"
    "local p = producers.kafka.new{ bootstrap_servers = address, logger = function() end,\n"
    "  config = { ['message.timeout.ms'] = 10000 } }\n"
    "assert(p:produce('t', nil, 'm'))\n"
    "arm(300)\n"
    "local t = now()\n"
    "local ok, message, name, err = p:flush(8)\n"
    "local ms = now() - t\n"
    "disarm()\n"
    "print(('flush|%s|%s|%s|%s|%s|%d'):format(tostring(ok), tostring(message), tostring(name),\n"
    "  tostring(type(err) == 'table' and err.queued), type(err), ms))\n"
    "p:close(0)\n";

int main(int argc, char **argv)
{
    lua_State *L;
    sigset_t set;
    int status;

    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
        return 2;
    }
    /* Blocked before librdkafka's threads start, which inherit it. */
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    hooked = L = luaL_newstate();
    if (!L)
        return 1;
    luaL_openlibs(L);
    producers_preload(L);
    lua_register(L, "arm", l_arm);
    lua_register(L, "disarm", l_disarm);
    status = luaL_loadstring(L, script);
    if (status == LUA_OK) {
        lua_pushstring(L, argv[1]);
        status = lua_pcall(L, 1, 0, 0);
    }
    if (status != LUA_OK)
        fprintf(stderr, "hook_host: %s\n", lua_tostring(L, -1));
    set_timer(0);
    lua_close(L);
    printf("hook ran %d\n", (int)hook_runs);
    return status == LUA_OK ? 0 : 1;
}
