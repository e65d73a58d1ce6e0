__version__ = "0.1.0"


def installed_version() -> str:
    """The installed distribution's version (what pip installed, as --version prints it), else the source's."""
    from importlib import metadata

    try:
        return metadata.version("tgfleet")
    except metadata.PackageNotFoundError:
        return __version__
