"""The agent's finished flow files, served read-only over HTTP (``--serve PORT``).

``segmenter collect`` reaches every agent of the DaemonSet through the API server's pod proxy
(``/api/v1/namespaces/NS/pods/POD:PORT/proxy/index.json``), so that gathering the flows of a
cluster needs neither ``kubectl cp`` nor an exec into the privileged pods (docs/capture-agent.md,
"Collecting from the whole cluster"). Two kinds of resource, GET and HEAD only, each one path
segment (no encoded slash to go through the proxy):

* ``/index.json``: a JSON listing ``{"format": "segmenter-agent-files", "version": 1, "host":
  ..., "files": [{"name", "size", "sha256", "mtime"}, ...]}`` sorted by name;
* ``/NAME``: one listed file's bytes.

Only finished files are listed and served: the numbered ``flows-HOST-NNNNNN.jsonl`` files of the
output directory, which the agent never changes once renamed into place. Not the snapshot of
active flows (it is replaced at every flush: collected, it would count its flows again once they
end), not hidden temporary files, not the lock, nothing in a subdirectory, no symbolic link. A
name is matched against that pattern before the file system is touched, and opened relative to
the directory with ``O_NOFOLLOW``: no path can leave the directory. Nothing can be written.

``allow`` restricts the client addresses (``--serve-allow CIDR``): the API server's (or its
tunnel's) addresses. The files hold L3/L4 metadata of the node's traffic, not payload, but that
is still worth keeping to the collector.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import re
import socket
import stat
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from capture.errors import CaptureError

log = logging.getLogger("capture.agent")

LISTING_FORMAT = "segmenter-agent-files"
LISTING_VERSION = 1
INDEX = "/index.json"
FINISHED = re.compile(r"flows-[A-Za-z0-9._-]+-\d{6,}\.jsonl")
CHUNK = 1 << 16
REQUEST_TIMEOUT = 30.0  # seconds a client may take per request (a stalled one frees its thread)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow(values: Sequence[str]) -> tuple[IpNetwork, ...]:
    """``--serve-allow`` values (addresses or CIDRs) -> networks; ``ValueError`` for others."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR: {value!r}") from None
    return tuple(out)


class _Hashes:
    """SHA-256 of the files listed, kept while a file's identity (inode, size, mtime) stays."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.known: dict[str, tuple[tuple[int, int, int], str]] = {}

    def of(self, dir_fd: int, name: str, st: os.stat_result) -> str | None:
        ident = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self.lock:
            cached = self.known.get(name)
        if cached is not None and cached[0] == ident:
            return cached[1]
        digest = hashlib.sha256()
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        value = digest.hexdigest()
        with self.lock:
            self.known[name] = (ident, value)
        return value

    def forget_except(self, names: set[str]) -> None:
        with self.lock:
            for name in list(self.known):
                if name not in names:
                    del self.known[name]


class FlowFileServer:
    """Serves the finished flow files of ``out_dir`` on ``port`` in a background thread."""

    def __init__(self, out_dir: str, port: int, *, host: str, address: str = "",
                 allow: Sequence[IpNetwork] = ()) -> None:
        self.out_dir = os.path.abspath(out_dir)
        self.host = host
        self.allow = tuple(allow)
        self.hashes = _Hashes()
        self.refused: set[str] = set()
        family, bind = _bind_address(address, port)
        outer = self

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True
            block_on_close = False

            def server_bind(self) -> None:
                if family == socket.AF_INET6 and not address:
                    # "" means every address: IPv6 and (mapped) IPv4 on one socket.
                    self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                super().server_bind()

            def verify_request(self, request: Any, client_address: Any) -> bool:
                return outer.allowed(str(client_address[0]))

        class Handler(_Handler):
            server_of = outer

        try:
            self.httpd = Server(bind, Handler)
        except OSError as exc:
            raise CaptureError(f"cannot serve the flow files on port {port}:"
                               f" {exc.strerror or exc}") from None
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.2}, daemon=True,
                                       name="flow-file-server")

    def allowed(self, client: str) -> bool:
        if not self.allow:
            return True
        try:
            addr = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if any(addr in net for net in self.allow):
            return True
        if client not in self.refused and len(self.refused) < 256:
            self.refused.add(client)
            log.warning("refused a request for the flow files from %s (not in --serve-allow)",
                        client)
        return False

    def start(self) -> None:
        self.thread.start()
        log.info("serving the finished flow files read-only on port %d%s", self.port,
                 f" to {', '.join(map(str, self.allow))}" if self.allow else "")

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()

    # -- what is served ------------------------------------------------------------------------

    def listing(self) -> dict[str, Any]:
        files = []
        dir_fd = os.open(self.out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            names = sorted(n for n in os.listdir(dir_fd) if FINISHED.fullmatch(n))
            for name in names:
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except OSError:
                    continue  # deleted by the retention meanwhile
                if not stat.S_ISREG(st.st_mode):
                    continue
                digest = self.hashes.of(dir_fd, name, st)
                if digest is None:
                    continue
                files.append({"name": name, "size": st.st_size, "sha256": digest,
                              "mtime": st.st_mtime_ns / 1e9})
        finally:
            os.close(dir_fd)
        self.hashes.forget_except({str(f["name"]) for f in files})
        return {"format": LISTING_FORMAT, "version": LISTING_VERSION, "host": self.host,
                "files": files}

    def open_file(self, name: str) -> tuple[Any, int] | None:
        """(open file, size) of a finished file; None when there is no such file."""
        if not FINISHED.fullmatch(name):
            return None
        try:
            dir_fd = os.open(self.out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return None
        finally:
            os.close(dir_fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb"), st.st_size


def _bind_address(address: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    if not address:
        if socket.has_dualstack_ipv6():
            return socket.AF_INET6, ("::", port)
        return socket.AF_INET, ("0.0.0.0", port)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise CaptureError(f"not an address to serve on: {address!r}") from None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return family, (address, port)


class _Handler(BaseHTTPRequestHandler):
    server_of: FlowFileServer
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    server_version = "segmenter-capture"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _refuse(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "read-only: GET and HEAD only",
                    allow="GET, HEAD")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _answer(self, *, body: bool) -> None:
        path = urlsplit(self.path).path
        server = self.server_of
        if path == INDEX:
            try:
                listing = server.listing()
            except OSError as exc:  # the output directory went away
                self._error(HTTPStatus.SERVICE_UNAVAILABLE,
                            f"cannot list the flow files: {exc.strerror or exc}")
                return
            data = (json.dumps(listing, sort_keys=True) + "\n").encode()
            self._send(HTTPStatus.OK, "application/json", len(data))
            if body:
                self.wfile.write(data)
            return
        opened = server.open_file(path[1:]) if path.startswith("/") else None
        if opened is None:
            self._error(HTTPStatus.NOT_FOUND, "no such finished flow file")
            return
        f, size = opened
        with f:
            self._send(HTTPStatus.OK, "application/x-ndjson", size)
            if body:
                left = size
                while left > 0 and (chunk := f.read(min(CHUNK, left))):
                    self.wfile.write(chunk)
                    left -= len(chunk)

    def _send(self, status: HTTPStatus, ctype: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def _error(self, status: HTTPStatus, message: str, *, allow: str | None = None) -> None:
        data = (json.dumps({"error": message}) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("flow file server: " + format, *args)


def close_quietly(server: FlowFileServer | None) -> None:
    if server is not None:
        with contextlib.suppress(Exception):
            server.close()
