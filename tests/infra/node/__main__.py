"""`python -m tests.infra.node up|down|status|load IMAGE...`: the real node from a shell."""

from __future__ import annotations

import argparse
import sys

from tests.infra.node import node
from tests.infra.process import HarnessError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.infra.node", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the node, or find it running; print its kubeconfig path")
    down = commands.add_parser("down", help="stop the node and remove its pods, rules, bridge and state")
    down.add_argument("--keep-state", action="store_true", help="keep the state dir (images, etcd)")
    down.add_argument(
        "--keep-images", action="store_true", help="keep only the images loaded into containerd"
    )
    commands.add_parser("status", help="which of the node's daemons run")
    load = commands.add_parser("load", help="copy images of the local Docker daemon into the node")
    load.add_argument("images", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(node.up().kubeconfig)
        elif args.command == "down":
            node.down(keep_state=args.keep_state, keep_images=args.keep_images)
        elif args.command == "status":
            states = node.status()
            for name, running in states.items():
                print(f"{name:<24} {'running' if running else 'stopped'}")
            return 0 if all(states.values()) else 3
        else:
            for image in args.images:
                node.load_image(image)
    except HarnessError as failed:
        print(f"node: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
