"""The node's addresses and the rules that keep its traffic on this machine.

Pods live on one bridge the node's scripts create. The host's address on that bridge is the node's
address: the API server, the kubelet and the harness's servers that pods must reach listen there.
Pods get no default route, only routes to the pod and service ranges, and the forward chain lets
packets pass between pods on the bridge and nowhere else, so nothing a pod sends can leave the
machine. Neither range may overlap a network the machine already routes."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any

BRIDGE = "sparkops0"
POD_CIDR = "10.213.0.0/24"
#: The host's address on the bridge: the node IP, the pods' gateway to services.
NODE_IP = "10.213.0.1"
SERVICE_CIDR = "10.214.0.0/24"
#: The `kubernetes` Service's ClusterIP (the first of the range) and CoreDNS's.
API_SERVICE_IP = "10.214.0.1"
DNS_SERVICE_IP = "10.214.0.10"
API_PORT = 6443
CLUSTER_DOMAIN = "cluster.local"
#: The chain in `filter` that decides what the node lets the kernel forward.
FORWARD_CHAIN = "SPARKOPS-NODE-FORWARD"


def overlapping_routes(routes: Iterable[str]) -> list[str]:
    """The machine's routed networks (as `ip route` prints destinations) that overlap the node's
    pod or service range; the node must not start while any does."""
    ours = [ipaddress.ip_network(POD_CIDR), ipaddress.ip_network(SERVICE_CIDR)]
    clashes = []
    for destination in routes:
        if destination == "default":
            continue
        try:
            network = ipaddress.ip_network(destination, strict=False)
        except ValueError:
            continue
        # The node's own bridge route, from an earlier start, is no clash.
        if network.version == 4 and str(network) != POD_CIDR and any(network.overlaps(m) for m in ours):
            clashes.append(str(network))
    return clashes


def cni_config() -> dict[str, Any]:
    """The CNI network of the node's pods: a bridge without masquerading and without a default
    route (pods reach pods and Services, nothing else)."""
    pod_network = ipaddress.ip_network(POD_CIDR)
    return {
        "cniVersion": "1.0.0",
        "name": "sparkops-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [
                        [
                            {
                                "subnet": POD_CIDR,
                                "gateway": NODE_IP,
                                # The first addresses stay free for the host side.
                                "rangeStart": str(pod_network.network_address + 16),
                            }
                        ]
                    ],
                    "routes": [{"dst": SERVICE_CIDR}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False},
        ],
    }


def cni_config_json() -> str:
    return json.dumps(cni_config(), indent=2)


def forward_rules() -> list[list[str]]:
    """`iptables -A FORWARD_CHAIN ...` arguments: pod to pod over the bridge (a Service's address
    rewritten to a pod's is forwarded back onto the bridge) passes; anything else forwarded while
    the node runs is dropped, so enabling forwarding routes nothing off the machine."""
    return [
        ["-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"],
        ["-j", "DROP"],
    ]
