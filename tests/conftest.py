"""The harness of real components is a pytest plugin: see tests/infra/plugin.py."""

pytest_plugins = ["tests.infra.plugin"]
