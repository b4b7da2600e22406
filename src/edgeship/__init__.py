"""edgeship: ship AI models to fleets of edge devices and run them there."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgeship")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
