#!/usr/bin/env python3
"""An independent JetStream client for the specs (nats-py, not our code):
what kcat is to the Kafka specs. Runs in the venv scripts/install-deps.sh
makes (~/.cache/producers/venv; $PRODUCERS_NATS_VENV).

  read.py --stream S --subjects 'orders.>' [--max-msgs N] [--max-bytes N]
          [--max-msg-size N] [--discard new|old] [--duplicate-window SEC]
          [--storage file|memory]          create the stream (or update it)
  read.py --stream S --read [--filter SUBJ] [--timeout SEC]
          every message, one JSON line each, in sequence order:
          {"stream", "seq", "subject", "headers": {name: value} or null,
           "data": text, "encoding": "utf-8"} ("encoding": "base64" and
          data in base64 when the payload is not UTF-8)
  read.py --stream S --info               the stream's config and state, one JSON line
  read.py --stream S --delete             delete the stream (exit 4 if it was missing)
  read.py --publish SUBJ --data X [--data Y ...] [--count N] [--msg-id ID]
          [--header K=V ...]              publish through JetStream; one JSON
          line per ack: {"stream", "seq", "duplicate"}; with --count each
          --data is sent N times, "{i}" in it (and in --msg-id) replaced by
          0..N-1
  read.py --ping                          connect, print the server's INFO

Connection: --server URL (default $NATS_URL), --user/--password or
--token (default $NATS_USER, $NATS_PASSWORD, $NATS_TOKEN when --auth-env
is given), or --nkey-seed FILE (an nkey user's seed), or --creds FILE (a
user's JWT and seed: decentralized auth); --ca FILE for tls:// URLs.
Never prints a password, token, seed or JWT.

Exit status: 0 done; 1 a JetStream or other error (its message on stderr,
as "ERROR_CLASS: message"); 2 usage; 3 no connection (refused, TLS or
authentication failure); 4 no such stream.
"""
import argparse
import asyncio
import base64
import json
import logging
import os
import ssl
import sys
import uuid

import nats
from nats.js import api
from nats.js.errors import NotFoundError


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default=os.environ.get("NATS_URL", "nats://127.0.0.1:14222"))
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--token")
    p.add_argument("--auth-env", action="store_true",
                   help="take user, password or token from $NATS_USER, $NATS_PASSWORD, $NATS_TOKEN")
    p.add_argument("--nkey-seed", metavar="FILE", help="an nkey user's seed file (SU...)")
    p.add_argument("--creds", metavar="FILE", help="a .creds file (a user's JWT and seed)")
    p.add_argument("--ca", help="CA file that signed the server's certificate (tls:// URLs)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for each step")
    p.add_argument("--stream")
    p.add_argument("--subjects", action="append", help="create the stream with these subjects")
    p.add_argument("--max-msgs", type=int)
    p.add_argument("--max-bytes", type=int)
    p.add_argument("--max-msg-size", type=int)
    p.add_argument("--discard", choices=["new", "old"])
    p.add_argument("--duplicate-window", type=float, help="seconds")
    p.add_argument("--storage", choices=["file", "memory"], default="file")
    p.add_argument("--read", action="store_true")
    p.add_argument("--filter", help="read only this subject (wildcards allowed)")
    p.add_argument("--info", action="store_true")
    p.add_argument("--delete", action="store_true")
    p.add_argument("--publish", metavar="SUBJECT")
    p.add_argument("--data", action="append", default=[])
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--msg-id")
    p.add_argument("--header", action="append", default=[], metavar="K=V")
    p.add_argument("--ping", action="store_true")
    a = p.parse_args(argv)
    actions = [bool(a.subjects), a.read, a.info, a.delete, a.publish is not None, a.ping]
    if sum(actions) != 1:
        p.error("give exactly one of --subjects (create), --read, --info, --delete, --publish, --ping")
    if (a.subjects or a.read or a.info or a.delete) and not a.stream:
        p.error("--stream NAME is needed")
    if a.publish is not None and not a.data:
        p.error("--publish needs --data")
    if a.auth_env:
        a.user = a.user or os.environ.get("NATS_USER")
        a.password = a.password or os.environ.get("NATS_PASSWORD")
        a.token = a.token or os.environ.get("NATS_TOKEN")
    return a


def out(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")


ERRORS = []


async def connect(a):
    # one try: nats-py's initial connect keeps trying a refused server while
    # max_reconnect_attempts is 0 ("no limit" there), so 1 and a short wait
    opts = dict(servers=[a.server], connect_timeout=a.timeout, allow_reconnect=False,
                max_reconnect_attempts=1, reconnect_time_wait=0.05)
    if a.user is not None:
        opts.update(user=a.user, password=a.password or "")
    if a.token is not None:
        opts["token"] = a.token
    if a.nkey_seed is not None:
        opts["nkeys_seed"] = a.nkey_seed
    if a.creds is not None:
        opts["user_credentials"] = a.creds
    if a.server.startswith("tls://"):
        ctx = ssl.create_default_context(cafile=a.ca) if a.ca else ssl.create_default_context()
        opts["tls"] = ctx

    async def keep(e):  # the cause, for the message; no stderr noise from the client
        ERRORS.append(e)
    opts["error_cb"] = keep
    return await nats.connect(**opts)


def stream_config(a):
    return api.StreamConfig(
        name=a.stream, subjects=a.subjects,
        storage=api.StorageType.FILE if a.storage == "file" else api.StorageType.MEMORY,
        max_msgs=a.max_msgs if a.max_msgs is not None else -1,
        max_bytes=a.max_bytes if a.max_bytes is not None else -1,
        max_msg_size=a.max_msg_size if a.max_msg_size is not None else -1,
        discard=api.DiscardPolicy.NEW if a.discard == "new" else api.DiscardPolicy.OLD,
        duplicate_window=a.duplicate_window if a.duplicate_window is not None else 0,
    )


async def create(nc, a):
    js = nc.jetstream(timeout=a.timeout)
    cfg = stream_config(a)
    try:
        info = await js.add_stream(cfg)
    except nats.js.errors.BadRequestError as e:
        if e.err_code != 10058:  # stream name already in use with a different configuration
            raise
        info = await js.update_stream(cfg)
    out({"stream": info.config.name, "subjects": info.config.subjects, "messages": info.state.messages})


async def info(nc, a):
    js = nc.jetstream(timeout=a.timeout)
    si = await js.stream_info(a.stream)
    c, s = si.config, si.state
    out({"stream": c.name, "subjects": c.subjects, "max_msgs": c.max_msgs, "max_bytes": c.max_bytes,
         "discard": getattr(c.discard, "value", c.discard), "storage": getattr(c.storage, "value", c.storage),
         "duplicate_window": c.duplicate_window, "messages": s.messages, "bytes": s.bytes,
         "first_seq": s.first_seq, "last_seq": s.last_seq})


async def delete(nc, a):
    js = nc.jetstream(timeout=a.timeout)
    await js.delete_stream(a.stream)
    out({"deleted": a.stream})


def record(msg):
    md = msg.metadata
    rec = {"stream": md.stream, "seq": md.sequence.stream, "subject": msg.subject,
           "headers": dict(msg.headers) if msg.headers else None}
    try:
        rec["data"], rec["encoding"] = msg.data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        rec["data"], rec["encoding"] = base64.b64encode(msg.data).decode("ascii"), "base64"
    return rec


async def read(nc, a):
    """Every message (matching --filter) stored when the read began, through
    a pull consumer of our own (no acks), deleted afterwards."""
    js = nc.jetstream(timeout=a.timeout)
    si = await js.stream_info(a.stream)
    if si.state.messages == 0:
        return
    name = "read-py-" + uuid.uuid4().hex[:12]
    cfg = api.ConsumerConfig(durable_name=name, deliver_policy=api.DeliverPolicy.ALL,
                             ack_policy=api.AckPolicy.NONE, inactive_threshold=60.0,
                             filter_subject=a.filter)
    ci = await js.add_consumer(a.stream, cfg)
    want = ci.num_pending or 0   # what the consumer has to deliver: the messages its filter matches
    try:
        sub = await js.pull_subscribe_bind(durable=name, stream=a.stream)
        got = 0
        while got < want:
            msgs = await sub.fetch(batch=min(512, want - got), timeout=a.timeout)
            for m in msgs:
                out(record(m))
                got += 1
    finally:
        try:
            await js.delete_consumer(a.stream, name)
        except Exception:  # inactive_threshold removes it anyway
            pass


async def publish(nc, a):
    js = nc.jetstream(timeout=a.timeout)
    headers = {}
    for h in a.header:
        k, sep, v = h.partition("=")
        if not sep:
            raise SystemExit("read.py: --header wants K=V, got %r" % h)
        headers[k] = v
    for i in range(a.count):
        for d in a.data:
            hs = dict(headers)
            if a.msg_id is not None:
                hs["Nats-Msg-Id"] = a.msg_id.replace("{i}", str(i))
            # os.fsencode: the argument's own bytes, not UTF-8 ones
            ack = await js.publish(a.publish, os.fsencode(d.replace("{i}", str(i))), headers=hs or None)
            out({"stream": ack.stream, "seq": ack.seq, "duplicate": bool(ack.duplicate)})


async def ping(nc, a):
    info = nc._server_info
    out({"server_name": info.get("server_name"), "version": info.get("version"),
         "jetstream": bool(info.get("jetstream")), "tls": nc.connected_url.scheme == "tls"})


async def main(a):
    try:
        nc = await asyncio.wait_for(connect(a), a.timeout + 1)
    except Exception as e:  # refused, TLS, authorization
        cause = ERRORS[-1] if ERRORS else e
        sys.stderr.write("read.py: cannot connect to %s: %s: %s\n" % (a.server, type(cause).__name__, cause))
        return 3
    try:
        if a.subjects:
            await create(nc, a)
        elif a.read:
            await read(nc, a)
        elif a.info:
            await info(nc, a)
        elif a.delete:
            await delete(nc, a)
        elif a.publish is not None:
            await publish(nc, a)
        else:
            await ping(nc, a)
        return 0
    except NotFoundError as e:
        sys.stderr.write("read.py: %s: %s\n" % (type(e).__name__, e))
        return 4
    except Exception as e:
        sys.stderr.write("read.py: %s: %s\n" % (type(e).__name__, e))
        return 1
    finally:
        try:
            await nc.close()
        except Exception:
            pass


if __name__ == "__main__":
    # asyncio's "returning true from eof_received() has no effect when using ssl" at each TLS close
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    sys.exit(asyncio.run(main(parse_args(sys.argv[1:]))))
