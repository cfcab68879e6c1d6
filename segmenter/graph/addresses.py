"""Addresses that are not peers: loopback, link-local, multicast, broadcast, unspecified.

A capture on a node's bridge or a pod's interface sees traffic no network policy can name as a
peer: IPv6 neighbour and router discovery to ``ff02::1``/``ff02::2`` from ``fe80::`` addresses,
mDNS and SSDP multicast, DHCP from ``0.0.0.0`` to ``255.255.255.255``, loopback. Such flows are
left out of the graph (and so of the policies and the segmentation test) and counted
(:func:`address_class`, ``Resolution.SPECIAL``).

Some link-local addresses are services a pod really uses and that policy reaches by ``ipBlock``;
they are named, never dropped (:func:`link_local_service`, ``Resolution.LINK_LOCAL_SERVICE``):

- the cloud instance metadata service, ``169.254.169.254`` (AWS IMDS, Azure IMDS, GCE's
  metadata server, OpenStack), and ``fd00:ec2::254`` (AWS IMDS over IPv6, on Nitro instances);
- the Amazon DNS server, ``169.254.169.253`` / ``fd00:ec2::253`` ("Amazon DNS server", VPC
  documentation);
- the EKS Pod Identity Agent, ``169.254.170.23`` / ``fd00:ec2::23`` (EKS user guide, "EKS Pod
  Identity": the agent's hostNetwork DaemonSet listens there);
- NodeLocal DNSCache, ``169.254.20.0/24`` on port 53 (``169.254.20.10`` in the upstream
  manifests) when the inventory shows no cluster DNS workload to map it to; any other
  link-local address answering on port 53 is a node-local or cloud DNS resolver.

Classes follow RFC 6890's special-purpose registries through Python's ``ipaddress``:
loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10), multicast (224.0.0.0/4,
ff00::/8), unspecified (0.0.0.0/8 "this network" as a source, ::); broadcast is
255.255.255.255 (RFC 919). An IPv4-mapped IPv6 address is classified as its IPv4 address.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from segmenter.cluster.dns import DNS_PORT, NODE_LOCAL_DNS_PREFIX


class AddressClass(enum.StrEnum):
    """Why an address is no policy peer."""

    LOOPBACK = "loopback"
    LINK_LOCAL = "link-local"
    MULTICAST = "multicast"
    BROADCAST = "broadcast"
    UNSPECIFIED = "unspecified"


@dataclass(frozen=True)
class LinkLocalService:
    """A well-known service on a link-local address: ``slug`` for files, ``title`` for people."""

    slug: str
    title: str


CLOUD_METADATA: Final = LinkLocalService("cloud-metadata", "cloud instance metadata service")
CLOUD_DNS: Final = LinkLocalService("cloud-dns", "Amazon DNS server")
EKS_POD_IDENTITY: Final = LinkLocalService("eks-pod-identity", "EKS Pod Identity Agent")
NODE_LOCAL_DNS: Final = LinkLocalService("node-local-dns", "NodeLocal DNSCache")
LINK_LOCAL_DNS: Final = LinkLocalService("link-local-dns", "link-local DNS resolver")

_WELL_KNOWN: Final = {
    "169.254.169.254": CLOUD_METADATA,
    "fd00:ec2::254": CLOUD_METADATA,
    "169.254.169.253": CLOUD_DNS,
    "fd00:ec2::253": CLOUD_DNS,
    "169.254.170.23": EKS_POD_IDENTITY,
    "fd00:ec2::23": EKS_POD_IDENTITY,
}
_LIMITED_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")
_THIS_NETWORK: Final = ipaddress.IPv4Network("0.0.0.0/8")


@functools.lru_cache(maxsize=4096)
def address_class(ip: str) -> AddressClass | None:
    """Why ``ip`` can be no policy peer, or None for an ordinary unicast address (or text that
    is no address).

    >>> address_class("ff02::2"), address_class("fe80::1"), address_class("10.0.0.1")
    (<AddressClass.MULTICAST: 'multicast'>, <AddressClass.LINK_LOCAL: 'link-local'>, None)
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return AddressClass.LOOPBACK
    if addr.is_link_local:
        return AddressClass.LINK_LOCAL
    if addr == _LIMITED_BROADCAST:
        return AddressClass.BROADCAST
    if addr.is_multicast:
        return AddressClass.MULTICAST
    if addr.is_unspecified or (isinstance(addr, ipaddress.IPv4Address)
                               and addr in _THIS_NETWORK):
        return AddressClass.UNSPECIFIED
    return None


def link_local_service(ip: str, port: int | None) -> LinkLocalService | None:
    """The well-known service at link-local ``ip`` (reached on ``port`` as a server; None for a
    client end), or None when it is none of them."""
    service = _WELL_KNOWN.get(ip)
    if service is None and ":" in ip:
        try:
            service = _WELL_KNOWN.get(str(ipaddress.ip_address(ip)))
        except ValueError:
            return None
    if service is not None:
        return service
    if port == DNS_PORT and address_class(ip) is AddressClass.LINK_LOCAL:
        return NODE_LOCAL_DNS if ip.startswith(NODE_LOCAL_DNS_PREFIX) else LINK_LOCAL_DNS
    return None


def special_summary(special: Mapping[str, Any]) -> str:
    """``5 flows (link-local 3: fe80::1; multicast 2: ff02::2)`` from a graph's
    ``special_addresses`` attribute (``{"flows": n, "by_class": {class: {"flows": n,
    "addresses": [...]}}}``; a flow is counted under each class of its ends)."""
    total = int(special.get("flows", 0))
    counts: Mapping[str, Mapping[str, Any]] = special.get("by_class") or {}
    parts = []
    for name in sorted(counts):
        entry = counts[name]
        addresses = [str(a) for a in entry.get("addresses") or ()]
        shown = ", ".join(addresses[:3]) + (f" and {len(addresses) - 3} more"
                                            if len(addresses) > 3 else "")
        parts.append(f"{name} {entry.get('flows', 0)}: {shown}")
    return f"{total} flow{'' if total == 1 else 's'} ({'; '.join(parts)})"
