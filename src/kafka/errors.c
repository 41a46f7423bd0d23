/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * errors.c: librdkafka's errors in core's shapes (core/error.c): an
 * error object carries librdkafka's code and name (err2name) and says
 * whether the same request may succeed again; core.error and
 * core.error_string know librdkafka's names. Client-level errors (a
 * broker down, failed authentication, a fatal error) go to on_error, or
 * to the logger, and are kept as the likely cause of the local failures
 * that follow.
 */
#include <stdio.h>
#include <string.h>

#include "core/call.h"
#include "core/log.h"
#include "kafka/config.h"
#include "kafka/errors.h"

static const char on_error_key;

/*
 * Errors after which the same request may succeed if made again: Kafka's
 * retriable broker errors (its RetriableException family) and librdkafka's
 * local ones of the same kind (a full queue, a timeout, a lost
 * connection). librdkafka has already retried a failed delivery as far as
 * message.timeout.ms allowed: retriable there means producing it again
 * may succeed.
 */
static int is_retriable(rd_kafka_resp_err_t err)
{
    switch ((int)err) {
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:              /* a corrupt message */
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
        return 1;
    default:
        return 0;
    }
}

/*
 * Failed deliveries no retry can change, for the spool (prd_transport's
 * outcome, docs/spool.md): the message is too large or invalid, the
 * client is not authorized, the topic or partition does not exist
 * (librdkafka's local verdict, after topic.metadata.propagation.max.ms),
 * the producer hit a fatal error. Every other failure (timed out, a
 * broker down, purged at close, a full queue) is retriable for the spool.
 */
static int is_final(rd_kafka_resp_err_t err)
{
    switch ((int)err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__FATAL:
        return 1;
    default:
        return 0;
    }
}

/* prd_transport's outcome: what report (an rd_kafka_message_t) means for
 * its spooled message (core/transport.h's PRD_OUTCOME_*). */
int prd_kafka_outcome(const void *report)
{
    const rd_kafka_message_t *m = report;

    if (!m->err)
        return PRD_OUTCOME_DELIVERED;
    if (is_final(m->err))
        return PRD_OUTCOME_FAILED;
    return rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED
               ? PRD_OUTCOME_RETRY_WRITTEN : PRD_OUTCOME_RETRY;
}

/* Pushes an error object: err's name and code, message (librdkafka's for
 * err when NULL), the PRD_E_* flags (retriable also when err is). */
void prd_kafka_error_push(lua_State *L, rd_kafka_resp_err_t err, const char *message,
                          int flags)
{
    prd_error_push(L, err, rd_kafka_err2name(err), message ? message : rd_kafka_err2str(err),
                   flags | (is_retriable(err) ? PRD_E_RETRIABLE : 0));
}

/* Pushes librdkafka's error e as an error object. */
void prd_kafka_error_push_rd(lua_State *L, const rd_kafka_error_t *e, const char *message)
{
    prd_kafka_error_push(L, rd_kafka_error_code(e),
                         message ? message : rd_kafka_error_string(e),
                         (rd_kafka_error_is_retriable(e) ? PRD_E_RETRIABLE : 0) |
                         (rd_kafka_error_is_fatal(e) ? PRD_E_FATAL : 0) |
                         (rd_kafka_error_txn_requires_abort(e) ? PRD_E_TXN_ABORT : 0));
}

/* The failure tuple of librdkafka's error e (not destroyed). */
int prd_kafka_fail_rd(lua_State *L, const rd_kafka_error_t *e)
{
    rd_kafka_resp_err_t err = rd_kafka_error_code(e);

    return prd_fail(L, err, rd_kafka_error_name(e), rd_kafka_error_string(e),
                    (rd_kafka_error_is_retriable(e) || is_retriable(err) ? PRD_E_RETRIABLE : 0) |
                    (rd_kafka_error_is_fatal(e) ? PRD_E_FATAL : 0) |
                    (rd_kafka_error_txn_requires_abort(e) ? PRD_E_TXN_ABORT : 0));
}

/* nil, message, name, error object: a failure whose message librdkafka's
 * does not say when text is given (NULL: librdkafka's). */
int prd_kafka_fail_text(lua_State *L, rd_kafka_resp_err_t err, const char *text)
{
    return prd_fail(L, err, rd_kafka_err2name(err), text ? text : rd_kafka_err2str(err),
                    is_retriable(err) ? PRD_E_RETRIABLE : 0);
}

/* The failure tuple nil, message, name (e.g. "_QUEUE_FULL"), error object. */
int prd_kafka_fail(lua_State *L, rd_kafka_resp_err_t err)
{
    return prd_kafka_fail_text(L, err, NULL);
}

/*
 * The failure tuple for a producer that had a fatal error (err _FATAL):
 * nil, "Local: Fatal error", "_FATAL" as before, and an error object that
 * names the fatal error itself (e.g. "_FENCED"), fatal = true, with the
 * message "fatal error: <what happened>".
 */
int prd_kafka_fail_fatal(lua_State *L, rd_kafka_t *rk)
{
    char text[PRD_TEXT_MAX - 16], message[PRD_TEXT_MAX];
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(rk, text, sizeof text);

    snprintf(message, sizeof message, "fatal error: %s", err ? text : "unknown");
    lua_pushnil(L);
    lua_pushstring(L, rd_kafka_err2str(RD_KAFKA_RESP_ERR__FATAL));
    lua_pushliteral(L, "_FATAL");
    prd_kafka_error_push(L, err ? err : RD_KAFKA_RESP_ERR__FATAL, message, PRD_E_FATAL);
    return 4;
}

/* The boolean field of the table at idx as flag, or 0. */
static int flag_field(lua_State *L, int idx, const char *field, int flag)
{
    lua_getfield(L, idx, field);
    flag = lua_toboolean(L, -1) ? flag : 0;
    lua_pop(L, 1);
    return flag;
}

/***
 * core.error(name [, message [, flags]]) --> an error object, as the
 * Kafka backend returns them (for backends written in Lua and tests):
 * flags is a table of booleans fatal, txn_requires_abort and retriable
 * (which, when absent, is what the name says).
 */
int prd_kafka_error_new(lua_State *L)
{
    rd_kafka_resp_err_t err = prd_kafka_check_err_name(L, 1);
    const char *message = luaL_optstring(L, 2, NULL);

    if (lua_isnoneornil(L, 3)) {
        prd_kafka_error_push(L, err, message, 0);
        return 1;
    }
    luaL_checktype(L, 3, LUA_TTABLE);
    prd_kafka_error_push(L, err, message, flag_field(L, 3, "fatal", PRD_E_FATAL) |
                                          flag_field(L, 3, "txn_requires_abort", PRD_E_TXN_ABORT));
    lua_getfield(L, 3, "retriable");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
    } else {
        lua_pushboolean(L, lua_toboolean(L, -1));
        lua_setfield(L, -3, "retriable");
        lua_pop(L, 1);
    }
    return 1;
}

/* The error name at idx ("NOT_LEADER_FOR_PARTITION", "_TIMED_OUT") as
 * its code; raises on a name librdkafka does not know. */
rd_kafka_resp_err_t prd_kafka_check_err_name(lua_State *L, int idx)
{
    const struct rd_kafka_err_desc *descs;
    const char *name = luaL_checkstring(L, idx);
    size_t i, n;

    rd_kafka_get_err_descs(&descs, &n);
    for (i = 0; i < n; i++)
        if (descs[i].name && strcmp(descs[i].name, name) == 0)
            return descs[i].code;
    luaL_argerror(L, idx, lua_pushfstring(L, "unknown error name '%s'", name));
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/***
 * core.error_string(name) --> librdkafka's message for an error name
 * ("_MSG_TIMED_OUT" --> "Local: Message timed out"); raises if unknown.
 */
int prd_kafka_error_string(lua_State *L)
{
    lua_pushstring(L, rd_kafka_err2str(prd_kafka_check_err_name(L, 1)));
    return 1;
}

/* A client-level error for on_error: what call_on_error needs. */
typedef struct {
    int on_error;               /* registry ref */
    rd_kafka_resp_err_t err;
    const char *text;           /* redacted */
    int fatal;
} prd_client_error;

/* Protected: calls on_error with the error object. */
static int call_on_error(lua_State *L)
{
    const prd_client_error *e = lua_touserdata(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, e->on_error);
    prd_kafka_error_push(L, e->err, e->text, e->fatal ? PRD_E_FATAL : 0);
    lua_call(L, 1, 0);
    return 0;
}

/*
 * A client-level error (a broker down, failed authentication, a fatal
 * error), handed to on_error or, without one, logged. It is kept as the
 * likely cause of the local failures that follow (has_cause). text:
 * PRD_TEXT_MAX bytes, redacted here.
 */
int prd_kafka_error_report(lua_State *L, prd_kafka *p, rd_kafka_resp_err_t err,
                           char *text, int fatal)
{
    prd_client_error e = {p->on_error, err, NULL, fatal};

    prd_redact(p->secrets, text);
    /* "all brokers are down" follows the error that took them down:
     * it names the cause only when there is no other */
    if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || !p->last_error) {
        p->last_error = err;
        snprintf(p->last_error_text, sizeof p->last_error_text, "%.*s",
                 (int)sizeof p->last_error_text - 1, text);
    }
    if (p->on_error != LUA_NOREF) {
        e.text = text;
        return prd_call_protected(L, &p->base.busy, &on_error_key, call_on_error, &e);
    }
    return prd_log_f(L, &p->base.log, &p->base.busy, PRD_ERROR, "%s: %s (%s)", e.fatal ? "fatal error" : "error",
                    text, rd_kafka_err2name(err));
}


/* Makes call_on_error once per state (call.c's prd_call_open says why). */
void prd_kafka_errors_open(lua_State *L)
{
    prd_call_push_function(L, &on_error_key, call_on_error);
    lua_pop(L, 1);
}
