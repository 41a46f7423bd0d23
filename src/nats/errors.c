/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * errors.c: nats.c's errors in core's shapes (core/error.c). A failure
 * Kafka also has keeps Kafka's name and number (_MSG_TIMED_OUT,
 * _QUEUE_FULL, _PURGE_INFLIGHT, _AUTHENTICATION, _SSL, _INVALID_ARG,
 * MSG_SIZE_TOO_LARGE), so code written for either backend reads it the
 * same; JetStream's own are NO_STREAM (503: no stream captures the
 * subject), STREAM_FULL (10077: a stream limit refused the message) and
 * JETSTREAM (another JetStream error, its err_code as the code); other
 * nats.c statuses are _CONNECTION_CLOSED, _NO_SERVER and _NATS, with the
 * code -(1000 + natsStatus). docs/nats.md has the table. Client-level
 * events (a disconnect, a reconnect, an asynchronous error) go to
 * on_error or the logger (prd_nats_event_serve).
 */
#include <string.h>

#include "core/call.h"
#include "core/error.h"
#include "core/log.h"
#include "nats/errors.h"

static const char on_error_key;

#define LOCAL(s) (-(1000 + (int)(s)))

static const prd_nats_err named[] = {
    {-192, "_MSG_TIMED_OUT", 1, 1},
    {-184, "_QUEUE_FULL", 1, 0},
    {-151, "_PURGE_INFLIGHT", 0, 1},
    {-152, "_PURGE_QUEUE", 0, 0},
    {-197, "_DESTROY", 0, 0},
    {-169, "_AUTHENTICATION", 0, 0},
    {-181, "_SSL", 0, 0},
    {-186, "_INVALID_ARG", 0, 0},
    {10, "MSG_SIZE_TOO_LARGE", 0, 0},
    {PRD_NATS_NO_STREAM, "NO_STREAM", 0, 0},
    {PRD_NATS_STREAM_FULL, "STREAM_FULL", 0, 0},
    {LOCAL(NATS_CONNECTION_CLOSED), "_CONNECTION_CLOSED", 1, 1},
    {LOCAL(NATS_NO_SERVER), "_NO_SERVER", 1, 0},
};

/* The error of that name (one of named[]). */
prd_nats_err prd_nats_err_named(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof named / sizeof named[0]; i++)
        if (strcmp(named[i].name, name) == 0)
            return named[i];
    return (prd_nats_err){LOCAL(NATS_ERR), "_NATS", 0, 0};
}

/* The error of a nats.c status and, for NATS_ERR from JetStream, its
 * err_code (0 when none). */
prd_nats_err prd_nats_err_of(natsStatus s, int js_code)
{
    switch (s) {
    case NATS_NO_RESPONDERS:
        return prd_nats_err_named("NO_STREAM");
    case NATS_TIMEOUT:
        return prd_nats_err_named("_MSG_TIMED_OUT");
    case NATS_INSUFFICIENT_BUFFER:
        return prd_nats_err_named("_QUEUE_FULL");
    case NATS_CONNECTION_AUTH_FAILED:
    case NATS_NOT_PERMITTED:
        return prd_nats_err_named("_AUTHENTICATION");
    case NATS_SSL_ERROR:
        return prd_nats_err_named("_SSL");
    case NATS_INVALID_ARG:
        return prd_nats_err_named("_INVALID_ARG");
    case NATS_MAX_PAYLOAD:
        return prd_nats_err_named("MSG_SIZE_TOO_LARGE");
    case NATS_CONNECTION_CLOSED:
        return prd_nats_err_named("_CONNECTION_CLOSED");
    case NATS_NO_SERVER:
        return prd_nats_err_named("_NO_SERVER");
    default:
        break;
    }
    if (js_code == PRD_NATS_STREAM_FULL)
        return prd_nats_err_named("STREAM_FULL");
    if (js_code > 0)
        return (prd_nats_err){js_code, "JETSTREAM", 0, 0};
    return (prd_nats_err){LOCAL(s), "_NATS", 0, 0};
}

/* nats.c's text of this thread's last error, without the "(file.c:123): "
 * it starts with, or NULL when it has none. */
const char *prd_nats_last_error(void)
{
    const char *text = nats_GetLastError(NULL), *end;

    if (!text || !*text)
        return NULL;
    if (text[0] == '(' && (end = strstr(text, "): ")))
        text = end + 3;
    return *text ? text : NULL;
}

/* Pushes an error object for e, with text as its message. */
void prd_nats_error_push(lua_State *L, prd_nats_err e, const char *text)
{
    prd_error_push(L, e.code, e.name, text, e.retriable ? PRD_E_RETRIABLE : 0);
}

/* The failure tuple nil, text, name, error object for a named error. */
int prd_nats_fail_named(lua_State *L, const char *name, const char *text)
{
    prd_nats_err e = prd_nats_err_named(name);

    return prd_fail(L, e.code, e.name, text, e.retriable ? PRD_E_RETRIABLE : 0);
}

/* The failure tuple of status s; text NULL: nats.c's text for it. */
int prd_nats_fail(lua_State *L, natsStatus s, const char *text)
{
    prd_nats_err e = prd_nats_err_of(s, 0);

    return prd_fail(L, e.code, e.name, text ? text : natsStatus_GetText(s),
                    e.retriable ? PRD_E_RETRIABLE : 0);
}

/* An event for on_error: what call_on_error needs. */
typedef struct {
    int on_error;               /* registry ref */
    const prd_nats_event *ev;
} prd_client_event;

/* Protected: on_error(err) for the event at 1. */
static int call_on_error(lua_State *L)
{
    const prd_client_event *e = lua_touserdata(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, e->on_error);
    prd_error_push(L, e->ev->code, e->ev->name, e->ev->text, PRD_E_RETRIABLE);
    lua_call(L, 1, 0);
    return 0;
}

/*
 * Serves an event nats.c's threads queued: an error goes to on_error (an
 * error object) or, without one, to the logger; a log line to the logger.
 */
int prd_nats_event_serve(lua_State *L, prd_nats *p, const prd_nats_event *ev)
{
    prd_client_event e = {p->on_error, ev};

    if (ev->code && p->on_error != LUA_NOREF)
        return prd_call_protected(L, &p->base.busy, &on_error_key, call_on_error, &e);
    if (ev->code)
        return prd_log_f(L, &p->base.log, &p->base.busy, ev->level, "nats: %s (%s)", ev->text,
                         ev->name);
    return prd_log_f(L, &p->base.log, &p->base.busy, ev->level, "nats: %s", ev->text);
}

/* Makes call_on_error once per state (call.c's prd_call_open says why). */
void prd_nats_errors_open(lua_State *L)
{
    prd_call_push_function(L, &on_error_key, call_on_error);
    lua_pop(L, 1);
}
