"""hybrid-nas: hardware-aware NAS over hybrid CNN/ViT mobile models."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hybrid-nas")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+src"
