"""An HTTP CONNECT proxy that demands NTLM and verifies it (pyspnego's NTLM acceptor,
users from NTLM_USER_FILE: DOMAIN:user:password lines). Prints `listening on ADDR`,
then one line per CONNECT: `CONNECT host:port user=DOMAIN\\user status=200|407`.

pyspnego checks an NTLMv2 response against the client's blob as it packs it again, which
drops what some clients (Samba's ntlm_auth, under Wine's SSPI) put after the AV pairs;
MS-NLMP computes NTProofStr over the blob as sent. A response pyspnego refuses is
checked that way before it is refused."""
import base64
import hashlib
import hmac
import os
import select
import socket
import sys
import threading

import spnego
from spnego._ntlm_raw.crypto import ntowfv1, ntowfv2
from spnego._ntlm_raw.messages import Authenticate, Challenge


def ntlmv2_as_sent(challenge, authenticate):
    """DOMAIN\\user when the NTLMv2 response proves the user's password (MS-NLMP 3.3.2,
    over the blob as sent), else None."""
    auth = Authenticate.unpack(authenticate)
    nt = auth.nt_challenge_response or b""
    if len(nt) <= 24:
        return None
    server_challenge = Challenge.unpack(challenge).server_challenge
    with open(os.environ["NTLM_USER_FILE"]) as f:
        for line in f:
            domain, _, rest = line.strip().partition(":")
            user, _, password = rest.partition(":")
            if (domain.upper(), user.upper()) != ((auth.domain_name or "").upper(), (auth.user_name or "").upper()):
                continue
            key = ntowfv2(auth.user_name, ntowfv1(password), auth.domain_name)
            proof = hmac.new(key, server_challenge + nt[16:], hashlib.md5).digest()
            if hmac.compare_digest(proof, nt[:16]):
                return f"{auth.domain_name}\\{auth.user_name}"
    return None


def read_head(f):
    lines = []
    while True:
        line = f.readline(8192)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line.decode("latin-1").rstrip("\r\n"))


def reply(c, status, extra=""):
    c.sendall(f"HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\n\r\n".encode())


def relay(a, b):
    socks = [a, b]
    while True:
        r, _, _ = select.select(socks, [], [], 300)
        if not r:
            return
        for s in r:
            data = s.recv(65536)
            if not data:
                return
            (b if s is a else a).sendall(data)


def handle(c):
    f = c.makefile("rb")
    ctx = spnego.server(protocol="ntlm")
    challenge = None
    try:
        while True:
            head = read_head(f)
            if not head:
                return
            method, target = head[0].split(" ")[:2]
            headers = {}
            for h in head[1:]:
                k, _, v = h.partition(":")
                headers[k.strip().lower()] = v.strip()
            auth = headers.get("proxy-authorization", "")
            if method != "CONNECT":
                reply(c, "405 Method Not Allowed", "Connection: close\r\n")
                return
            if not auth.startswith("NTLM "):
                print(f"CONNECT {target} user=- status=407", flush=True)
                reply(c, "407 Proxy Authentication Required", "Proxy-Authenticate: NTLM\r\n")
                continue
            token = base64.b64decode(auth[5:])
            principal = None
            try:
                out = ctx.step(token)
                principal = ctx.client_principal if ctx.complete else None
            except Exception as e:  # a wrong password ends here
                principal = challenge and ntlmv2_as_sent(challenge, token)
                if not principal:
                    print(f"CONNECT {target} user=? status=407 ({type(e).__name__})", flush=True)
                    reply(c, "407 Proxy Authentication Required",
                          "Proxy-Authenticate: NTLM\r\nConnection: close\r\n")
                    return
            if not principal:
                challenge = out
                tok = base64.b64encode(out).decode()
                reply(c, "407 Proxy Authentication Required", f"Proxy-Authenticate: NTLM {tok}\r\n")
                continue
            host, _, port = target.rpartition(":")
            up = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            up.settimeout(None)
            print(f"CONNECT {target} user={principal} status=200", flush=True)
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            relay(c, up)
            up.close()
            return
    finally:
        c.close()


def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    print(f"listening on 127.0.0.1:{s.getsockname()[1]}", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
    sys.exit(0)
