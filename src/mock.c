/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * mock.c: librdkafka's mock cluster as a Lua object, for tests, demos and
 * fault injection without a broker. It runs on librdkafka's own threads
 * and listens on 127.0.0.1, so other processes (kcat) can use it too.
 *
 *   local m = core.mock_cluster(3)
 *   m:bootstraps() --> "127.0.0.1:port,..."
 */
#include <string.h>

#include "prd.h"

typedef struct prd_mock {
    rd_kafka_t *rk;                      /* the handle the cluster lives on */
    rd_kafka_mock_cluster_t *cluster;    /* NULL once closed */
} prd_mock;

static prd_mock *check_mock(lua_State *L)
{
    prd_mock *m = luaL_checkudata(L, 1, PRD_MOCK_T);

    if (!m->cluster)
        luaL_error(L, "mock cluster is closed");
    return m;
}

/***
 * @function core.mock_cluster
 * @int[opt=1] brokers
 * @treturn userdata mock cluster
 */
static int prd_mock_new(lua_State *L)
{
    int brokers = (int)luaL_optinteger(L, 1, 1);
    rd_kafka_conf_t *conf;
    char errstr[256];
    prd_mock *m;

    luaL_argcheck(L, brokers >= 1, 1, "at least one broker");
    m = lua_newuserdata(L, sizeof *m);
    memset(m, 0, sizeof *m);
    luaL_setmetatable(L, PRD_MOCK_T);
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, NULL);
    /* the mock brokers' sockets take this handle's settings: TCP_NODELAY,
     * as a Kafka broker sets, or a response may wait ~40 ms for the
     * client's delayed ACK */
    rd_kafka_conf_set(conf, "socket.nagle.disable", "true", NULL, 0);
    if (!(m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
        rd_kafka_conf_destroy(conf);
        return luaL_error(L, "mock cluster: %s", errstr);
    }
    if (!(m->cluster = rd_kafka_mock_cluster_new(m->rk, brokers)))
        return luaL_error(L, "mock cluster: could not start");
    return 1;
}

static int prd_mock_bootstraps(lua_State *L)
{
    lua_pushstring(L, rd_kafka_mock_cluster_bootstraps(check_mock(L)->cluster));
    return 1;
}

/* m:create_topic(name, partitions, replication) */
static int prd_mock_create_topic(lua_State *L)
{
    prd_mock *m = check_mock(L);
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
        m->cluster, luaL_checkstring(L, 2), (int)luaL_optinteger(L, 3, 1),
        (int)luaL_optinteger(L, 4, 1));

    return err ? prd_fail(L, err) : (lua_pushboolean(L, 1), 1);
}

/* m:broker_down(id), m:broker_up(id): ids start at 1. */
static int prd_mock_broker_down(lua_State *L)
{
    prd_mock *m = check_mock(L);

    rd_kafka_mock_broker_set_down(m->cluster, (int32_t)luaL_checkinteger(L, 2));
    return 0;
}

static int prd_mock_broker_up(lua_State *L)
{
    prd_mock *m = check_mock(L);

    rd_kafka_mock_broker_set_up(m->cluster, (int32_t)luaL_checkinteger(L, 2));
    return 0;
}

/* m:push_request_errors(apikey, name, ...): the next requests of that
 * kind (0 = Produce, 3 = Metadata) fail with these errors in turn. */
static int prd_mock_push_request_errors(lua_State *L)
{
    prd_mock *m = check_mock(L);
    int16_t apikey = (int16_t)luaL_checkinteger(L, 2);
    int i, n = lua_gettop(L) - 2;
    rd_kafka_resp_err_t errs[64];

    luaL_argcheck(L, n >= 1 && n <= 64, 3, "between 1 and 64 error names");
    for (i = 0; i < n; i++)
        errs[i] = prd_check_err_name(L, i + 3);
    rd_kafka_mock_push_request_errors_array(m->cluster, apikey, (size_t)n, errs);
    return 0;
}

/* m:topic_set_error(topic, name): metadata requests for topic fail. */
static int prd_mock_topic_set_error(lua_State *L)
{
    prd_mock *m = check_mock(L);

    rd_kafka_mock_topic_set_error(m->cluster, luaL_checkstring(L, 2), prd_check_err_name(L, 3));
    return 0;
}

static int prd_mock_close(lua_State *L)
{
    prd_mock *m = luaL_checkudata(L, 1, PRD_MOCK_T);

    if (m->cluster)
        rd_kafka_mock_cluster_destroy(m->cluster);
    if (m->rk)
        rd_kafka_destroy(m->rk);
    m->cluster = NULL;
    m->rk = NULL;
    return 0;
}

static const luaL_Reg mock_methods[] = {
    {"bootstraps", prd_mock_bootstraps},
    {"create_topic", prd_mock_create_topic},
    {"broker_down", prd_mock_broker_down},
    {"broker_up", prd_mock_broker_up},
    {"push_request_errors", prd_mock_push_request_errors},
    {"topic_set_error", prd_mock_topic_set_error},
    {"close", prd_mock_close},
    {NULL, NULL}};

/* Makes the MockCluster metatable; pushes the constructor. */
void prd_mock_open(lua_State *L)
{
    luaL_newmetatable(L, PRD_MOCK_T);
    lua_pushcfunction(L, prd_mock_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, prd_mock_close);
    lua_setfield(L, -2, "__close");
    luaL_newlib(L, mock_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, prd_mock_new);
}
