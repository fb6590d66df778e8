"""Sphinx configuration of kernelscope's API reference: ``make docs`` builds it into ``docs/_build/html``.

The pages of the reference are generated from the package (``_ext/kernelscope_api.py``): one per public module,
the command line's ``--help``, and the gallery of a tour's figures (``KERNELSCOPE_TOUR=DIR``, else ``tour-out``
when ``make demo`` made it). The build is offline: no theme asset, font or inventory is fetched.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent / "src"))  # the sources of this checkout, also without an install

project = "kernelscope"
author = "kernelscope contributors"
copyright = "kernelscope contributors"  # noqa: A001 (Sphinx's name)
from kernelscope import __version__ as release  # noqa: E402

version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "kernelscope_api"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "THEORY.md"]
root_doc = "index"

# numpydoc-style docstrings (Parameters / Returns sections with shapes), read by napoleon
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_class_signature = "mixed"
add_module_names = False
python_use_unqualified_type_names = True

kernelscope_tour = str(HERE.parent / "tour-out") if (HERE.parent / "tour-out" / "steps").is_dir() else ""

html_theme = "furo"
html_title = f"kernelscope {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
