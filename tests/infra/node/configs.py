"""The node's configuration files, rendered from its layout: containerd, the kubelet, kube-proxy,
the registries containerd may pull from (none), and CoreDNS's manifests. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.infra.node import network

NODE_NAME = "sparkops-node"
#: The pod sandbox image, built locally from the release's pause.c (build-node.sh).
PAUSE_IMAGE = "docker.io/sparkops-etl/pause:{kubernetes}"
COREDNS_IMAGE = "docker.io/sparkops-etl/coredns:{coredns}"
#: Where containerd is told every registry lives: a closed port on loopback, so a pull of an
#: image that was not loaded fails at once (ErrImagePull) and no request leaves the machine.
NO_REGISTRY = "http://127.0.0.1:1"


@dataclass(frozen=True)
class NodeLayout:
    """Every path of one node, under its state dir (persistent) and run dir (sockets, pids)."""

    state: Path
    run: Path

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def containerd_root(self) -> Path:
        return self.state / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.state / "containerd.toml"

    @property
    def loaded_images(self) -> Path:
        """Which Docker image id each loaded image had, so an unchanged image is not copied again."""
        return self.state / "loaded-images.json"

    @property
    def registry_hosts(self) -> Path:
        return self.state / "registry-hosts"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state / "cni" / "net.d"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.state / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.state / "kube-proxy.yaml"

    @property
    def pod_resolv_conf(self) -> Path:
        return self.state / "pod-resolv.conf"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def kubeconfig(self, component: str) -> Path:
        return self.state / f"{component}.kubeconfig"

    def pid_file(self, daemon: str) -> Path:
        return self.run / f"{daemon}.pid"

    def log(self, daemon: str) -> Path:
        return self.logs / f"{daemon}.log"


def containerd_toml(layout: NodeLayout, pause_image: str, runc: str, cni_bin_dir: str) -> str:
    """containerd 2's configuration (version 3): its own root, state and socket beside any other
    containerd on the machine, cgroupfs as the kubelet uses, the locally built pause image, and no
    registry anywhere."""
    return f"""version = 3
root = "{layout.containerd_root}"
state = "{layout.containerd_state}"

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause_image}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{layout.registry_hosts}"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  # This machine gives root no CAP_SYS_RESOURCE, so no process may lower its oom_score_adj below
  # containerd's own (the kubelet asks -998 for sandboxes): keep every container at or above it.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin_dir}"]
    conf_dir = "{layout.cni_conf_dir}"
    max_conf_num = 1
"""


def registry_hosts_toml() -> str:
    """containerd's hosts.toml for every registry: only the closed loopback port. Without a
    `server`, containerd would fall back to the registry's public address."""
    return f'server = "{NO_REGISTRY}"\n\n[host."{NO_REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'


#: Registries that get an explicit hosts.toml as well as `_default` (docker.io has a built-in
#: default server of its own).
REGISTRIES = ("_default", "docker.io", "registry.k8s.io", "ghcr.io", "quay.io")


def kubelet_config(layout: NodeLayout) -> dict[str, Any]:
    """The KubeletConfiguration of the one node.

    failCgroupV1 is false because this kernel mounts cgroup v1 controllers (the kubelet refuses
    v1 by default since 1.35); cgroupfs matches containerd's runc options. Evictions only at
    nearly full disks: the machine's disk is shared with everything else on it."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(layout.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(layout.pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(layout.pki / "kubelet-serving.key"),
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "clusterDNS": [network.DNS_SERVICE_IP],
        "clusterDomain": network.CLUSTER_DOMAIN,
        "resolvConf": str(layout.pod_resolv_conf),
        "failSwapOn": False,
        "serializeImagePulls": False,
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
            "nodefs.inodesFree": "2%",
        },
        "imageGCHighThresholdPercent": 98,
        "imageGCLowThresholdPercent": 95,
        "maxPods": 64,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "makeIPTablesUtilChains": False,
        "shutdownGracePeriod": "0s",
        "fileCheckFrequency": "5s",
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
    }


def kube_proxy_config(layout: NodeLayout) -> dict[str, Any]:
    """kube-proxy in iptables mode. It leaves the machine's sysctls alone (conntrack sizes and
    timeouts as they are) and serves NodePorts on the bridge address only, never on loopback or
    the machine's own interfaces."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
        "hostnameOverride": NODE_NAME,
        "bindAddress": network.NODE_IP,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "mode": "iptables",
        "clusterCIDR": network.POD_CIDR,
        "nodePortAddresses": [f"{network.NODE_IP}/32"],
        "iptables": {"masqueradeAll": False, "localhostNodePorts": False, "syncPeriod": "10s"},
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def kubeconfig(server: str, ca_cert: Path, client_cert: Path, client_key: Path, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": NODE_NAME, "cluster": {"server": server, "certificate-authority": str(ca_cert)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(client_cert), "client-key": str(client_key)}}
        ],
        "contexts": [{"name": NODE_NAME, "context": {"cluster": NODE_NAME, "user": user}}],
        "current-context": NODE_NAME,
    }


COREFILE = f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {network.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
"""
"""CoreDNS answers for the cluster's names only: no `forward`, so no query leaves the node."""


def coredns_manifests(image: str) -> str:
    """CoreDNS as a Deployment in kube-system behind the Service at DNS_SERVICE_IP."""
    labels = {"k8s-app": "kube-dns"}
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": COREFILE},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "priorityClassName": "system-cluster-critical",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                ],
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "32Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 2,
                                },
                                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True,
                                },
                                "volumeMounts": [
                                    {"name": "config", "mountPath": "/etc/coredns", "readOnly": True}
                                ],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": network.DNS_SERVICE_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]
    return yaml.safe_dump_all(documents, sort_keys=False)


def scratch_dockerfile(program: str, user: int | None = None) -> str:
    """A one-program image (pause, CoreDNS): the static binary alone, no shell, no base."""
    lines = ["FROM scratch", f"COPY {program} /{program}"]
    if user is not None:
        lines.append(f"USER {user}")
    lines.append(f'ENTRYPOINT ["/{program}"]')
    return "\n".join(lines) + "\n"
