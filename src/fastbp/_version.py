"""The package version, read by ``fastbp/__init__.py`` and by the build (pyproject.toml)."""
__version__ = "0.1.0"
