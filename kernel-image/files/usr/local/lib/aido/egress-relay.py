"""Egress relay of aido-kernel-gateway's sandboxes.

    python3 -I egress-relay.py --port 3128 --socket /run/kernel/egress.sock

The sandbox has no network but loopback. The gateway's egress proxy listens on a unix socket in the
kernel's own directory; this relay listens on 127.0.0.1:<port> and copies each connection, byte
for byte, to that socket, so that pip, requests and urllib can use an ordinary HTTP proxy setting.
It decides nothing: every policy and limit is the gateway's (user code could reach the socket
itself anyway, and killing the relay only cuts the sandbox's own egress).

The kernel's launcher (KERNEL_COMMAND in security/policy.ts, given --egress) runs this script
after it wrote the connection file and before it execs the kernel, and waits for it: the script
creates pip's user site under PYTHONUSERBASE (site.py puts it on sys.path at start-up only if it
exists, so that `%pip install x` then `import x` works without a restart), binds the port, starts
the relay detached (its own session, so the signals tini forwards to the kernel's process group
never reach it; reparented to tini, which reaps it) and exits 0 once the port is listening. Any
failure exits non-zero, and the launcher then fails the sandbox's start.
"""

import argparse
import asyncio
import os
import signal
import socket
import sys
import sysconfig

CHUNK = 64 * 1024


async def _pump(reader, writer):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _serve_one(unix_path, client_reader, client_writer):
    try:
        up_reader, up_writer = await asyncio.open_unix_connection(unix_path)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _pump(client_reader, up_writer), _pump(up_reader, client_writer)
        )
    finally:
        for w in (up_writer, client_writer):
            w.close()


async def _relay(listener, unix_path):
    server = await asyncio.start_server(
        lambda r, w: _serve_one(unix_path, r, w), sock=listener
    )
    async with server:
        await server.serve_forever()


def _user_site():
    base = os.environ.get("PYTHONUSERBASE")
    if not base:
        return None
    scheme = "posix_user" if os.name == "posix" else f"{os.name}_user"
    return sysconfig.get_path("purelib", scheme, vars={"userbase": base})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--socket", required=True)
    args = parser.parse_args()

    site_dir = _user_site()
    if site_dir:
        try:
            os.makedirs(site_dir, exist_ok=True)
        except OSError as e:
            print(f"[egress-relay] cannot create {site_dir}: {e}", file=sys.stderr)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(64)

    if os.fork() == 0:
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            asyncio.run(_relay(listener, args.socket))
        finally:
            os._exit(0)
    # The port is listening: the launcher may start the kernel.
    os._exit(0)


if __name__ == "__main__":
    main()
