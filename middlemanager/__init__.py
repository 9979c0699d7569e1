"""The MiddleManager: runs Kafka indexing tasks, each as its own process (a peon)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kafka-pull-indexer")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
