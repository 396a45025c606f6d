"""sphinx-gallery helpers for conf.py (named by string there, so the config pickles).

- :class:`ExampleOrder`: the gallery's order, a first example first.
- :func:`saved_png_scraper`: the existing examples draw on a ``matplotlib.figure.Figure``
  (no pyplot, so sphinx-gallery's matplotlib scraper cannot see them) and save PNGs next
  to their tables, in ``FASTBP_EXAMPLES_OUT`` when the docs build runs them; this scraper
  shows each PNG written there during an example.
"""
import os
import shutil

ORDER = ["quickstart.py", "bp_flops.py", "vanishing_gradients.py", "pretraining.py",
         "regularization.py", "hyperparameter_search.py", "cluster_search.py"]


class ExampleOrder:
    """Sort key: the files of ORDER in that order, then any other by name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        name = os.path.basename(filename)
        return (ORDER.index(name), "") if name in ORDER else (len(ORDER), name)

    def __repr__(self):
        return "ExampleOrder"


def saved_png_scraper(block, block_vars, gallery_conf):
    """rST for the PNG files written to FASTBP_EXAMPLES_OUT since the last look."""
    from sphinx_gallery.scrapers import figure_rst

    out = os.environ.get("FASTBP_EXAMPLES_OUT")
    if not out or not os.path.isdir(out):
        return ""
    seen = _SEEN
    images = []
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name)
        if not name.endswith(".png"):
            continue
        stamp = os.stat(path).st_mtime_ns
        if seen.get(path) == stamp:
            continue
        seen[path] = stamp
        target = next(block_vars["image_path_iterator"])
        shutil.copyfile(path, target)
        images.append(target)
    return figure_rst(images, gallery_conf["src_dir"])


_SEEN = {}


def reset_seen(out_dir):
    """Forget earlier builds' PNGs: remove them, so each build shows its own."""
    if os.path.isdir(out_dir):
        for name in os.listdir(out_dir):
            if name.endswith((".png", ".md")):
                os.remove(os.path.join(out_dir, name))
    _SEEN.clear()
