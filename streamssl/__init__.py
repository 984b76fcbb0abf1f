"""streamssl: learn audio representations online from live streams."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("streamssl")
except _metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"


def subscribe(*args, **kwargs):
    """Iterate over embedding frames from a learner; see streamssl.serving.subscriber.subscribe."""
    from streamssl.serving.subscriber import subscribe as _subscribe

    return _subscribe(*args, **kwargs)


__all__ = ["__version__", "subscribe"]
