"""Finds and loads ``scipy.linalg.cython_blas`` without importing ``scipy.linalg``.

fastbp's BLAS is scipy's: ``fastbp._blas`` takes sgemm/dgemm from the
``__pyx_capi__`` capsules of the module this loader returns. A plain
``cimport scipy.linalg.cython_blas`` would do the same, but Cython then makes
``fastbp._blas``'s init run ``import scipy.linalg.cython_blas``, which runs
``scipy/__init__`` and the whole ``scipy.linalg`` package (85 scipy modules)
first. What ``import fastbp`` costs after ``import numpy``, measured in fresh
processes on a 2-core x86-64 Linux machine (Python 3.11, numpy 2.4, scipy
1.17.1; medians of 21; CPU time of all threads, steadier than wall time on a
shared machine; RSS from /proc/self/status):

    ========================  ==========  ===========  ===============
    import fastbp             CPU time    RSS added    modules in all
    ========================  ==========  ===========  ===============
    with this loader          ~50 ms      +7.2 MB      225 (no scipy)
    with the plain cimport    ~220 ms     +31.4 MB     462 (85 scipy)
    ========================  ==========  ===========  ===============

so the cimport would cost ~170 ms and ~24 MB more (wall times, a 3-run median
while the machine was quiet: ~38 ms against ~172 ms). ``import scipy.linalg``
alone costs ~185 ms and +27.9 MB, ``scipy/__init__`` alone ~17 ms and +2.9 MB,
loading cython_blas's file here ~4 ms (its share of ``-X importtime``). A
process that has imported ``scipy.linalg`` already (scikit-learn, say) pays
nothing either way: the module in ``sys.modules`` is used as is.

How: the extension file ``scipy/linalg/cython_blas*.so`` is found next to the
scipy package (located by ``importlib.util.find_spec``, which does not run
its ``__init__``) and run on its own; its C functions, and the BLAS library
it links (which ``_config`` finds by its path), are the same as with an
import. cython_blas's init imports ``scipy._cyutility`` (Cython's shared
utility module, in scipy builds made with Cython >= 3.1), and importing that
the usual way would run ``scipy/__init__``; so while cython_blas's init runs,
``sys.modules`` holds the scipy package unexecuted and ``_cyutility`` loaded
from its file.

Guarantees (tests/test_blas_import.py):

* after ``import fastbp`` no ``scipy*`` entry is left in ``sys.modules``
  (unless the Cython that built scipy would make a second module object on a
  later import; then the modules loaded here stay registered instead);
* a later ``import scipy.linalg.cython_blas`` (or of any of scipy) works the
  usual way and gives the very module object loaded here;
* if anything in the above fails, ``scipy.linalg.cython_blas`` is imported
  the usual way instead, and no entry of the failed attempt is left behind.
"""
import importlib
import importlib.machinery
import importlib.util
import os
import sys

NAME = "scipy.linalg.cython_blas"


def load_cython_blas():
    """scipy.linalg.cython_blas and how it was found: "sys.modules" (already imported),
    "file" (its extension file loaded on its own, without the scipy.linalg package) or
    "import" (a plain import, the fallback if loading the file fails for any reason).
    Called once, by fastbp._blas at import."""
    mod = sys.modules.get(NAME)
    if mod is not None:
        return mod, "sys.modules"
    try:
        return _load_extension_file(), "file"
    except Exception:
        pass
    importlib.import_module(NAME)
    return sys.modules[NAME], "import"


def _extension_file(bases, subdir, name):
    """The path of extension module `name` in one of the folders base/subdir, or None."""
    for base in bases:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = os.path.join(base, subdir, name + suffix)
            if os.path.isfile(candidate):
                return candidate
    return None


def _exec_extension_file(name, path, made):
    """Create and run extension module `name` from `path` and return it. made[name] gets
    (module, loader, spec) before its init runs (which may enter the module in sys.modules,
    and then fail)."""
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    made[name] = (mod, loader, spec)
    loader.exec_module(mod)
    return mod


def _load_extension_file():
    scipy_spec = importlib.util.find_spec("scipy")
    bases = list(scipy_spec.submodule_search_locations or []) if scipy_spec else []
    path = _extension_file(bases, "linalg", "cython_blas")
    if path is None:
        raise ImportError(f"no {NAME} extension file under {bases}")
    made = {}          # name -> (module, loader, spec) of each extension loaded here
    stub = None
    try:
        if "scipy" not in sys.modules:
            stub = sys.modules["scipy"] = importlib.util.module_from_spec(scipy_spec)
        util = None if "scipy._cyutility" in sys.modules else _extension_file(bases, "", "_cyutility")
        if util is not None:
            sys.modules["scipy._cyutility"] = _exec_extension_file("scipy._cyutility", util, made)
        blas_mod = _exec_extension_file(NAME, path, made)
    finally:
        # An entry put in sys.modules before its parent package was imported never becomes
        # the parent's attribute, so a later `import scipy.linalg.cython_blas` would leave
        # `scipy.linalg.cython_blas` an AttributeError. A later import instead loads each
        # module the usual way, and Cython hands back this same module object (one per
        # process; checked just below), sets it as the parent's attribute and does not
        # run its init again.
        if stub is not None and sys.modules.get("scipy") is stub:
            del sys.modules["scipy"]
        for name, (mod, _, _) in made.items():
            if sys.modules.get(name) is mod:
                del sys.modules[name]
    for name, (mod, loader, spec) in made.items():
        if loader.create_module(spec) is not mod:
            # This Cython build would make a second module object, whose init could then
            # fail on a later import: keep ours registered instead.
            sys.modules[name] = mod
    return blas_mod
