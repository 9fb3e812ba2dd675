"""The library version recorded in every manifest."""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "sievelm"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
