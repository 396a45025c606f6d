"""Small intersphinx inventories for building the documentation offline.

Intersphinx downloads each project's ``objects.inv`` to turn references such as
:class:`numpy.ndarray` into links. Where the build has no internet (this project's CI and
development machines reach package registries only) the download fails, and ``sphinx-build
-W`` would stop on the warning. ``conf.py`` therefore gives intersphinx two locations per
project, tried in order: the real inventory on the project's site, then a local file that
:func:`write_inventories` writes at the start of every build from the table below. Online
builds use the complete remote inventories; offline builds use these, which hold exactly the
external names fastbp's documentation refers to, each with its page on the real site, so
the links in an offline build are the same links.

Add a name here when the docs start referring to a new external object (a reference that
neither inventory resolves is rendered as plain text, without a warning).
"""
import os
import zlib

#: project -> (base URL, {(name, domain:role): relative URI}); "$" in a URI stands for the
#: name (expanded when the inventory is written)
INVENTORIES = {
    "python": ("https://docs.python.org/3/", {
        ("pathlib.Path", "py:class"): "library/pathlib.html#$",
        ("os.PathLike", "py:class"): "library/os.html#$",
        ("pickle", "py:module"): "library/pickle.html#module-pickle",
        ("concurrent.futures.ThreadPoolExecutor", "py:class"):
            "library/concurrent.futures.html#$",
        ("KeyboardInterrupt", "py:exception"): "library/exceptions.html#$",
        ("ValueError", "py:exception"): "library/exceptions.html#$",
        ("TypeError", "py:exception"): "library/exceptions.html#$",
        ("RuntimeError", "py:exception"): "library/exceptions.html#$",
        ("RuntimeWarning", "py:exception"): "library/exceptions.html#$",
        ("OSError", "py:exception"): "library/exceptions.html#$",
        ("dict", "py:class"): "library/stdtypes.html#$",
        ("list", "py:class"): "library/stdtypes.html#$",
        ("tuple", "py:class"): "library/stdtypes.html#$",
        ("str", "py:class"): "library/stdtypes.html#$",
        ("int", "py:class"): "library/functions.html#$",
        ("float", "py:class"): "library/functions.html#$",
        ("bool", "py:class"): "library/functions.html#$",
        ("callable", "py:function"): "library/functions.html#$",
        ("contextlib.contextmanager", "py:function"): "library/contextlib.html#$",
    }),
    "numpy": ("https://numpy.org/doc/stable/", {
        ("numpy.ndarray", "py:class"): "reference/generated/$.html",
        ("numpy.dtype", "py:class"): "reference/generated/$.html",
        ("numpy.memmap", "py:class"): "reference/generated/$.html",
        ("numpy.load", "py:function"): "reference/generated/$.html",
        ("numpy.save", "py:function"): "reference/generated/$.html",
        ("numpy.savez", "py:function"): "reference/generated/$.html",
        ("numpy.lib.format.open_memmap", "py:function"): "reference/generated/$.html",
        ("numpy.random.Generator", "py:class"): "reference/random/generator.html#$",
        ("numpy.random.default_rng", "py:function"): "reference/random/generator.html#$",
        ("numpy.float32", "py:class"): "reference/arrays.scalars.html#$",
        ("numpy.float64", "py:class"): "reference/arrays.scalars.html#$",
        ("numpy.linalg.qr", "py:function"): "reference/generated/$.html",
        ("array_like", "std:term"): "glossary.html#term-array_like",
    }),
    "scipy": ("https://docs.scipy.org/doc/scipy/", {
        ("scipy.linalg.cython_blas", "py:module"):
            "reference/linalg.cython_blas.html#module-scipy.linalg.cython_blas",
        ("scipy.sparse.csr_matrix", "py:class"): "reference/generated/$.html",
        ("scipy.sparse.issparse", "py:function"): "reference/generated/$.html",
        ("scipy.optimize.minimize", "py:function"): "reference/generated/$.html",
        ("scipy.stats.truncnorm", "py:data"): "reference/generated/$.html",
    }),
    "sklearn": ("https://scikit-learn.org/stable/", {
        ("sklearn.neural_network.MLPClassifier", "py:class"): "modules/generated/$.html",
        ("sklearn.neural_network.MLPRegressor", "py:class"): "modules/generated/$.html",
        ("sklearn.model_selection.GridSearchCV", "py:class"): "modules/generated/$.html",
        ("sklearn.pipeline.Pipeline", "py:class"): "modules/generated/$.html",
        ("sklearn.pipeline.make_pipeline", "py:function"): "modules/generated/$.html",
        ("sklearn.preprocessing.StandardScaler", "py:class"): "modules/generated/$.html",
        ("sklearn.base.BaseEstimator", "py:class"): "modules/generated/$.html",
        ("sklearn.base.ClassifierMixin", "py:class"): "modules/generated/$.html",
        ("sklearn.base.RegressorMixin", "py:class"): "modules/generated/$.html",
        ("sklearn.base.TransformerMixin", "py:class"): "modules/generated/$.html",
        ("sklearn.utils.estimator_checks.check_estimator", "py:function"):
            "modules/generated/$.html",
    }),
    "torch": ("https://docs.pytorch.org/docs/stable/", {
        ("torch.nn.Sequential", "py:class"): "generated/$.html",
        ("torch.nn.Linear", "py:class"): "generated/$.html",
        ("torch.nn.BatchNorm1d", "py:class"): "generated/$.html",
        ("torch.nn.Dropout", "py:class"): "generated/$.html",
        ("torch.optim.SGD", "py:class"): "generated/$.html",
        ("torch.optim.Adam", "py:class"): "generated/$.html",
        ("torch.optim.AdamW", "py:class"): "generated/$.html",
        ("torch.optim.RMSprop", "py:class"): "generated/$.html",
        ("torch.optim.Rprop", "py:class"): "generated/$.html",
        ("torch.nn.init.calculate_gain", "py:function"): "nn.init.html#$",
        ("torch.nn.init.xavier_uniform_", "py:function"): "nn.init.html#$",
        ("torch.nn.init.xavier_normal_", "py:function"): "nn.init.html#$",
        ("torch.nn.init.kaiming_uniform_", "py:function"): "nn.init.html#$",
        ("torch.nn.init.kaiming_normal_", "py:function"): "nn.init.html#$",
        ("torch.nn.init.orthogonal_", "py:function"): "nn.init.html#$",
        ("torch.nn.init.trunc_normal_", "py:function"): "nn.init.html#$",
        ("torch.nn.utils.clip_grad_norm_", "py:function"): "generated/$.html",
        ("torch.nn.utils.clip_grad_value_", "py:function"): "generated/$.html",
        ("torch.autograd.gradcheck.gradcheck", "py:function"): "generated/$.html",
    }),
}


def inventory_bytes(project, entries):
    """An ``objects.inv`` (format version 2) holding ``entries``."""
    header = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
              "# The remainder of this file is compressed using zlib.\n").encode()
    lines = [f"{name} {role} 1 {uri.replace('$', name)} -\n"
             for (name, role), uri in sorted(entries.items())]
    return header + zlib.compress("".join(lines).encode())


def write_inventories(directory):
    """Write ``<project>.inv`` for each project into ``directory``; {project: path}."""
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for project, (_, entries) in INVENTORIES.items():
        path = os.path.join(directory, f"{project}.inv")
        data = inventory_bytes(project, entries)
        try:
            with open(path, "rb") as f:
                unchanged = f.read() == data
        except OSError:
            unchanged = False
        if not unchanged:
            with open(path, "wb") as f:
                f.write(data)
        paths[project] = path
    return paths


def intersphinx_mapping(directory):
    """intersphinx_mapping: each project's site first, the local inventory as fallback."""
    paths = write_inventories(directory)
    return {project: (base, (None, paths[project]))
            for project, (base, _) in INVENTORIES.items()}
