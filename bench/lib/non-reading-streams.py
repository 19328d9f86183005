# Streams that never read, for the `hostile` bench scenario: each socket gets a
# 4 KB receive buffer before it connects (Node cannot set SO_RCVBUF on TCP, so
# this child is Python), sends its GET, reads the answer's headers, and then
# never reads again, so whatever the gateway sends stays in the gateway.
#
# argv[1]: JSON {"port": N, "requests": [{"path": "...", "headers": {...}}, ...]}
# stdout:  one JSON line once every stream is open or refused:
#          {"status": {"200": n, "503": n, ...}, "codes": {"too-many-streams": n}, "failed": n}
# Then the sockets are held until stdin closes (the bench process ends it or dies).
import asyncio
import json
import re
import socket
import sys

RCVBUF = 4096
PARALLEL = 100
HEADERS_WITHIN_S = 60


async def open_stream(loop, port, req, held, status, codes):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    lines = [f"GET {req['path']} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
    lines += [f"{k}: {v}" for k, v in req.get("headers", {}).items()]
    await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), HEADERS_WITHIN_S)
        if not chunk:
            break
        got += chunk
    code = got.split(b" ", 2)[1].decode() if got.startswith(b"HTTP/") else "none"
    status[code] = status.get(code, 0) + 1
    if code == "200":
        held.append(sock)  # never read again
        return
    # A refusal: its small problem+json body says why.
    try:
        while len(got) < 8192:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 2)
            if not chunk:
                break
            got += chunk
    except asyncio.TimeoutError:
        pass
    m = re.search(rb'"code"\s*:\s*"([^"]+)"', got)
    if m:
        name = m.group(1).decode()
        codes[name] = codes.get(name, 0) + 1
    sock.close()


async def main():
    spec = json.loads(sys.argv[1])
    loop = asyncio.get_running_loop()
    held, status, codes = [], {}, {}
    failed = 0
    gate = asyncio.Semaphore(PARALLEL)

    async def one(req):
        nonlocal failed
        async with gate:
            try:
                await open_stream(loop, spec["port"], req, held, status, codes)
            except (OSError, asyncio.TimeoutError):
                failed += 1

    await asyncio.gather(*(one(r) for r in spec["requests"]))
    print(json.dumps({"status": status, "codes": codes, "failed": failed}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes stdin
    for s in held:
        s.close()


asyncio.run(main())
