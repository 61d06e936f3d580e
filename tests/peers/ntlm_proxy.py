"""An HTTP CONNECT proxy that demands NTLM and verifies it (pyspnego's NTLM acceptor,
users from NTLM_USER_FILE: DOMAIN:user:password lines). Prints `listening on ADDR`,
then one line per CONNECT: `CONNECT host:port user=DOMAIN\\user status=200|407`."""
import base64
import select
import socket
import sys
import threading

import spnego


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
            try:
                out = ctx.step(base64.b64decode(auth[5:]))
            except Exception as e:  # a wrong password ends here
                print(f"CONNECT {target} user=? status=407 ({type(e).__name__})", flush=True)
                reply(c, "407 Proxy Authentication Required",
                      "Proxy-Authenticate: NTLM\r\nConnection: close\r\n")
                return
            if not ctx.complete:
                tok = base64.b64encode(out).decode()
                reply(c, "407 Proxy Authentication Required", f"Proxy-Authenticate: NTLM {tok}\r\n")
                continue
            host, _, port = target.rpartition(":")
            up = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            up.settimeout(None)
            print(f"CONNECT {target} user={ctx.client_principal} status=200", flush=True)
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
