"""A loopback HTTP server that answers like the Kubernetes API server, for the real client.

There is no API server on these machines (and none can be installed): the live paths are tested
through the official ``kubernetes`` package against this server, which serves hand-built JSON
fixtures in the API server's exact form. Subclasses say which fixture answers which path.

Every server answers the discovery documents of the core API and ``networking.k8s.io/v1``
(``tests/fixtures/discovery/``) that ``segmenter.cluster.client.connect`` asks for before
reading anything, unless an override says otherwise.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import yaml

DISCOVERY_FIXTURES = Path(__file__).parent / "fixtures" / "discovery"
# Discovery paths (the client asks them with a trailing slash) -> fixture name.
DISCOVERY = {
    "/api/v1": "api-v1",
    "/apis/networking.k8s.io/v1": "apis-networking.k8s.io-v1",
}


class FakeApiServer:
    """Records every request; ``overrides`` maps a path to (status, fixture name)."""

    FIXTURES: Path  # the folder of ``<name>.json`` responses

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []
        self.overrides: dict[str, tuple[int, str]] = {}
        self.expire_continue_once = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and chunked responses, as the API server
            disable_nagle_algorithm = True  # no delayed-ACK stall between headers and body

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                server.requests.append((url.path, query, self.headers.get("Authorization")))
                server.respond(self, url.path, query)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def read(self, name: str) -> str:
        return (self.FIXTURES / f"{name}.json").read_text()

    def respond(
        self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]
    ) -> None:
        """Answer one GET; subclasses stream watch responses from here."""
        status, body = self.answer(path, query)
        data = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        """(status, JSON body) for a GET: an override, else discovery, else the subclass's
        route. Paths are compared without a trailing slash."""
        path = path.rstrip("/") or "/"
        if path in self.overrides:
            status, name = self.overrides[path]
            return status, self.read(name)
        if path in DISCOVERY:
            return 200, (DISCOVERY_FIXTURES / f"{DISCOVERY[path]}.json").read_text()
        return self.route(path, query)

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        raise NotImplementedError

    def paged(self, first: str, second: str, query: dict[str, list[str]]) -> tuple[int, str]:
        """A list in two pages joined by ``metadata.continue``; with ``expire_continue_once``
        the continue token is answered once with 410 Gone, as an expired one is."""
        page1 = json.loads(self.read(first))
        if "continue" not in query:
            return 200, json.dumps(page1)
        assert query["continue"] == [page1["metadata"]["continue"]]
        if self.expire_continue_once:
            self.expire_continue_once = False
            return 410, self.read("status-410-expired")
        return 200, self.read(second)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def kubeconfig(tmp_path: Path, server: str, *, context: str = "test") -> str:
    """A kubeconfig file pointing at ``server`` with a bearer token, as the only context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "loop", "cluster": {"server": server}}],
        "users": [{"name": "reader", "user": {"token": "test-token"}}],
        "contexts": [{"name": context, "context": {"cluster": "loop", "user": "reader"}}],
        "current-context": context,
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)
