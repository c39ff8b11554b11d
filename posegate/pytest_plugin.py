"""The pytest11 entry point of ``pip install -e .``: registers posegate's options before pytest parses the
command line, so ``pytest --data-root /data`` (with a space) works. It adds options only; everything
else stays in the conftest plugins under fixtures/, which run in this repository alone."""
from posegate import cli_options


def pytest_addoption(parser):
    cli_options.add(parser)
