"""tclearn: trusted-coalition learning on an Ethereum ledger."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tclearn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
