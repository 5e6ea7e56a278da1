"""The real node: a single-node Kubernetes cluster of real parts on this machine, for the tests that
need real pods and for `make sandbox`."""
