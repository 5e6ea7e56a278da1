"""A real Kubernetes control plane on loopback: etcd, kube-apiserver with RBAC and
service-account tokens, and kube-controller-manager (garbage collection, namespaces,
service accounts), built from the Go module proxy; or a cluster the user names."""

from __future__ import annotations

import os
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.infra.certs import CertificateAuthority, KeyPair, service_account_keys
from tests.infra.process import HarnessError, ServerProcess, free_port, make_workdir, timed
from tests.infra.versions import BUILD_SCRIPTS, cache_dir, ensure_built, versions

COMPONENT = "kubernetes"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass
class KubeCluster:
    """What a test needs to reach a cluster: a kubeconfig and a matching kubectl."""

    kubeconfig: Path
    kubectl_path: Path
    server: str
    processes: list[ServerProcess] = field(default_factory=list)

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise HarnessError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def service_account_kubeconfig(self, namespace: str, account: str, path: Path) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount (a bound token, one hour), at the
        same server and CA as the admin's: what a pod running as that account would have."""
        admin = yaml.safe_load(self.kubeconfig.read_text())
        token = self.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": admin["clusters"],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [
                {
                    "name": account,
                    "context": {
                        "cluster": admin["clusters"][0]["name"],
                        "user": account,
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": account,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def kube_bin_dir() -> Path:
    pinned = versions()
    return cache_dir() / f"kube-{pinned['KUBERNETES_VERSION']}-etcd-{pinned['ETCD_VERSION']}" / "bin"


def start_local_control_plane(timeout: float = 90) -> KubeCluster:
    ensure_built(COMPONENT, BUILD_SCRIPTS / "build-kube.sh")
    bin_dir = kube_bin_dir()
    workdir = make_workdir(COMPONENT)
    pki = workdir / "pki"
    pki.mkdir()
    ca = CertificateAuthority(pki)
    serving = ca.issue(
        "apiserver",
        "kube-apiserver",
        server=True,
        dns_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ip_addresses=("127.0.0.1", "10.0.0.1"),
    )
    admin = ca.issue("admin", "etl-test-admin", organization="system:masters")
    sa_keys = service_account_keys(pki)
    cluster = KubeCluster(kubeconfig=workdir / "kubeconfig", kubectl_path=bin_dir / "kubectl", server="")

    etcd_port, etcd_peer_port = free_port(), free_port()
    etcd = ServerProcess(
        "etcd",
        [
            str(bin_dir / "etcd"),
            "--name=default",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        log_path=workdir / "etcd.log",
    )
    cluster.processes.append(etcd)
    with timed("etcd", "start"):
        etcd.start()
        etcd.wait_until(
            lambda: http_ok(f"http://127.0.0.1:{etcd_port}/health"),
            what="answering /health",
            timeout=timeout,
        )

    api_port = free_port()
    cluster.server = f"https://127.0.0.1:{api_port}"
    apiserver = ServerProcess(
        "kube-apiserver",
        [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.pair.cert}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={sa_keys.cert}",
            f"--service-account-signing-key-file={sa_keys.key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            # No kubelet-reachable address exists; envtest keeps the kubernetes Service unreconciled too.
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ],
        log_path=workdir / "kube-apiserver.log",
    )
    cluster.processes.append(apiserver)
    _write_kubeconfig(cluster.kubeconfig, cluster.server, ca.pair.cert, admin)
    context = client_tls(ca.pair.cert, admin)
    with timed("kube-apiserver", "start"):
        apiserver.start()
        apiserver.wait_until(
            lambda: http_ok(f"{cluster.server}/readyz", context), what="answering /readyz", timeout=timeout
        )

    manager = ServerProcess(
        "kube-controller-manager",
        [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={cluster.kubeconfig}",
            f"--authentication-kubeconfig={cluster.kubeconfig}",
            f"--authorization-kubeconfig={cluster.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--leader-elect=false",
            f"--service-account-private-key-file={sa_keys.key}",
            f"--root-ca-file={ca.pair.cert}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--use-service-account-credentials=false",
            "--concurrent-gc-syncs=4",
            "--v=1",
        ],
        log_path=workdir / "kube-controller-manager.log",
    )
    cluster.processes.append(manager)
    with timed("kube-controller-manager", "start"):
        manager.start()
        manager.wait_until(
            lambda: (
                cluster.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode
                == 0
            ),
            what="creating the default ServiceAccount",
            timeout=timeout,
        )
    return cluster


def existing_cluster(kubeconfig: Path) -> KubeCluster:
    """A cluster the user chose: its kubeconfig, and kubectl from PATH or the harness build."""
    kubectl = next(
        (
            Path(p) / "kubectl"
            for p in os.environ.get("PATH", "").split(os.pathsep)
            if (Path(p) / "kubectl").exists()
        ),
        None,
    )
    if kubectl is None:
        ensure_built(COMPONENT, BUILD_SCRIPTS / "build-kube.sh")
        kubectl = kube_bin_dir() / "kubectl"
    config = yaml.safe_load(kubeconfig.read_text())
    current = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == current)
    server = next(c["cluster"]["server"] for c in config["clusters"] if c["name"] == context["cluster"])
    return KubeCluster(kubeconfig=kubeconfig, kubectl_path=kubectl, server=server)


def _write_kubeconfig(path: Path, server: str, ca_cert: Path, user: KeyPair) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "etl-test", "cluster": {"server": server, "certificate-authority": str(ca_cert)}}
        ],
        "users": [
            {
                "name": "etl-test-admin",
                "user": {"client-certificate": str(user.cert), "client-key": str(user.key)},
            }
        ],
        "contexts": [{"name": "etl-test", "context": {"cluster": "etl-test", "user": "etl-test-admin"}}],
        "current-context": "etl-test",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def client_tls(ca_cert: Path, user: KeyPair) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_cert))
    context.load_cert_chain(str(user.cert), str(user.key))
    return context


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as response:
        return bool(response.status == 200)
