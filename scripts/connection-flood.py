#!/usr/bin/env python3
"""A connection flood against a registry daemon on loopback, and a legitimate client's
latency meanwhile. Loopback only.

    connection-flood.py hold PORT COUNT SECONDS
        Keeps COUNT hostile connections open for SECONDS: half send nothing, half send a
        request line and stop. One the daemon closes is reopened at once.
    connection-flood.py probe PORT TOKEN SECONDS
        Every 100 ms, on a new connection each: GET /healthz and GET
        /registry-svc/instances; prints the latency percentiles and failures.

One process holds at most its open-file limit; run several `hold`s for more.
"""

import selectors
import socket
import sys
import time

HOST = "127.0.0.1"


def connect(port, partial):
    s = socket.socket()
    s.settimeout(2)
    s.connect((HOST, port))
    if partial:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
    s.setblocking(False)
    return s


def hold(port, count, seconds):
    selector = selectors.DefaultSelector()
    opened = reopened = failed = 0
    for i in range(count):
        try:
            selector.register(connect(port, i % 2 == 0), selectors.EVENT_READ, i)
            opened += 1
        except OSError:
            failed += 1
    print(f"hold: {opened} open, {failed} failed to open", flush=True)
    end = time.time() + seconds
    while time.time() < end:
        for key, _ in selector.select(timeout=0.5):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if data:
                continue
            selector.unregister(key.fileobj)
            key.fileobj.close()
            try:
                selector.register(connect(port, key.data % 2 == 0), selectors.EVENT_READ, key.data)
                reopened += 1
            except OSError:
                failed += 1
    print(f"hold: still open {len(selector.get_map())}, reopened {reopened}, failed {failed}")


def request(port, path, token):
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n"
            "connection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    if not answer.startswith(b"HTTP/1.1 200"):
        raise OSError(answer[:80])
    return (time.perf_counter() - started) * 1000


def probe(port, token, seconds):
    latencies = {"/healthz": [], "/registry-svc/instances": []}
    failures = 0
    end = time.time() + seconds
    while time.time() < end:
        for path, seen in latencies.items():
            try:
                seen.append(request(port, path, token))
            except OSError as e:
                failures += 1
                print(f"probe: {path} failed: {e}", flush=True)
        time.sleep(0.1)
    for path, seen in latencies.items():
        seen.sort()
        if not seen:
            print(f"{path}: no answer")
            continue
        pick = lambda q: seen[min(len(seen) - 1, int(q * len(seen)))]
        print(
            f"{path}: n={len(seen)} p50={pick(0.5):.2f}ms p99={pick(0.99):.2f}ms max={seen[-1]:.2f}ms"
        )
    print(f"failures: {failures}")


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "hold":
        hold(port, int(sys.argv[3]), float(sys.argv[4]))
    else:
        probe(port, sys.argv[3], float(sys.argv[4]))
