#!/usr/bin/env python3
"""Throwaway NATS nkeys and JWTs for scripts/nats/server.sh start: an nkey
user (ed25519, the nkeys format: base32 with a CRC16), and decentralized
auth (an operator, an account with JetStream, a user of it in a .creds
file), plus their wrong twins for the refusals. Runs in the venv
scripts/install-deps.sh makes (PyPI's nkeys, over PyNaCl).

  keys.py DIR     writes into DIR (mode 600 files):
    nkey-user.seed, nkey-user.pub   the nkey user the auth and tls servers know
    nkey-other.seed                 another user's seed (a wrong seed)
    operator.jwt                    the jwt server's operator (its config names it)
    account.pub, account.jwt        the account the jwt server preloads (JetStream on)
    system.pub, system.jwt          its system account (JetStream needs one)
    user.creds                      a user of that account (JWT and seed)
    other.creds                     a user of an account the server does not know
  and prints the public parts as KEY=value lines: NKEY_USER, ACCOUNT,
  SYSTEM_ACCOUNT.

Nothing secret is printed. A JWT here is header.claims.signature, each
base64url without padding, signed with ed25519 by the issuer's nkey
("alg": "ed25519-nkey"), claims as nats-server 2.2+ reads them (version 2).
"""
import base64
import hashlib
import json
import os
import sys
import time

import nkeys


def keypair(prefix):
    """A new key pair of that role (nkeys.PREFIX_BYTE_*)."""
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def text(b):
    return b.decode("ascii") if isinstance(b, bytes) else b


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt(issuer, subject, name, nats):
    """A JWT for subject (a public key), issued and signed by issuer."""
    claims = {"iat": int(time.time()), "iss": text(issuer.public_key), "name": name,
              "sub": subject, "nats": dict(nats, version=2)}
    # jti: a hash of the claims without it, as the JWT library names them
    claims["jti"] = base64.b32encode(
        hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()).decode().rstrip("=")
    head = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = b64url(json.dumps(claims, sort_keys=True).encode())
    return "%s.%s.%s" % (head, body, b64url(issuer.sign(("%s.%s" % (head, body)).encode())))


UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
             "wildcards": True, "conn": -1, "leaf": -1,
             # JetStream on for the account: storage not 0
             "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


def account_jwt(operator, account, name, limits):
    return jwt(operator, text(account.public_key), name, {"type": "account", "limits": limits})


def creds(account, name):
    """The .creds file of a new user of account: its JWT and its seed."""
    user = keypair(nkeys.PREFIX_BYTE_USER)
    token = jwt(account, text(user.public_key), name,
                {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
    return ("-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            "-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n\n"
            "*************************************************************\n") % (token, text(user.seed))


def write(folder, name, content):
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content if content.endswith("\n") else content + "\n")


def main(folder):
    os.makedirs(folder, mode=0o700, exist_ok=True)
    user, other = keypair(nkeys.PREFIX_BYTE_USER), keypair(nkeys.PREFIX_BYTE_USER)
    write(folder, "nkey-user.seed", text(user.seed))
    write(folder, "nkey-user.pub", text(user.public_key))
    write(folder, "nkey-other.seed", text(other.seed))

    operator = keypair(nkeys.PREFIX_BYTE_OPERATOR)
    account, stranger, system = (keypair(nkeys.PREFIX_BYTE_ACCOUNT) for _ in range(3))
    write(folder, "operator.jwt", jwt(operator, text(operator.public_key), "producers-test-operator",
                                      {"type": "operator", "system_account": text(system.public_key)}))
    write(folder, "account.pub", text(account.public_key))
    write(folder, "account.jwt", account_jwt(operator, account, "producers", UNLIMITED))
    write(folder, "system.pub", text(system.public_key))
    write(folder, "system.jwt", account_jwt(operator, system, "SYS", {}))
    write(folder, "user.creds", creds(account, "producers-user"))
    write(folder, "other.creds", creds(stranger, "stranger-user"))
    print("NKEY_USER=%s" % text(user.public_key))
    print("ACCOUNT=%s" % text(account.public_key))
    print("SYSTEM_ACCOUNT=%s" % text(system.public_key))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: keys.py DIR\n")
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
