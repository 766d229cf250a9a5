"""The version, read from the installed distribution's metadata (its one source is Cargo.toml)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mmn_fast")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
