"""network-config-analyzer (``nca``, PyPI ``network-config-analyzer``) as a reference for the
connectivity map: its inputs written from an inventory and policies, its ``--connectivity``
output read back into the form of :func:`segmenter.analysis.connectivity.connectivity_map`.

nca pins its dependencies exactly (networkx==3.2.1, PyYAML==6.0.2, ...), so it lives in a venv
of its own: ``python3 -m venv /tmp/nca-venv && /tmp/nca-venv/bin/pip install
network-config-analyzer`` (``make`` installs it in ``.venv-nca``); :func:`find_nca` looks at
``$SEGMENTER_NCA``, then ``nca`` on the PATH, then ``.venv-nca``, then that venv.

Inputs as nca reads them (its README, "Cluster resources"): a PodList and a NamespaceList in
the shape ``kubectl get pods,namespaces -o yaml`` prints (a pod's owner reference names its
ReplicaSet; status has podIP, podIPs, hostIP, phase Running), and the policies as YAML
documents. Output: ``-o txt_no_fw_rules --output_endpoints pods``, one line per
``src => dst : connections`` where connections is ``All connections`` or cubes such as
``{protocols:TCP,UDP,dst_ports:53,8080-8090}``; ends that are IP ranges are left out (the map
compared is between pods).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from segmenter.analysis.connectivity import PORTS, PROTOCOLS, merge_ranges
from segmenter.model import Inventory, Transport

# The venv `make` installs it in, then the one the module docstring suggests.
VENVS_NCA = (Path(__file__).resolve().parents[1] / ".venv-nca/bin/nca",
             Path("/tmp/nca-venv/bin/nca"))
_LINE = re.compile(r"^(\S+) => (\S+) : (.+)$")
_ADDRESS = re.compile(r"^[0-9a-fA-F:.]+(-[0-9a-fA-F:.]+)?(/\d+)?$")


def find_nca() -> str | None:
    for candidate in (os.environ.get("SEGMENTER_NCA"), shutil.which("nca"),
                      *(str(p) for p in VENVS_NCA)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def write_inputs(folder: Path, inventory: Inventory,
                 manifests: Sequence[Mapping[str, Any]]) -> tuple[Path, Path, Path]:
    """pods.yaml, namespaces.yaml and policies.yaml for nca."""
    folder.mkdir(parents=True, exist_ok=True)
    pods = []
    for pod in inventory.pods:
        container: dict[str, Any] = {"name": "main", "image": "example"}
        if pod.ports:
            container["ports"] = [{"containerPort": p.port, "protocol": p.protocol.value,
                                   **({"name": p.name} if p.name else {})} for p in pod.ports]
        owner = f"{pod.owner.name}-7d9f8c6b5" if pod.owner.kind == "Deployment" \
            else pod.owner.name
        kind = "ReplicaSet" if pod.owner.kind == "Deployment" else pod.owner.kind
        pods.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace,
                         "labels": pod.labels.as_dict(),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind,
                                              "name": owner, "uid": f"uid-{owner}",
                                              "controller": True}]},
            "spec": {"containers": [container], "nodeName": pod.node or "worker-1",
                     "hostNetwork": pod.host_network,
                     "serviceAccountName": pod.service_account or "default"},
            "status": {"phase": "Running", "podIP": pod.ips[0],
                       "podIPs": [{"ip": ip} for ip in pod.ips], "hostIP": "10.1.0.1"},
        })
    namespaces = [{"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": ns.name, "labels": ns.labels.as_dict()}}
                  for ns in inventory.namespaces]
    paths = (folder / "pods.yaml", folder / "namespaces.yaml", folder / "policies.yaml")
    paths[0].write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "PodList", "items": pods}))
    paths[1].write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "NamespaceList",
                                        "items": namespaces}))
    paths[2].write_text(yaml.safe_dump_all([dict(m) for m in manifests]))
    return paths


def _ranges(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def parse_connections(text: str) -> dict[Transport, tuple[tuple[int, int], ...]]:
    """nca's connections text as protocol -> allowed port ranges (TCP, UDP, SCTP)."""
    text = text.strip()
    if text == "All connections":
        return {p: (PORTS,) for p in PROTOCOLS}
    if text == "No connections":
        return {}
    found: dict[Transport, list[tuple[int, int]]] = {}
    for cube in re.findall(r"\{([^}]*)\}", text):
        protocols_part, _, ports_part = cube.partition(",dst_ports:")
        if not protocols_part.startswith("protocols:"):
            raise ValueError(f"unexpected nca connection cube {cube!r}")
        protocols = protocols_part.removeprefix("protocols:").split(",")
        ranges = _ranges(ports_part) if ports_part else [PORTS]
        for name in protocols:
            transport = Transport(name)
            found.setdefault(transport, []).extend(ranges)
    return {t: merge_ranges(r) for t, r in found.items()}


def run_connectivity(nca: str, paths: tuple[Path, Path, Path]
                     ) -> tuple[dict[tuple[str, str], dict[Transport, Any]], float]:
    """nca's pod-to-pod connectivity map and the seconds it took (the process's wall time)."""
    pods, namespaces, policies = paths
    started = time.perf_counter()
    done = subprocess.run(
        [nca, "--connectivity", str(policies), "--pod_list", str(pods), "--ns_list",
         str(namespaces), "-o", "txt_no_fw_rules", "--output_endpoints", "pods"],
        capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1) or "Error" in done.stdout.splitlines()[0:1]:
        raise RuntimeError(f"nca failed ({done.returncode}): {done.stdout[-2000:]}"
                           f"{done.stderr[-2000:]}")
    found: dict[tuple[str, str], dict[Transport, list[tuple[int, int]]]] = {}
    for line in done.stdout.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        src, dst, conns = match.groups()
        if _ADDRESS.match(src) or _ADDRESS.match(dst):
            continue
        mine = found.setdefault((src, dst), {})
        for transport, ranges in parse_connections(conns).items():
            mine.setdefault(transport, []).extend(ranges)
    return {pair: {t: merge_ranges(r) for t, r in conns.items()}
            for pair, conns in found.items() if conns}, seconds
