/* producers: a smoke check of nats.c 3.4 (Debian's libnats-dev), built and
 * run by spec/integration/nats/server_spec.lua. It tells the NATS
 * backend's author (issue #23) that js_PublishMsgAsync, jsPubOptions'
 * MsgId and MaxWait, a header, the ack handler and its jsPubAck /
 * jsPubAckErr work here, and what they say. Not part of the library.
 *
 *   nats_smoke URL SUBJECT COUNT [--msg-id PREFIX] [--ca FILE]
 *              [--max-wait MS] [--max-pending N] [--wait-stdin 1]
 *   (credentials from $NATS_USER and $NATS_PASSWORD, or $NATS_TOKEN:
 *   never on the command line)
 *
 * Publishes COUNT messages "smoke-<i>" with header Producers-Key:
 * key-<i> (and Nats-Msg-Id PREFIX-<i>), waits for every ack, prints one
 * line per message in the order the acks arrive:
 *   ack <i> stream=<S> seq=<N> duplicate=<0|1>
 *   err <i> status=<natsStatus text> code=<jsErrCode> text=<ErrText>
 * then "done acked=<N> failed=<N>". --wait-stdin 1 prints "connected"
 * and reads one line from stdin before publishing (a spec stops the
 * server there). Exit 0 when every message got its
 * line, 1 otherwise (connect failure: "connect: <status text>", exit 3).
 * Caveat: the ack handler runs on nats.c's own thread; this program only
 * prints from it, under a mutex. */
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
static int acked, failed;

/* the message's index, from its payload "smoke-<i>" */
static int msg_index(natsMsg *msg) {
  const char *data = natsMsg_GetData(msg);
  int len = natsMsg_GetDataLength(msg);
  char buf[32];
  if (data == NULL || len <= 6 || len >= (int)sizeof buf) return -1;
  memcpy(buf, data, (size_t)len);
  buf[len] = '\0';
  return atoi(buf + 6);
}

/* jsPubAckHandler: exactly one of pa and pae is set; msg is ours to destroy */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  (void)js; (void)closure;
  pthread_mutex_lock(&print_lock);
  if (pa != NULL) {
    printf("ack %d stream=%s seq=%llu duplicate=%d\n", msg_index(msg), pa->Stream,
           (unsigned long long)pa->Sequence, pa->Duplicate ? 1 : 0);
    acked++;
  } else if (pae != NULL) {
    printf("err %d status=%s code=%d text=%s\n", msg_index(msg), natsStatus_GetText(pae->Err),
           (int)pae->ErrCode, pae->ErrText ? pae->ErrText : "");
    failed++;
  }
  fflush(stdout);
  pthread_mutex_unlock(&print_lock);
  natsMsg_Destroy(msg);
}

static natsStatus connect_to(natsConnection **nc, const char *url, const char *ca) {
  natsOptions *opts = NULL;
  const char *user = getenv("NATS_USER"), *password = getenv("NATS_PASSWORD");
  const char *token = getenv("NATS_TOKEN");
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetURL(opts, url);
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 5000);
  if (s == NATS_OK && user && password) s = natsOptions_SetUserInfo(opts, user, password);
  if (s == NATS_OK && token) s = natsOptions_SetToken(opts, token);
  if (s == NATS_OK && ca) s = natsOptions_LoadCATrustedCertificates(opts, ca);
  if (s == NATS_OK && strncmp(url, "tls://", 6) == 0) s = natsOptions_SetSecure(opts, true);
  if (s == NATS_OK) s = natsConnection_Connect(nc, opts);
  natsOptions_Destroy(opts);
  return s;
}

static natsStatus publish_one(jsCtx *js, const char *subject, int i, const char *id_prefix, int64_t max_wait) {
  char data[32], key[32], id[128];
  natsMsg *msg = NULL;
  jsPubOptions po;
  natsStatus s;
  snprintf(data, sizeof data, "smoke-%d", i);
  snprintf(key, sizeof key, "key-%d", i);
  s = natsMsg_Create(&msg, subject, NULL, data, (int)strlen(data));
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Producers-Key", key);
  jsPubOptions_Init(&po);
  if (id_prefix) {
    snprintf(id, sizeof id, "%s-%d", id_prefix, i);
    po.MsgId = id;
  }
  if (max_wait > 0) po.MaxWait = max_wait;
  if (s == NATS_OK) s = js_PublishMsgAsync(js, &msg, &po);
  natsMsg_Destroy(msg);   /* NULL once the library took it */
  return s;
}

int main(int argc, char **argv) {
  const char *id_prefix = NULL, *ca = NULL;
  int64_t max_wait = 0, max_pending = 0;
  int wait_stdin = 0;
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  jsOptions jo;
  jsPubOptions done_opts;
  natsStatus s;
  int i, count, rc;
  if (argc < 4) {
    fprintf(stderr, "usage: %s URL SUBJECT COUNT [--msg-id P] [--ca F] [--max-wait MS] [--max-pending N]\n", argv[0]);
    return 2;
  }
  count = atoi(argv[3]);
  for (i = 4; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--msg-id") == 0) id_prefix = argv[i + 1];
    else if (strcmp(argv[i], "--ca") == 0) ca = argv[i + 1];
    else if (strcmp(argv[i], "--max-wait") == 0) max_wait = atoll(argv[i + 1]);
    else if (strcmp(argv[i], "--max-pending") == 0) max_pending = atoll(argv[i + 1]);
    else if (strcmp(argv[i], "--wait-stdin") == 0) wait_stdin = atoi(argv[i + 1]);
    else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
  }
  s = connect_to(&nc, argv[1], ca);
  if (s != NATS_OK) {
    printf("connect: %s\n", natsStatus_GetText(s));
    nats_Close();
    return 3;
  }
  jsOptions_Init(&jo);
  jo.PublishAsync.AckHandler = on_ack;
  if (max_pending > 0) jo.PublishAsync.MaxPending = max_pending;
  s = natsConnection_JetStream(&js, nc, &jo);
  if (wait_stdin) {
    char line[16];
    printf("connected\n");
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL) { /* EOF goes on too */ }
  }
  for (i = 0; s == NATS_OK && i < count; i++) s = publish_one(js, argv[2], i, id_prefix, max_wait);
  if (s != NATS_OK) printf("publish: %s\n", natsStatus_GetText(s));
  jsPubOptions_Init(&done_opts);
  done_opts.MaxWait = 20000;
  if (s == NATS_OK) {
    s = js_PublishAsyncComplete(js, &done_opts);
    if (s != NATS_OK) printf("complete: %s\n", natsStatus_GetText(s));
  }
  pthread_mutex_lock(&print_lock);
  printf("done acked=%d failed=%d\n", acked, failed);
  rc = (s == NATS_OK && acked + failed == count) ? 0 : 1;
  pthread_mutex_unlock(&print_lock);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  return rc;
}
