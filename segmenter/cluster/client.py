"""The official kubernetes client, set up once for every live command.

Shared by the live inventory, the pod watch and the live policy reader: kubeconfig (with a
context, several files in ``$KUBECONFIG``) or the in-cluster service account, and turning the
client's and urllib3's exceptions into one-line reasons.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segmenter.documents import decode_utf8, parse_json
from segmenter.errors import InputError, InventoryError


def kubeconfig_paths(kubeconfig: str | None) -> list[str]:
    if kubeconfig:
        return [kubeconfig]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return [str(Path("~/.kube/config").expanduser())]



def api_client(*, context: str | None, kubeconfig: str | None) -> tuple[Any, str]:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    paths = kubeconfig_paths(kubeconfig)
    existing = [p for p in paths if Path(p).expanduser().is_file()]
    if kubeconfig and not existing:
        raise InventoryError("no such kubeconfig file", path=kubeconfig)
    try:
        if existing:
            config.load_kube_config(
                config_file=os.pathsep.join(existing) if len(existing) > 1 else existing[0],
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        else:
            if context:
                raise InventoryError(
                    f"context {context!r} asked for, but no kubeconfig found ({', '.join(paths)})"
                )
            config.load_incluster_config(client_configuration=configuration)
    except ConfigException as exc:
        where = ", ".join(existing) if existing else None
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not existing:
            message = (
                f"no kubeconfig found ({', '.join(paths)}) and not running in a cluster: " + message
            )
        raise InventoryError(message, path=where) from None
    return client.ApiClient(configuration), str(configuration.host)



def status_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            status = json.loads(body)
        except (TypeError, ValueError, RecursionError):
            return ""
        if isinstance(status, Mapping) and isinstance(status.get("message"), str):
            return str(status["message"])
    return ""



def exception_chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        nxt = getattr(current, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = current.__cause__ or current.__context__
        current = nxt
    return seen



def is_transport_error(exc: BaseException) -> bool:
    import urllib3

    return any(isinstance(e, (urllib3.exceptions.HTTPError, OSError)) for e in exception_chain(exc))



def transport_reason(exc: BaseException) -> str:
    import urllib3

    chain = exception_chain(exc)
    for e in chain:
        if isinstance(e, ConnectionRefusedError) or "Connection refused" in str(e):
            return "connection refused"
    for e in chain:
        if isinstance(
            e, urllib3.exceptions.NameResolutionError
        ) or "Name or service not known" in str(e):
            return "cannot resolve the host name"
    for e in chain:
        if isinstance(e, (urllib3.exceptions.TimeoutError, TimeoutError)):
            return "timed out"
    for e in chain:
        if isinstance(e, urllib3.exceptions.SSLError):
            return f"TLS error: {str(e).splitlines()[0]}"
    last = chain[-1]
    return str(last).splitlines()[0] if str(last) else type(last).__name__



def decode_response(response: Any, api_client: Any, *, host: str, what: str) -> Any:
    """The JSON body of an API call's response -- raw (``_preload_content=False``; the
    connection goes back to the pool), already a mapping, or a model object -- unchecked.
    ``what`` names the call in the error (``list pods``)."""
    if isinstance(getattr(response, "data", None), bytes):
        try:  # the reading layer's bounds: depth, integer size, UTF-8
            return parse_json(decode_utf8(response.data, path=host), path=host)
        except InputError as exc:
            syntax = exc.message.startswith(("malformed JSON", "not UTF-8"))
            raise InventoryError(
                f"the API server at {host} sent a malformed response to {what} "
                f"({'not JSON' if syntax else exc.message})"
            ) from None
        finally:
            release = getattr(response, "release_conn", None)
            if callable(release):
                release()
    if isinstance(response, Mapping):
        return response
    return api_client.sanitize_for_serialization(response)  # a model object


def api_status_error(exc: Any, *, host: str, what: str, forbidden: str) -> InventoryError:
    """The one-line reason for the client's ApiException ``exc`` of the call ``what``;
    ``forbidden`` is the reason for a 403 (which permission is missing)."""
    status = exc.status
    if status == 0:  # the REST layer's TLS failure
        reason = str(exc.reason or "").replace("\n", ": ")
        return InventoryError(f"cannot reach the cluster at {host}: {reason}")
    if status == 401:
        return InventoryError(
            f"unauthorized: the cluster at {host} rejected the credentials "
            "(expired token or certificate?)"
        )
    if status == 403:
        return InventoryError(forbidden)
    message = status_message(exc)
    return InventoryError(
        f"the API server at {host} answered {status} {exc.reason or ''} to {what}"
        + (f": {message}" if message else "")
    )
