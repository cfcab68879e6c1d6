"""The finished flow files of every capture agent of a cluster, gathered into one folder
(``segmenter collect``; docs/capture-agent.md, "Collecting from the whole cluster").

Each agent of the DaemonSet serves its finished flow files read-only over HTTP
(``--serve PORT``, ``capture.serve``) on a container port named ``flow-files``. This module lists
the agent pods (``list pods`` in their namespace, with a label selector) and reaches each one
through the API server's pod proxy, ``/api/v1/namespaces/NS/pods/POD:PORT/proxy/...``: one GET
for the listing (``index.json``: names, sizes, SHA-256), one GET per file not collected yet. The
only permission needed is ``get`` on ``pods/proxy`` and ``list`` on ``pods`` in that namespace
(``docs/rbac-collect.yaml``): no Service, no ``kubectl cp`` loop, no exec into the privileged
pods. The API server does the dialling, so the collector needs no route to the nodes.

Files go to ``DIR/<node>/<name>``, each written to a temporary file beside it, checked against
the listing (size, SHA-256, a flow file header) and renamed into place: a folder read at any
moment holds only whole files. A file already there with the same size and hash is not fetched
again; a file of the same name with other contents (the agent's directory was emptied and its
numbering started over) is kept beside it as ``<name>.<sha256 prefix>.jsonl`` -- both hold
records, neither is lost. ``segmenter ingest DIR`` and ``run DIR`` read the folder as it is.

Fail closed: no agent pod is an error; an agent that cannot be reached (not running, no port,
the proxy cannot dial it, a malformed listing, a file that does not match its listing) is
reported by name, and the caller fails unless it asked for best effort. Credentials refused
(401) or missing permissions (403) and an unreachable API server stop everything at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from segmenter.cluster.client import api_client as _api_client
from segmenter.cluster.client import api_status_error as _api_status_error
from segmenter.cluster.client import decode_response as _decode_response
from segmenter.cluster.client import is_transport_error as _is_transport_error
from segmenter.cluster.client import status_message as _status_message
from segmenter.cluster.client import transport_reason as _reason
from segmenter.errors import InputError, InventoryError
from segmenter.k8s import is_dns1123_subdomain

__all__ = ["DEFAULT_NAMESPACE", "DEFAULT_SELECTOR", "PORT_NAME", "AgentReport", "CollectResult",
           "collect"]

logger = logging.getLogger(__name__)

DEFAULT_NAMESPACE: Final = "segmenter-capture"
DEFAULT_SELECTOR: Final = ("app.kubernetes.io/name=segmenter-capture,"
                           "app.kubernetes.io/component=capture-agent")
PORT_NAME: Final = "flow-files"  # the agent container's named port (capture/deploy/daemonset.yaml)
INDEX: Final = "index.json"
RBAC_HINT: Final = "docs/rbac-collect.yaml"
DEFAULT_TIMEOUT: Final = 60.0
CHUNK: Final = 1 << 16
_MAX_RESTARTS: Final = 2


@dataclass(frozen=True)
class AgentReport:
    """What one agent gave (or why it gave nothing: ``error``)."""

    pod: str
    node: str
    listed: int = 0  # finished files the agent listed
    fetched: tuple[str, ...] = ()  # files written (names as stored in DIR/<node>/)
    already: int = 0  # listed files already collected with the same size and hash
    vanished: tuple[str, ...] = ()  # listed, then deleted by the agent's retention before fetched
    renamed: tuple[str, ...] = ()  # same name, other contents: stored as <name>.<sha>.jsonl
    bytes: int = 0  # bytes written
    error: str | None = None

    def line(self) -> str:
        who = f"{self.node or '?'} ({self.pod})"
        if self.error is not None:
            return f"{who}: {self.error}"
        text = (f"{who}: {len(self.fetched)} new files ({self.bytes} bytes), {self.already} "
                f"already collected, of {self.listed} listed")
        if self.renamed:
            text += (f"; {len(self.renamed)} kept beside a different file of the same name"
                     f" ({', '.join(self.renamed)})")
        if self.vanished:
            text += f"; {len(self.vanished)} deleted by the agent before they could be fetched"
        return text


@dataclass(frozen=True)
class CollectResult:
    out_dir: str
    host: str
    namespace: str
    selector: str
    agents: tuple[AgentReport, ...] = field(default=())

    @property
    def failed(self) -> tuple[AgentReport, ...]:
        return tuple(a for a in self.agents if a.error is not None)

    @property
    def fetched(self) -> int:
        return sum(len(a.fetched) for a in self.agents)


class _AgentError(Exception):
    """One agent cannot be collected from: the reason, for its report."""


def collect(
    out_dir: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    selector: str = DEFAULT_SELECTOR,
    port: int | None = None,
    context: str | None = None,
    kubeconfig: str | None = None,
    request_timeout: float = DEFAULT_TIMEOUT,
    page_size: int = 500,
    progress: Callable[[AgentReport], None] | None = None,
) -> CollectResult:
    """Fetch every agent's finished flow files into ``out_dir/<node>/``.

    ``port`` overrides the container port named ``flow-files``. ``progress`` is called with
    each agent's report as soon as it is done. Every agent is tried; the reports say which
    failed (the caller decides whether that fails the command).

    Raises:
        InventoryError: no agent pod matches; the cluster is unreachable; 401 or 403.
        InputError: ``out_dir`` cannot be created or written.
    """
    from kubernetes import client

    target = os.path.abspath(out_dir)
    client_, host = _api_client(context=context, kubeconfig=kubeconfig)
    with client_:
        core = client.CoreV1Api(client_)
        pods = _list_pods(core, client_, namespace, selector, host=host, page_size=page_size,
                          timeout=request_timeout)
        if not pods:
            raise InventoryError(f"no capture agent pods in namespace {namespace!r} match the"
                                 f" selector {selector!r} (is the DaemonSet deployed there?)")
        _make_dir(target)
        reports = []
        for pod in sorted(pods, key=_pod_order):
            report = _collect_one(core, client_, pod, namespace, target, port=port, host=host,
                                  timeout=request_timeout)
            if progress is not None:
                progress(report)
            reports.append(report)
    return CollectResult(target, host, namespace, selector, tuple(reports))


# -- the API server --------------------------------------------------------------------------


def _list_pods(core: Any, api_client: Any, namespace: str, selector: str, *, host: str,
               page_size: int, timeout: float) -> list[Mapping[str, Any]]:
    from kubernetes.client.exceptions import ApiException

    items: list[Mapping[str, Any]] = []
    token: str | None = None
    restarts = 0
    while True:
        try:
            response = core.list_namespaced_pod(
                namespace, label_selector=selector, limit=page_size, _continue=token,
                _preload_content=False, _request_timeout=timeout)
            page = _decode_response(response, api_client, host=host, what="list pods")
        except ApiException as exc:
            if exc.status == 410 and token is not None and restarts < _MAX_RESTARTS:
                restarts += 1  # the continue token expired: a consistent list starts over
                items, token = [], None
                continue
            raise _api_status_error(
                exc, host=host, what=f"list pods in namespace {namespace}",
                forbidden=f"forbidden: needs list on pods in namespace {namespace}"
                          f" (see {RBAC_HINT})") from None
        except InventoryError:
            raise
        except Exception as exc:  # urllib3 / socket / TLS failures
            if _is_transport_error(exc):
                raise InventoryError(f"cannot reach the cluster at {host}: {_reason(exc)}"
                                     ) from None
            raise
        got = page.get("items") if isinstance(page, Mapping) else None
        if got is None and isinstance(page, Mapping) and "items" in page:
            got = []  # Go encodes an empty list as null
        if not isinstance(got, list):
            raise InventoryError(f"the API server at {host} sent an unexpected response to list"
                                 " pods (no items list)")
        items.extend(p for p in got if isinstance(p, Mapping))
        meta = page.get("metadata")
        token = meta.get("continue") if isinstance(meta, Mapping) else None
        if not token:
            return items


@dataclass(frozen=True)
class _Proxy:
    """One agent, through the API server's pod proxy."""

    core: Any  # CoreV1Api
    pod: str
    port: int
    namespace: str
    host: str
    timeout: float

    def get(self, path: str) -> Any:
        """The raw response (urllib3) of a GET of ``path`` (one path segment) on the agent;
        ``_AgentError`` for what concerns this agent, ``_Vanished`` when the agent itself
        answers 404, ``InventoryError`` for what stops the collection."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.connect_get_namespaced_pod_proxy_with_path(
                f"{self.pod}:{self.port}", self.namespace, path, _preload_content=False,
                _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status in (0, 401, 403):
                raise _api_status_error(
                    exc, host=self.host, what=f"get pods/proxy {self.pod}",
                    forbidden=f"forbidden: needs get on pods/proxy in namespace "
                              f"{self.namespace} (see {RBAC_HINT})") from None
            if exc.status == 404 and _agent_message(exc):
                raise _Vanished(path) from None
            message = _status_message(exc) or _agent_message(exc) or str(exc.reason or "")
            raise _AgentError(f"the API server's pod proxy answered {exc.status}: {message}"
                              ) from None
        except Exception as exc:
            if _is_transport_error(exc):
                raise InventoryError(f"cannot reach the cluster at {self.host}: "
                                     f"{_reason(exc)}") from None
            raise


class _Vanished(Exception):
    """The agent no longer has a file it listed (its retention deleted it)."""


def _agent_message(exc: Any) -> str:
    """The agent's own error body (``{"error": ...}``), as opposed to the API server's Status."""
    try:
        body = json.loads(exc.body) if exc.body else None
    except (TypeError, ValueError):
        return ""
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        return str(body["error"])
    return ""


# -- one agent -------------------------------------------------------------------------------


def _pod_order(pod: Mapping[str, Any]) -> tuple[str, str]:
    return (str(_get(pod, "spec", "nodeName") or ""), str(_get(pod, "metadata", "name") or ""))


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


def _agent_port(pod: Mapping[str, Any], port: int | None) -> int:
    if port is not None:
        return port
    for container in _get(pod, "spec", "containers") or []:
        for p in _get(container, "ports") or []:
            if isinstance(p, Mapping) and p.get("name") == PORT_NAME and isinstance(
                    p.get("containerPort"), int):
                return int(p["containerPort"])
    raise _AgentError(f"no container port named {PORT_NAME!r}: start the agent with --serve"
                      " PORT and name that port (capture/deploy/daemonset.yaml), or give --port")


def _collect_one(core: Any, api_client: Any, pod: Mapping[str, Any], namespace: str,
                 out_dir: str, *, port: int | None, host: str, timeout: float) -> AgentReport:
    name = str(_get(pod, "metadata", "name") or "")
    node = str(_get(pod, "spec", "nodeName") or "")
    try:
        if not node:
            raise _AgentError("not scheduled on a node yet")
        if not is_dns1123_subdomain(node):
            raise _AgentError(f"node name {node!r} is not a DNS subdomain: not used as a"
                              " folder name")
        phase = _get(pod, "status", "phase")
        if phase != "Running":
            raise _AgentError(f"the pod is {phase or 'in no phase'}, not Running")
        proxy = _Proxy(core, name, _agent_port(pod, port), namespace, host, timeout)
        listing = _listing(proxy, api_client)
        return _fetch_files(proxy, node, listing, os.path.join(out_dir, node))
    except _AgentError as exc:
        return AgentReport(name, node, error=str(exc))


def _listing(proxy: _Proxy, api_client: Any) -> list[tuple[str, int, str]]:
    from capture.serve import FINISHED, LISTING_FORMAT, LISTING_VERSION

    port = proxy.port
    try:
        response = proxy.get(INDEX)
    except _Vanished:
        raise _AgentError(f"no file listing on port {port} (is --serve {port} given to the"
                          " agent?)") from None
    try:
        doc = _decode_response(response, api_client, host=proxy.host,
                               what=f"the listing of {proxy.pod}")
    except InventoryError:
        raise _AgentError("its file listing is not JSON") from None
    except Exception as exc:
        if _is_transport_error(exc):
            raise _AgentError(f"the listing broke off ({_reason(exc)})") from None
        raise
    if not isinstance(doc, Mapping) or doc.get("format") != LISTING_FORMAT:
        raise _AgentError(f"port {port} does not answer like a segmenter capture agent")
    if doc.get("version") != LISTING_VERSION:
        raise _AgentError(f"file listing version {doc.get('version')!r}; this segmenter reads"
                          f" version {LISTING_VERSION}")
    files = doc.get("files")
    if not isinstance(files, list):
        raise _AgentError("its file listing has no files list")
    out = []
    for i, entry in enumerate(files):
        fname = _get(entry, "name")
        size = _get(entry, "size")
        digest = _get(entry, "sha256")
        if not (isinstance(fname, str) and FINISHED.fullmatch(fname)
                and isinstance(size, int) and not isinstance(size, bool) and size >= 0
                and isinstance(digest, str) and len(digest) == 64
                and all(c in "0123456789abcdef" for c in digest)):
            raise _AgentError(f"its file listing is malformed at files[{i}]")
        out.append((fname, size, digest))
    return out


def _fetch_files(proxy: _Proxy, node: str, listing: list[tuple[str, int, str]],
                 node_dir: str) -> AgentReport:
    _make_dir(node_dir)
    fetched: list[str] = []
    vanished: list[str] = []
    renamed: list[str] = []
    already = 0
    written = 0
    for fname, size, digest in listing:
        target = os.path.join(node_dir, fname)
        if os.path.exists(target):
            if _same(target, size, digest):
                already += 1
                continue
            # The same name with other contents: the agent's numbering started over.
            stem = fname.removesuffix(".jsonl")
            target = os.path.join(node_dir, f"{stem}.{digest[:12]}.jsonl")
            if os.path.exists(target) and _same(target, size, digest):
                already += 1
                continue
            renamed.append(os.path.basename(target))
        try:
            response = proxy.get(fname)
        except _Vanished:
            vanished.append(fname)
            continue
        _receive(response, target, fname, size, digest)
        fetched.append(os.path.basename(target))
        written += size
    return AgentReport(proxy.pod, node, len(listing), tuple(fetched), already, tuple(vanished),
                       tuple(renamed), written)


def _same(path: str, size: int, digest: str) -> bool:
    try:
        if os.path.getsize(path) != size:
            return False
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    return h.hexdigest() == digest


def _receive(response: Any, target: str, fname: str, size: int, digest: str) -> None:
    """Stream a file into a temporary file beside ``target``, check it, rename it in place."""
    directory = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{fname}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", path=directory) from exc
    h = hashlib.sha256()
    got = 0
    first = b""
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                while chunk := _read(response, fname):
                    h.update(chunk)
                    if len(first) < 4096:
                        first += chunk[:4096]
                    got += len(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror or exc}", path=target) from exc
        finally:
            release = getattr(response, "release_conn", None)
            if callable(release):
                release()
        if got != size or h.hexdigest() != digest:
            raise _AgentError(f"{fname}: {got} bytes received that do not match the listing"
                              f" ({size} bytes, sha256 {digest[:12]}...)")
        if not _is_flow_file(first):
            raise _AgentError(f"{fname}: not a segmenter flow file")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read(response: Any, fname: str) -> bytes:
    """The next chunk of a response; a transfer that breaks off is this agent's failure."""
    try:
        return bytes(response.read(CHUNK))
    except Exception as exc:
        if _is_transport_error(exc):
            raise _AgentError(f"{fname}: the transfer broke off ({_reason(exc)})") from None
        raise


def _is_flow_file(head: bytes) -> bool:
    from capture.flowfile import FORMAT

    line = head.split(b"\n", 1)[0]
    try:
        header = json.loads(line)
    except ValueError:
        return False
    return isinstance(header, dict) and header.get("format") == FORMAT


def _make_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder: {exc.strerror or exc}",
                         path=path) from exc
    if not os.path.isdir(path):
        raise InputError("not a folder", path=path)
