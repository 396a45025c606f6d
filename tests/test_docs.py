"""Every public name has a docstring (issue 20: the API reference is generated from them).

"Public" is what the documentation shows: ``fastbp.__all__`` and, for each public module
of the package (every ``fastbp.<name>`` not starting with ``_``), its ``__all__`` (or,
without one, the functions and classes it defines); for a public class, its public
methods and properties. A second test checks that the API reference
(``docs/api``) lists every one of those names. A constant cannot carry a docstring, so it
needs a ``#:`` comment above its assignment (which autodoc shows) instead. A module whose
import needs an optional dependency that is not installed is skipped, not failed.
"""
import glob
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import types

import pytest

import fastbp

# optional dependencies a public module may need at import (the module is skipped without)
OPTIONAL = {"sklearn": "sklearn"}


def public_modules():
    names = [m.name for m in pkgutil.iter_modules(fastbp.__path__)
             if not m.name.startswith("_")]
    return sorted(names)


def import_public(name):
    dep = OPTIONAL.get(name)
    if dep is not None:
        pytest.importorskip(dep)
    return importlib.import_module(f"fastbp.{name}")


def own_members(cls):
    """Public methods and properties a class defines (or overrides) itself."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property) or inspect.isfunction(value) or inspect.isroutine(value):
            yield name, value


def missing_docstrings(owner, names):
    """(qualified name, why) for each of ``names`` in ``owner`` without documentation."""
    missing = []
    source = None
    for name in names:
        obj = getattr(owner, name)
        qual = f"{owner.__name__}.{name}"
        if isinstance(obj, types.ModuleType) or inspect.isclass(obj) or callable(obj):
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(qual)
            if inspect.isclass(obj) and obj.__module__.startswith("fastbp"):
                for mname, member in own_members(obj):
                    # an override without its own docstring shows the base's (autodoc does)
                    doc = inspect.getdoc(getattr(obj, mname))
                    if not (doc or "").strip():
                        missing.append(f"{qual}.{mname}")
        else:   # data: a "#:" comment documents it for autodoc
            if source is None:
                source = inspect.getsource(owner)
            if not re.search(rf"^#:.*\n(?:#:.*\n)*{re.escape(name)}\s*[:=]", source, re.M):
                missing.append(f"{qual} (constant: needs a '#:' comment)")
    return missing


def test_top_level_names_have_docstrings():
    assert (fastbp.__doc__ or "").strip()
    names = [n for n in fastbp.__all__ if n != "__version__"]
    assert missing_docstrings(fastbp, names) == []


@pytest.mark.parametrize("name", public_modules())
def test_public_module_names_have_docstrings(name):
    module = import_public(name)
    assert (module.__doc__ or "").strip(), f"fastbp.{name} has no module docstring"
    names = getattr(module, "__all__", None)
    if names is None:     # e.g. fastbp.cli: what it defines itself, by name
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and (inspect.isfunction(v) or inspect.isclass(v))
                 and v.__module__ == module.__name__]
    assert missing_docstrings(module, names) == []


def test_the_walk_sees_the_second_stage_modules():
    # the API reference promises these; a rename must not silently drop them from the walk
    for name in ("data", "distributed", "many", "export", "sklearn", "network", "trainer"):
        assert name in public_modules()


DOCS_API = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "api")


def documented_in_api_pages():
    """Qualified names listed by the autosummary directives of docs/api/*.rst."""
    names = set()
    for page in sorted(glob.glob(os.path.join(DOCS_API, "*.rst"))):
        module, in_summary = None, False
        with open(page, encoding="utf-8") as f:
            for line in f:
                stripped = line.strip()
                if stripped.startswith(".. currentmodule::"):
                    module = stripped.split("::", 1)[1].strip()
                    in_summary = False
                elif stripped.startswith(".. autosummary::"):
                    in_summary = True
                elif in_summary and line.startswith("   ") and stripped \
                        and not stripped.startswith(":"):
                    names.add(f"{module}.{stripped}")
                elif in_summary and stripped and not line.startswith(" "):
                    in_summary = False
    return names


@pytest.mark.skipif(not os.path.isdir(DOCS_API), reason="no docs/ next to the tests")
def test_api_reference_lists_every_public_name():
    documented = documented_in_api_pages()
    missing = []
    top = {n: getattr(fastbp, n) for n in fastbp.__all__}
    for n, obj in top.items():
        if n != "__version__" and not isinstance(obj, types.ModuleType) \
                and f"fastbp.{n}" not in documented:
            missing.append(f"fastbp.{n}")
    for name in public_modules():
        if name in OPTIONAL and importlib.util.find_spec(OPTIONAL[name]) is None:
            continue
        module = importlib.import_module(f"fastbp.{name}")
        names = getattr(module, "__all__", None)
        if names is None:
            names = [n for n, v in vars(module).items() if not n.startswith("_")
                     and (inspect.isfunction(v) or inspect.isclass(v))
                     and v.__module__ == module.__name__]
        for n in names:
            obj = getattr(module, n)
            if f"fastbp.{name}.{n}" in documented:
                continue
            if top.get(n) is obj and f"fastbp.{n}" in documented:
                continue        # documented where the package exports it
            missing.append(f"fastbp.{name}.{n}")
    assert missing == [], "add these to an autosummary in docs/api/: " + ", ".join(missing)


@pytest.mark.skipif(not os.path.isdir(DOCS_API), reason="no docs/ next to the tests")
def test_offline_inventories_load_with_real_urls(tmp_path):
    # docs/_inventories.py: what an offline docs build links external names with
    pytest.importorskip("sphinx")
    from sphinx.util.inventory import InventoryFile
    import sys
    sys.path.insert(0, os.path.dirname(DOCS_API))
    try:
        import _inventories
    finally:
        sys.path.pop(0)
    for project, path in _inventories.write_inventories(str(tmp_path)).items():
        base = _inventories.INVENTORIES[project][0]
        with open(path, "rb") as f:
            inv = InventoryFile.load(f, base, lambda base, uri: base + uri)
        entries = inv.data if hasattr(inv, "data") else inv
        uris = [getattr(item, "uri", None) or item[2]      # Sphinx >= 8.2: attributes
                for role in entries.values() for item in role.values()]
        assert uris and all(u.startswith("https://") and "$" not in u for u in uris), project
