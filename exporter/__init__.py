"""Prometheus exporter for Microsoft Entra ID SSPR and MFA registration counts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("entra-registration-exporter")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
