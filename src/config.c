/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * config.c: a Lua table of librdkafka properties into an rd_kafka_conf_t.
 * Values may be strings, numbers or booleans. Errors name the property;
 * the value of a secret property never appears in them.
 */
#include <stdio.h>
#include <string.h>

#include "prd.h"

static int is_secret(const char *name)
{
    return strstr(name, "password") || strstr(name, "secret") ||
           strstr(name, "sasl.oauthbearer.config") ||
           strcmp(name, "ssl.key.pem") == 0;
}

/* The value at the top of the stack as a property string, or NULL. */
static const char *value_string(lua_State *L, char *buf, size_t size)
{
    switch (lua_type(L, -1)) {
    case LUA_TSTRING:
        return lua_tostring(L, -1);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, -1) ? "true" : "false";
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1))
            snprintf(buf, size, "%lld", (long long)lua_tointeger(L, -1));
        else
            snprintf(buf, size, "%.17g", (double)lua_tonumber(L, -1));
        return buf;
    default:
        return NULL;
    }
}

rd_kafka_conf_t *prd_conf_from_table(lua_State *L, int idx)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512], num[64];

    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {              /* ..., name, value */
        const char *name, *value;

        if (lua_type(L, -2) != LUA_TSTRING) {
            rd_kafka_conf_destroy(conf);
            luaL_error(L, "config: property names must be strings, got %s",
                       luaL_typename(L, -2));
        }
        name = lua_tostring(L, -2);
        value = value_string(L, num, sizeof num);
        if (!value) {
            rd_kafka_conf_destroy(conf);
            luaL_error(L, "config: '%s' must be a string, number or boolean, got %s",
                       name, luaL_typename(L, -1));
        }
        switch (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr)) {
        case RD_KAFKA_CONF_OK:
            break;
        case RD_KAFKA_CONF_UNKNOWN:
            rd_kafka_conf_destroy(conf);
            luaL_error(L, "config: unknown property '%s'", name);
            break;
        default:
            rd_kafka_conf_destroy(conf);
            if (is_secret(name))
                luaL_error(L, "config: invalid value for '%s'", name);
            luaL_error(L, "config: invalid value for '%s': %s", name, errstr);
        }
        lua_pop(L, 1);
    }
    return conf;
}
