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
 *
 * Caveat: librdkafka checks few of these arguments (a partition count of
 * -1 trips an assertion, a negative partition indexes before an array),
 * so every number and name is range- and NUL-checked here first.
 */
#include <stdio.h>
#include <string.h>

#include "core/arg.h"
#include "kafka/errors.h"
#include "kafka/handle.h"
#include "kafka/mock.h"
#include <librdkafka/rdkafka_mock.h>

/* Bounds that keep the casts to int exact and the mock's allocations
 * small; far above what a test needs. */
#define MAX_BROKERS 64
#define MAX_PARTITIONS 100000
#define MAX_RTT_MS 3600000

typedef struct prd_mock {
    rd_kafka_t *rk;                      /* the handle the cluster lives on */
    rd_kafka_mock_cluster_t *cluster;    /* NULL once closed */
    int brokers;                         /* ids 1..brokers */
} prd_mock;

static prd_mock *check_mock(lua_State *L)
{
    prd_mock *m = luaL_checkudata(L, 1, PRD_MOCK_T);

    if (!m->cluster)
        luaL_error(L, "mock cluster is closed");
    return m;
}

/* The integer at arg, raising in luaL_argerror's form unless it is in
 * lo..hi: "bad argument #2 to 'create_topic' (partitions must be between
 * 1 and 100000, got -1)". Read as a number, not with luaL_checkinteger,
 * which truncates 1.5 on Lua 5.1 and LuaJIT. */
static lua_Integer check_range(lua_State *L, int arg, const char *what,
                               lua_Integer lo, lua_Integer hi)
{
    lua_Number x = luaL_checknumber(L, arg);
    lua_Integer n;
    int found = prd_arg_integer(L, arg, lo, hi, &n);
    char msg[128];

    if (found & PRD_ARG_OUTSIDE) {                      /* NaN too */
        snprintf(msg, sizeof msg, "%s must be between %lld and %lld, got %.14g", what,
                 (long long)lo, (long long)hi, (double)x);
        luaL_argerror(L, arg, msg);
    }
    if (found & PRD_ARG_FRACTION) {
        snprintf(msg, sizeof msg, "%s must be an integer, got %.14g", what, (double)x);
        luaL_argerror(L, arg, msg);
    }
    return n;
}

/* Like check_range, with a default when arg is absent or nil. */
static lua_Integer opt_range(lua_State *L, int arg, const char *what,
                             lua_Integer lo, lua_Integer hi, lua_Integer def)
{
    return lua_isnoneornil(L, arg) ? def : check_range(L, arg, what, lo, hi);
}

/* The topic name at arg: librdkafka takes C strings, so a NUL would cut
 * the name short and act on another topic. */
static const char *check_topic(lua_State *L, int arg)
{
    size_t len;
    const char *name = luaL_checklstring(L, arg, &len);

    luaL_argcheck(L, len > 0, arg, "topic name must not be empty");
    luaL_argcheck(L, prd_arg_c_string(L, arg, NULL) != NULL, arg,
                  "topic name must not contain a NUL byte");
    return name;
}

/* A broker id at arg: 1..brokers, or -1 for every broker (librdkafka's
 * convention; for a partition's leader, -1 means none). */
static int32_t check_broker(lua_State *L, int arg, const prd_mock *m)
{
    if (lua_type(L, arg) == LUA_TNUMBER && lua_tonumber(L, arg) == -1)
        return -1;
    return (int32_t)check_range(L, arg, "broker id (or -1)", 1, m->brokers);
}

/* true, or nil, message, name when librdkafka refused. */
static int result(lua_State *L, rd_kafka_resp_err_t err)
{
    if (err)
        return prd_kafka_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/***
 * @function core.mock_cluster
 * @int[opt=1] brokers
 * @treturn userdata mock cluster
 */
static int prd_mock_new(lua_State *L)
{
    int brokers = (int)opt_range(L, 1, "brokers", 1, MAX_BROKERS, 1);
    rd_kafka_conf_t *conf;
    char errstr[256];
    prd_mock *m;

    m = lua_newuserdata(L, sizeof *m);
    memset(m, 0, sizeof *m);
    m->brokers = brokers;
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

/***
 * m:create_topic(name[, partitions=1[, replication=1]])
 * @treturn[1] true
 * @treturn[2] nil, message, name (e.g. "TOPIC_ALREADY_EXISTS")
 */
static int prd_mock_create_topic(lua_State *L)
{
    prd_mock *m = check_mock(L);
    const char *name = check_topic(L, 2);
    int partitions = (int)opt_range(L, 3, "partitions", 1, MAX_PARTITIONS, 1);
    int replication = (int)opt_range(L, 4, "replication factor", 1, m->brokers, 1);

    return result(L, rd_kafka_mock_topic_create(m->cluster, name, partitions, replication));
}

/* m:broker_down(id), m:broker_up(id): ids start at 1; -1 is every
 * broker. Neither moves a partition's leader. */
static int prd_mock_broker_down(lua_State *L)
{
    prd_mock *m = check_mock(L);

    rd_kafka_mock_broker_set_down(m->cluster, check_broker(L, 2, m));
    return 0;
}

static int prd_mock_broker_up(lua_State *L)
{
    prd_mock *m = check_mock(L);

    rd_kafka_mock_broker_set_up(m->cluster, check_broker(L, 2, m));
    return 0;
}

/* m:broker_set_rtt(id, ms): the broker delays each response by ms (0
 * for none); -1 is every broker. */
static int prd_mock_broker_set_rtt(lua_State *L)
{
    prd_mock *m = check_mock(L);
    int32_t id = check_broker(L, 2, m);

    rd_kafka_mock_broker_set_rtt(m->cluster, id,
                                 (int)check_range(L, 3, "round-trip time (ms)", 0, MAX_RTT_MS));
    return 0;
}

/***
 * m:partition_set_leader(topic, partition, broker): moves the leader
 * (broker -1: none, so the partition is unavailable). Creates the topic
 * with partition + 1 partitions if it does not exist.
 * @treturn[1] true
 * @treturn[2] nil, message, "UNKNOWN_TOPIC_OR_PART" beyond the topic's partitions
 */
static int prd_mock_partition_set_leader(lua_State *L)
{
    prd_mock *m = check_mock(L);
    const char *topic = check_topic(L, 2);
    int32_t partition = (int32_t)check_range(L, 3, "partition", 0, MAX_PARTITIONS - 1);
    int32_t broker = check_broker(L, 4, m);

    return result(L, rd_kafka_mock_partition_set_leader(m->cluster, topic, partition, broker));
}

/* m:push_request_errors(apikey, name, ...): the next requests of that
 * kind (0 = Produce, 3 = Metadata) fail with these errors in turn. */
static int prd_mock_push_request_errors(lua_State *L)
{
    prd_mock *m = check_mock(L);
    int16_t apikey = (int16_t)check_range(L, 2, "api key", 0, INT16_MAX);
    int i, n = lua_gettop(L) - 2;
    rd_kafka_resp_err_t errs[64];

    luaL_argcheck(L, n >= 1 && n <= 64, 3, "between 1 and 64 error names");
    for (i = 0; i < n; i++)
        errs[i] = prd_kafka_check_err_name(L, i + 3);
    rd_kafka_mock_push_request_errors_array(m->cluster, apikey, (size_t)n, errs);
    return 0;
}

/* m:topic_set_error(topic, name): metadata requests for topic fail. */
static int prd_mock_topic_set_error(lua_State *L)
{
    prd_mock *m = check_mock(L);

    rd_kafka_mock_topic_set_error(m->cluster, check_topic(L, 2), prd_kafka_check_err_name(L, 3));
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
    {"broker_set_rtt", prd_mock_broker_set_rtt},
    {"partition_set_leader", prd_mock_partition_set_leader},
    {"push_request_errors", prd_mock_push_request_errors},
    {"topic_set_error", prd_mock_topic_set_error},
    {"close", prd_mock_close},
    {NULL, NULL}};

/***
 * core.testing.fatal_error(producer, name [, reason]): raises a fatal error
 * in the producer as librdkafka would (librdkafka's own test hook), so
 * specs can check what a fatal error does without a broker that fences.
 * @treturn true, or nil, message, name when librdkafka refuses
 */
int prd_mock_test_fatal_error(lua_State *L)
{
    prd_kafka *p = luaL_checkudata(L, 1, PRD_PRODUCER_T);
    rd_kafka_resp_err_t err = prd_kafka_check_err_name(L, 2);
    const char *reason = luaL_optstring(L, 3, "test fatal error");

    luaL_argcheck(L, p->rk != NULL, 1, "producer is closed");
    if ((err = rd_kafka_test_fatal_error(p->rk, err, reason)))
        return prd_kafka_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

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
