"""A real single-node cluster made of parts, on this machine: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, containerd 2 with runc, a kubelet, CNI bridge
networking, kube-proxy and CoreDNS. Images are loaded into containerd from the local Docker
daemon; no registry is ever asked.

`up()` starts what is not running and reuses what is (so a second `make sandbox` is quick);
`down()` stops every daemon, removes the pods through the runtime, the bridge and the rules, and
the node's state. Needs root, as a kubelet does."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.infra.certs import CertificateAuthority, KeyPair, service_account_keys
from tests.infra.kube import KubeCluster, client_tls, http_ok
from tests.infra.node import configs, network
from tests.infra.node.configs import NODE_NAME, NodeLayout
from tests.infra.node.daemons import Daemon
from tests.infra.process import HarnessError
from tests.infra.versions import BUILD_SCRIPTS, cache_dir, ensure_built, versions

ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
CNI_BIN_DIR = "/usr/lib/cni"
NEEDED_COMMANDS = ("ip", "iptables", "conntrack", "runc", "docker")


def default_layout() -> NodeLayout:
    state = Path(os.environ.get("ETL_NODE_DIR", "/var/lib/sparkops-etl/node"))
    return NodeLayout(state=state, run=Path(os.environ.get("ETL_NODE_RUN_DIR", "/run/sparkops-etl-node")))


@dataclass(frozen=True)
class Node:
    """What a user or a test needs to use the node."""

    layout: NodeLayout
    kubeconfig: Path
    kubectl: Path
    server: str

    def kubectl_run(
        self, *args: str, input_text: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cluster = KubeCluster(kubeconfig=self.kubeconfig, kubectl_path=self.kubectl, server=self.server)
        return cluster.kubectl(*args, input_text=input_text, check=check, timeout=timeout)


def kube_bin() -> Path:
    pinned = versions()
    return cache_dir() / f"kube-{pinned['KUBERNETES_VERSION']}-etcd-{pinned['ETCD_VERSION']}" / "bin"


def node_bin() -> Path:
    pinned = versions()
    build = "-".join(
        (
            f"node-{pinned['KUBERNETES_VERSION']}",
            f"containerd-{pinned['CONTAINERD_VERSION']}",
            f"coredns-{pinned['COREDNS_VERSION']}",
        )
    )
    return cache_dir() / build / "bin"


def pause_image() -> str:
    return configs.PAUSE_IMAGE.format(kubernetes=versions()["KUBERNETES_VERSION"])


def coredns_image() -> str:
    return configs.COREDNS_IMAGE.format(coredns=versions()["COREDNS_VERSION"])


# --- up ------------------------------------------------------------------------------------


def up(layout: NodeLayout | None = None, log: bool = True) -> Node:
    """Start the node, or find it running; return how to reach it."""
    layout = layout or default_layout()
    _preflight()
    if not any(status(layout).values()):
        # Nothing runs: whatever a stopped or killed node left (pods in etcd, mounts, rules) goes,
        # only the images already loaded into containerd stay.
        down(layout, keep_images=True)
    ensure_built("kubernetes", BUILD_SCRIPTS / "build-kube.sh")
    ensure_built("node", BUILD_SCRIPTS / "build-node.sh")
    for directory in (layout.state, layout.run, layout.logs, layout.pki):
        directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say = print if log else (lambda *_: None)
    _make_pki(layout)
    _write_configs(layout)
    _open_network(layout)
    node = Node(
        layout,
        layout.admin_kubeconfig,
        kube_bin() / "kubectl",
        f"https://{network.NODE_IP}:{network.API_PORT}",
    )
    daemons = node_daemons(layout)
    admin_tls = client_tls(layout.pki / "ca.crt", KeyPair(layout.pki / "admin.crt", layout.pki / "admin.key"))

    daemons["etcd"].start()
    daemons["etcd"].wait_until(
        lambda: http_ok(f"http://127.0.0.1:{ETCD_CLIENT_PORT}/health"), what="answering /health", timeout=60
    )
    daemons["kube-apiserver"].start()
    daemons["kube-apiserver"].wait_until(
        lambda: http_ok(f"{node.server}/readyz", admin_tls), what="answering /readyz", timeout=120
    )
    for name in ("kube-controller-manager", "kube-scheduler", "containerd"):
        daemons[name].start()
    daemons["containerd"].wait_until(
        lambda: _ctr(layout, "version", check=False).returncode == 0, what="serving its socket", timeout=60
    )
    _load_scratch_image(layout, "pause", pause_image())
    _load_scratch_image(layout, "coredns", coredns_image())
    daemons["kubelet"].start()
    daemons["kubelet"].wait_until(lambda: _node_ready(node), what=f"node {NODE_NAME} Ready", timeout=120)
    daemons["kube-proxy"].start()
    daemons["kube-proxy"].wait_until(
        lambda: http_ok("http://127.0.0.1:10256/healthz"), what="answering /healthz", timeout=60
    )
    node.kubectl_run("apply", "-f", "-", input_text=configs.coredns_manifests(coredns_image()))
    node.kubectl_run(
        "-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s", timeout=150
    )
    say(f"node: {NODE_NAME} ready in {time.monotonic() - started:.1f}s (state in {layout.state})")
    return node


def node_daemons(layout: NodeLayout) -> dict[str, Daemon]:
    kube, extra = kube_bin(), node_bin()
    pki = layout.pki
    on_path = {"PATH": f"{extra}:{os.environ.get('PATH', '')}"}

    def daemon(name: str, argv: list[str]) -> Daemon:
        return Daemon(name, argv, layout.log(name), layout.pid_file(name))

    return {
        "etcd": daemon(
            "etcd",
            [
                str(kube / "etcd"),
                "--name=sparkops-node",
                f"--data-dir={layout.etcd_data}",
                f"--listen-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
                f"--advertise-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
                f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
                f"--initial-cluster=sparkops-node=http://127.0.0.1:{ETCD_PEER_PORT}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        ),
        "kube-apiserver": daemon(
            "kube-apiserver",
            [
                str(kube / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}",
                f"--bind-address={network.NODE_IP}",
                f"--advertise-address={network.NODE_IP}",
                f"--secure-port={network.API_PORT}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={network.SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        ),
        "kube-controller-manager": daemon(
            "kube-controller-manager",
            [
                str(kube / "kube-controller-manager"),
                f"--kubeconfig={layout.kubeconfig('controller-manager')}",
                f"--authentication-kubeconfig={layout.kubeconfig('controller-manager')}",
                f"--authorization-kubeconfig={layout.kubeconfig('controller-manager')}",
                "--bind-address=127.0.0.1",
                "--secure-port=10257",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-cluster-ip-range={network.SERVICE_CIDR}",
                f"--cluster-cidr={network.POD_CIDR}",
                "--allocate-node-cidrs=false",
                "--use-service-account-credentials=true",
                "--concurrent-gc-syncs=4",
                "--v=1",
            ],
        ),
        "kube-scheduler": daemon(
            "kube-scheduler",
            [
                str(extra / "kube-scheduler"),
                f"--kubeconfig={layout.kubeconfig('scheduler')}",
                f"--authentication-kubeconfig={layout.kubeconfig('scheduler')}",
                f"--authorization-kubeconfig={layout.kubeconfig('scheduler')}",
                "--bind-address=127.0.0.1",
                "--secure-port=10259",
                "--leader-elect=false",
                "--v=1",
            ],
        ),
        "containerd": Daemon(
            "containerd",
            [str(extra / "containerd"), f"--config={layout.containerd_config}", "--log-level=warn"],
            layout.log("containerd"),
            layout.pid_file("containerd"),
            # containerd starts its runc shim from PATH.
            env=on_path,
        ),
        "kubelet": Daemon(
            "kubelet",
            [
                str(extra / "kubelet"),
                f"--config={layout.kubelet_config}",
                f"--kubeconfig={layout.kubeconfig('kubelet')}",
                f"--root-dir={layout.kubelet_root}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={network.NODE_IP}",
                "--v=1",
            ],
            layout.log("kubelet"),
            layout.pid_file("kubelet"),
            env=on_path,
        ),
        "kube-proxy": daemon(
            "kube-proxy", [str(extra / "kube-proxy"), f"--config={layout.kube_proxy_config}", "--v=1"]
        ),
    }


def _preflight() -> None:
    if os.geteuid() != 0:
        raise HarnessError(
            "the real node needs root (a kubelet manages cgroups, mounts and network namespaces)"
        )
    missing = [command for command in NEEDED_COMMANDS if shutil.which(command) is None]
    if missing or not Path(CNI_BIN_DIR, "bridge").exists():
        raise HarnessError(
            f"the real node needs {', '.join(missing) or 'the CNI plugins'}: "
            "run `.ci/install-system-packages.sh --node`"
        )
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    )
    destinations = [line.split()[0] for line in routes.stdout.splitlines() if line.strip()]
    destinations = [d for d in destinations if d not in ("local", "broadcast", "unreachable", "prohibit")]
    clashes = network.overlapping_routes(destinations)
    if clashes:
        raise HarnessError(
            f"the machine already routes {', '.join(clashes)}, which overlaps the node's pod range "
            f"{network.POD_CIDR} or service range {network.SERVICE_CIDR}"
        )


def _make_pki(layout: NodeLayout) -> None:
    pki = layout.pki
    if (pki / ".complete").exists():
        return
    ca = CertificateAuthority(pki)
    ca.issue(
        "apiserver",
        "kube-apiserver",
        server=True,
        dns_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{network.CLUSTER_DOMAIN}",
        ),
        ip_addresses=("127.0.0.1", network.NODE_IP, network.API_SERVICE_IP),
    )
    ca.issue(
        "kubelet-serving",
        f"system:node:{NODE_NAME}",
        server=True,
        dns_names=(NODE_NAME,),
        ip_addresses=(network.NODE_IP,),
    )
    ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", organization="system:masters")
    ca.issue("admin", "sparkops-admin", organization="system:masters")
    ca.issue("kubelet", f"system:node:{NODE_NAME}", organization="system:nodes")
    ca.issue("controller-manager", "system:kube-controller-manager")
    ca.issue("scheduler", "system:kube-scheduler")
    ca.issue("kube-proxy", "system:kube-proxy")
    service_account_keys(pki)
    (pki / ".complete").touch()


def _write_configs(layout: NodeLayout) -> None:
    pki = layout.pki
    server = f"https://{network.NODE_IP}:{network.API_PORT}"
    for component, stem in (
        ("kubeconfig", "admin"),
        ("kubelet", "kubelet"),
        ("controller-manager", "controller-manager"),
        ("scheduler", "scheduler"),
        ("kube-proxy", "kube-proxy"),
    ):
        path = layout.admin_kubeconfig if component == "kubeconfig" else layout.kubeconfig(component)
        document = configs.kubeconfig(server, pki / "ca.crt", pki / f"{stem}.crt", pki / f"{stem}.key", stem)
        _write_if_changed(path, yaml.safe_dump(document), mode=0o600)
    _write_if_changed(
        layout.containerd_config,
        configs.containerd_toml(layout, pause_image(), shutil.which("runc") or "/usr/sbin/runc", CNI_BIN_DIR),
    )
    for registry in configs.REGISTRIES:
        hosts = layout.registry_hosts / registry
        hosts.mkdir(parents=True, exist_ok=True)
        _write_if_changed(hosts / "hosts.toml", configs.registry_hosts_toml())
    layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    _write_if_changed(layout.cni_conf_dir / "10-sparkops-node.conflist", network.cni_config_json())
    _write_if_changed(layout.kubelet_config, yaml.safe_dump(configs.kubelet_config(layout)))
    _write_if_changed(layout.kube_proxy_config, yaml.safe_dump(configs.kube_proxy_config(layout)))
    # Pods' DNS comes from CoreDNS alone; the machine's resolvers are not handed to pods.
    _write_if_changed(layout.pod_resolv_conf, "")


def _write_if_changed(path: Path, text: str, mode: int | None = None) -> None:
    """Write `text` unless the file holds it already: kube-proxy exits when its configuration
    file is written, even with the same content, and a running node is reused as it is."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    if mode is not None:
        path.chmod(mode)


def _open_network(layout: NodeLayout) -> None:
    """The bridge with the node's address, bridged traffic through iptables (Services between
    pods), and forwarding on, guarded by FORWARD_CHAIN."""
    if (
        subprocess.run(["ip", "link", "show", network.BRIDGE], capture_output=True, check=False).returncode
        != 0
    ):
        _run("ip", "link", "add", network.BRIDGE, "type", "bridge")
    addresses = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", network.BRIDGE], capture_output=True, text=True, check=True
    ).stdout
    if f" {network.NODE_IP}/" not in addresses:
        _run("ip", "addr", "add", f"{network.NODE_IP}/24", "dev", network.BRIDGE)
    _run("ip", "link", "set", network.BRIDGE, "up")
    if (
        subprocess.run(
            ["iptables", "-w", "-L", network.FORWARD_CHAIN, "-n"], capture_output=True, check=False
        ).returncode
        != 0
    ):
        _run("iptables", "-w", "-N", network.FORWARD_CHAIN)
        for rule in network.forward_rules():
            _run("iptables", "-w", "-A", network.FORWARD_CHAIN, *rule)
    if (
        subprocess.run(
            ["iptables", "-w", "-C", "FORWARD", "-j", network.FORWARD_CHAIN], capture_output=True, check=False
        ).returncode
        != 0
    ):
        _run("iptables", "-w", "-I", "FORWARD", "1", "-j", network.FORWARD_CHAIN)
    saved = layout.state / "ip_forward.before"
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    if not saved.exists():
        saved.write_text(forward.read_text())
    forward.write_text("1\n")
    Path("/proc/sys/net/bridge/bridge-nf-call-iptables").write_text("1\n")


def _load_scratch_image(layout: NodeLayout, program: str, image: str) -> None:
    """Build a one-program image from the node's build and load it into containerd."""
    short = image.removeprefix("docker.io/")
    if _docker_image_id(short) is None:
        context = layout.state / f"image-{program}"
        context.mkdir(exist_ok=True)
        shutil.copy2(node_bin() / program, context / program)
        (context / "Dockerfile").write_text(configs.scratch_dockerfile(program))
        _run("docker", "build", "--network", "none", "-q", "-t", short, str(context))
    load_image(short, layout)


def load_image(image: str, layout: NodeLayout | None = None) -> None:
    """Copy an image of the local Docker daemon into the node's containerd (namespace k8s.io),
    unless containerd already holds that very image."""
    layout = layout or default_layout()
    image_id = _docker_image_id(image)
    if image_id is None:
        raise HarnessError(f"image {image} is not in the local Docker daemon; build it first (make images)")
    marker = layout.loaded_images
    loaded = json.loads(marker.read_text()) if marker.exists() else {}
    listed = _ctr(layout, "-n", "k8s.io", "images", "ls", "-q").stdout.split()
    qualified = image if "/" in image.split(":")[0] and "." in image.split("/")[0] else f"docker.io/{image}"
    if loaded.get(image) == image_id and qualified in listed:
        return
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    try:
        done = subprocess.run(
            [
                str(node_bin() / "ctr"),
                f"--address={layout.containerd_socket}",
                "-n",
                "k8s.io",
                "images",
                "import",
                "-",
            ],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        if save.stdout:
            save.stdout.close()
        save.wait(timeout=60)
    if done.returncode != 0 or save.returncode != 0:
        raise HarnessError(f"loading {image} into the node failed: {done.stderr.strip()[-2000:]}")
    loaded[image] = image_id
    marker.write_text(json.dumps(loaded, indent=2))


def _docker_image_id(image: str) -> str | None:
    done = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", image], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def _node_ready(node: Node) -> bool:
    done = node.kubectl_run("get", "node", NODE_NAME, "-o", "json", check=False, timeout=20)
    if done.returncode != 0:
        return False
    conditions = json.loads(done.stdout)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# --- down ----------------------------------------------------------------------------------


def down(layout: NodeLayout | None = None, keep_state: bool = False, keep_images: bool = False) -> None:
    """Stop the node and remove what it made: pods (through the runtime, so CNI releases their
    addresses and namespaces), daemons, rules, the bridge, and unless `keep_state`, its state.
    `keep_images` keeps only containerd's store and its record of loaded images, so the next
    start does not copy the images again (the test runs do this; `make sandbox-down` does not)."""
    layout = layout or default_layout()
    daemons = node_daemons(layout)
    daemons["kubelet"].stop()
    if daemons["containerd"].running:
        _remove_all_pods(layout)
    daemons["kube-proxy"].stop()
    if (node_bin() / "kube-proxy").exists():
        subprocess.run(
            [str(node_bin() / "kube-proxy"), "--cleanup"], capture_output=True, check=False, timeout=60
        )
    for name in ("containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        daemons[name].stop()
    _kill_leftover_shims(layout)
    _close_network(layout)
    _unmount_under(layout.run)
    _unmount_under(layout.state)
    shutil.rmtree(layout.run, ignore_errors=True)
    if keep_state:
        return
    kept = {layout.containerd_root, layout.loaded_images} if keep_images else set()
    for entry in layout.state.iterdir() if layout.state.exists() else []:
        if entry in kept:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if not kept:
        shutil.rmtree(layout.state, ignore_errors=True)


def _remove_all_pods(layout: NodeLayout) -> None:
    crictl = node_bin() / "crictl"
    if crictl.exists():
        subprocess.run(
            [str(crictl), f"--runtime-endpoint=unix://{layout.containerd_socket}", "rmp", "--all", "--force"],
            capture_output=True,
            check=False,
            timeout=180,
        )


def _kill_leftover_shims(layout: NodeLayout) -> None:
    socket = str(layout.containerd_socket)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "containerd-shim" in cmdline and socket in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(proc.name), signal.SIGKILL)


def _close_network(layout: NodeLayout) -> None:
    subprocess.run(
        ["iptables", "-w", "-D", "FORWARD", "-j", network.FORWARD_CHAIN], capture_output=True, check=False
    )
    subprocess.run(["iptables", "-w", "-F", network.FORWARD_CHAIN], capture_output=True, check=False)
    subprocess.run(["iptables", "-w", "-X", network.FORWARD_CHAIN], capture_output=True, check=False)
    saved = layout.state / "ip_forward.before"
    if saved.exists():
        Path("/proc/sys/net/ipv4/ip_forward").write_text(saved.read_text())
    subprocess.run(["ip", "link", "delete", network.BRIDGE], capture_output=True, check=False)
    for netns in Path("/var/run/netns").glob("cni-*") if Path("/var/run/netns").exists() else []:
        subprocess.run(["umount", str(netns)], capture_output=True, check=False)
        netns.unlink(missing_ok=True)


def _unmount_under(directory: Path) -> None:
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    points = sorted(
        (line.split()[1] for line in mounts if line.split()[1].startswith(str(directory))), reverse=True
    )
    for point in points:
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def status(layout: NodeLayout | None = None) -> dict[str, bool]:
    layout = layout or default_layout()
    return {name: daemon.running for name, daemon in node_daemons(layout).items()}


# --- helpers -------------------------------------------------------------------------------


def _ctr(layout: NodeLayout, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(node_bin() / "ctr"), f"--address={layout.containerd_socket}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and done.returncode != 0:
        raise HarnessError(f"ctr {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
