"""Declares the compiled extensions only; metadata lives in pyproject.toml.

OpenMP is detected by compiling a tiny test program; without it the build
is serial and says so. FASTBP_DEBUG=1 turns Cython bounds checks on.
"""
import os
import sys
import tempfile
import textwrap

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from Cython.Build import cythonize

DEBUG = os.environ.get("FASTBP_DEBUG", "0") == "1"
MODULES = ["_blas", "_bf16", "_kernels", "_optim", "_engine"]
HEADERS = ["_constants.h", "_simd_common.h", "_simd.h", "_momentum.h", "_optim.h", "_gemm.h",
           "_gemm_kernel.h"]
OWN_HEADERS = {"_bf16": ["_bf16.h"]}   # included by that module only
# no FMA contraction where the SGD momentum update is compiled (_momentum.h): the optimizer's
# pass and the bf16 products' fused update then give the same bits (MSVC contracts only
# under /fp:contract or /fp:fast)
NO_CONTRACT = ("_optim", "_bf16")


def openmp_flags(compiler):
    """Return (compile, link) flags for OpenMP, or None if the compiler lacks it."""
    if os.environ.get("FASTBP_NO_OPENMP", "0") == "1":
        return None
    if sys.platform == "win32":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    code = textwrap.dedent("""
        #include <omp.h>
        int main(void) { int n = 0;
        #pragma omp parallel reduction(+:n)
          n += 1;
          return omp_get_max_threads() > 0 ? 0 : 1; }
    """)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(code)
        for cflags, lflags in candidates:
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(objs, os.path.join(tmp, "omp_test"),
                                         extra_postargs=lflags + os.environ.get("LDFLAGS", "").split())
                return cflags, lflags
            except Exception:
                continue
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        flags = openmp_flags(self.compiler)
        if flags is None:
            print("fastbp: OpenMP not found, building SERIAL kernels", file=sys.stderr)
            cflags, lflags = [], []
        else:
            print("fastbp: building with OpenMP (%s)" % " ".join(flags[0]), file=sys.stderr)
            cflags, lflags = flags
        opt = ["/O2"] if self.compiler.compiler_type == "msvc" else ["-O3", "-fno-math-errno", "-fno-trapping-math"]
        for ext in self.extensions:
            ext.extra_compile_args = opt + cflags
            if ext.name.split(".")[-1] in NO_CONTRACT and self.compiler.compiler_type != "msvc":
                ext.extra_compile_args = ext.extra_compile_args + ["-ffp-contract=off"]
            ext.extra_link_args = lflags
            ext.define_macros.append(("FASTBP_OPENMP", "1" if flags else "0"))
        super().build_extensions()


extensions = [
    Extension(
        f"fastbp.{name}",
        [f"src/fastbp/{name}.pyx"],
        include_dirs=[numpy.get_include()],
        depends=[f"src/fastbp/{h}" for h in HEADERS + OWN_HEADERS.get(name, [])],  # rebuild
        # when a header changes
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in MODULES
]

directives = dict(
    language_level=3,
    boundscheck=DEBUG,
    wraparound=False,
    cdivision=True,
    initializedcheck=DEBUG,
    nonecheck=False,
    embedsignature=True,
)

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives),
    cmdclass={"build_ext": BuildExt},
)
