/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * connect.c: the NATS connection (nats.c's natsOptions from the options
 * the Lua layer checked: lua/producers/nats.lua) and its JetStream
 * context, whose ack handler is report.c's; the connection's callbacks,
 * on nats.c's threads, queue events for the logger and on_error, and a
 * connection closed for good fails what is in flight. Security follows
 * the options: user and password, a token, an nkey or a creds file; TLS
 * when a URL says tls:// (or tls = true), with the CA given. No secret
 * goes into a message: a URL's user:password@ is shown as ***@.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/log.h"
#include "nats/connect.h"
#include "nats/errors.h"
#include "nats/report.h"
#include "nats/spool.h"

#define CLOSE_WAIT_MS 2000        /* bound on waiting for the closed callback */

/* The connected server's URL, or "?" (for log lines). */
static const char *url_of(natsConnection *nc, char *buf, size_t size)
{
    if (natsConnection_GetConnectedUrl(nc, buf, size) != NATS_OK || !*buf)
        snprintf(buf, size, "?");
    return buf;
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    prd_nats *p = closure;

    (void)nc;
    if (atomic_load(&p->shutting))
        return;
    atomic_fetch_add(&p->disconnects, 1);
    prd_nats_connection_moved(p, prd_nats_now_us());
    prd_nats_push_event(p, PRD_WARN, NATS_OK, "disconnected; reconnecting (messages wait for their acks)");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    prd_nats *p = closure;
    char url[256];

    if (atomic_load(&p->shutting))
        return;
    prd_nats_connection_moved(p, prd_nats_now_us());
    prd_nats_push_event(p, PRD_INFO, NATS_OK, "reconnected to %s", url_of(nc, url, sizeof url));
}

/* The connection is closed for good (reconnects exhausted, or close):
 * what is in flight fails, each message with its report. */
static void on_closed(natsConnection *nc, void *closure)
{
    prd_nats *p = closure;

    (void)nc;
    if (!atomic_load(&p->shutting)) {
        prd_nats_take_back(p, "_CONNECTION_CLOSED",
                           "connection closed before the ack (the server may have stored it)");
        prd_nats_push_event(p, PRD_ERROR, NATS_CONNECTION_CLOSED,
                            "connection closed for good (reconnects exhausted)");
    }
    pthread_mutex_lock(&p->lock);
    p->conn_closed = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    prd_nats *p = closure;
    const char *text = NULL;

    (void)sub;
    if (atomic_load(&p->shutting))
        return;
    natsConnection_GetLastError(nc, &text);
    if (err == NATS_NOT_PERMITTED)
        prd_nats_note_denial(p, text, prd_nats_now_us());
    prd_nats_push_event(p, PRD_ERROR, err, "%s", text && *text ? text : natsStatus_GetText(err));
}

/* conf.field as a string, or NULL. */
static const char *field_string(lua_State *L, int conf, const char *field)
{
    const char *s;

    lua_getfield(L, conf, field);
    s = lua_tostring(L, -1);
    lua_pop(L, 1);              /* conf keeps it */
    return s;
}

static lua_Integer field_integer(lua_State *L, int conf, const char *field, lua_Integer def)
{
    lua_Integer n;

    lua_getfield(L, conf, field);
    n = lua_isnumber(L, -1) ? lua_tointeger(L, -1) : def;
    lua_pop(L, 1);
    return n;
}

/* The servers (conf.servers, a list) into opts, and a copy of them for
 * messages, each URL's user:password@ as ***@. */
static natsStatus set_servers(lua_State *L, int conf, natsOptions *opts, char *shown, size_t size,
                              int *secure)
{
    const char *urls[64];
    int n = 0;
    size_t used = 0;
    natsStatus s;

    lua_getfield(L, conf, "servers");
    while (n < 64) {
        const char *url, *at, *scheme;

        lua_rawgeti(L, -1, n + 1);
        if (!(url = lua_tostring(L, -1))) {
            lua_pop(L, 1);
            break;
        }
        urls[n++] = url;
        lua_pop(L, 1);          /* the list keeps it */
        *secure |= strncmp(url, "tls://", 6) == 0;
        scheme = strstr(url, "://");
        at = strchr(url, '@');
        if (used < size)
            used += (size_t)snprintf(shown + used, size - used, "%s%.*s%s%s", n > 1 ? "," : "",
                                     at && scheme && at > scheme ? (int)(scheme + 3 - url) : 0, url,
                                     at && scheme && at > scheme ? "***@" : "",
                                     at && scheme && at > scheme ? at + 1 : url);
    }
    s = natsOptions_SetServers(opts, urls, n);
    lua_pop(L, 1);
    return s;
}

/* The credentials of conf into opts. */
static natsStatus set_auth(lua_State *L, int conf, natsOptions *opts)
{
    const char *user = field_string(L, conf, "user"), *token = field_string(L, conf, "token");
    const char *creds = field_string(L, conf, "creds"), *nkey = field_string(L, conf, "nkey");
    natsStatus s = NATS_OK;

    if (user)
        s = natsOptions_SetUserInfo(opts, user, field_string(L, conf, "password"));
    if (s == NATS_OK && token)
        s = natsOptions_SetToken(opts, token);
    if (s == NATS_OK && creds)
        s = natsOptions_SetUserCredentialsFromFiles(opts, creds, NULL);
    if (s == NATS_OK && nkey)
        s = natsOptions_SetNKeyFromSeed(opts, nkey, field_string(L, conf, "nkey_seed"));
    return s;
}

/* TLS of conf into opts: the CA, a client certificate. */
static natsStatus set_tls(lua_State *L, int conf, natsOptions *opts)
{
    const char *ca = field_string(L, conf, "ca"), *cert = field_string(L, conf, "cert");
    natsStatus s = natsOptions_SetSecure(opts, true);

    if (s == NATS_OK && ca)
        s = natsOptions_LoadCATrustedCertificates(opts, ca);
    if (s == NATS_OK && cert)
        s = natsOptions_LoadCertificatesChain(opts, cert, field_string(L, conf, "key"));
    return s;
}

/* natsOptions for conf; shown gets the servers for messages. */
static natsStatus make_options(lua_State *L, prd_nats *p, int conf, natsOptions **opts,
                               char *shown, size_t size)
{
    const char *name = field_string(L, conf, "name");
    int secure = lua_getfield(L, conf, "tls") == LUA_TBOOLEAN && lua_toboolean(L, -1);
    natsStatus s;

    lua_pop(L, 1);
    if ((s = natsOptions_Create(opts)) != NATS_OK)
        return s;
    s = set_servers(L, conf, *opts, shown, size, &secure);
    if (s == NATS_OK && name)
        s = natsOptions_SetName(*opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(*opts, field_integer(L, conf, "connect_timeout_ms", 5000));
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(*opts, true);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(*opts, (int)field_integer(L, conf, "max_reconnects", -1));
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(*opts, field_integer(L, conf, "reconnect_wait_ms", 500));
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(*opts,
                                            (int)field_integer(L, conf, "reconnect_buffer", 8 << 20));
    if (s == NATS_OK)
        s = set_auth(L, conf, *opts);
    if (s == NATS_OK && secure)
        s = set_tls(L, conf, *opts);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(*opts, on_disconnected, p);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(*opts, on_reconnected, p);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(*opts, on_closed, p);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(*opts, on_async_error, p);
    return s;
}

/* The JetStream context, its ack handler report.c's. */
static natsStatus make_context(lua_State *L, prd_nats *p, int conf)
{
    jsOptions jo;

    jsOptions_Init(&jo);
    jo.PublishAsync.AckHandler = prd_nats_on_ack;
    jo.PublishAsync.AckHandlerClosure = p;
    jo.PublishAsync.MaxPending = p->max_pending = field_integer(L, conf, "max_pending", 10000);
    p->pool.keep = jo.PublishAsync.MaxPending > 0 && jo.PublishAsync.MaxPending < PRD_NATS_POOL_MAX
                      ? (size_t)jo.PublishAsync.MaxPending : PRD_NATS_POOL_MAX;
    jo.PublishAsync.StallWait = field_integer(L, conf, "stall_wait_ms", 10);
    return natsConnection_JetStream(&p->js, p->nc, &jo);
}

/*
 * Connects p as conf (a table at conf) says and makes its JetStream
 * context: 0, or the failure tuple pushed (nil, message, name, error
 * object) and its count. The message names the servers (without
 * credentials) and nats.c's reason.
 */
int prd_nats_connect(lua_State *L, prd_nats *p, int conf)
{
    char shown[512] = "", text[PRD_TEXT_MAX];
    const char *why;
    natsOptions *opts = NULL;
    natsStatus s;

    p->ack_timeout_ms = field_integer(L, conf, "ack_timeout_ms", 30000);
    s = make_options(L, p, conf, &opts, shown, sizeof shown);
    if (s == NATS_OK)
        s = natsConnection_Connect(&p->nc, opts);
    if (s == NATS_OK)
        s = make_context(L, p, conf);
    natsOptions_Destroy(opts);
    if (s == NATS_OK)
        return 0;
    why = prd_nats_last_error();
    snprintf(text, sizeof text, "cannot connect to %s: %s", shown, why ? why : natsStatus_GetText(s));
    prd_nats_disconnect(p);
    return prd_nats_fail(L, s, text);
}

/* Waits up to CLOSE_WAIT_MS for nats.c's closed callback: after it, its
 * threads call none of ours. */
static void wait_closed(prd_nats *p)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += CLOSE_WAIT_MS / 1000;
    pthread_mutex_lock(&p->lock);
    while (!p->conn_closed && pthread_cond_timedwait(&p->cond, &p->lock, &ts) == 0)
        ;
    pthread_mutex_unlock(&p->lock);
}

/*
 * Takes the connection down: the acks still in flight are taken back
 * from nats.c first (destroyed, they would get no handler call) and fail
 * as purged; then the connection is closed, and freed with the context.
 */
void prd_nats_disconnect(prd_nats *p)
{
    atomic_store(&p->shutting, 1);
    prd_nats_take_back(p, "_PURGE_INFLIGHT", "purged in flight by close (the server may have stored it)");
    if (p->nc) {
        natsConnection_Close(p->nc);
        wait_closed(p);
    }
    jsCtx_Destroy(p->js);
    natsConnection_Destroy(p->nc);
    p->js = NULL;
    p->nc = NULL;
}
