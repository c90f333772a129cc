"""Build hook: the wheel carries rego/ and bundles/default/ as package data (sidecar/_defaults/).

The sources stay at the top of the checkout (DESIGN §2) where `make policy-check`, the tests and
policy authors use them; a built package gets a copy, which ``default_source_dir`` finds with
importlib.resources, so an installed ``policy-sidecar serve`` builds its default bundle from it.
An editable install reads the checkout itself and gets no copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# (source in the checkout or sdist, destination under the package's _defaults/)
_SOURCES = (("rego", "rego"), ("bundles/default", "bundles/default"))


class BuildPyWithPolicies(build_py):
    """build_py that also copies the default policy and bundle data into the package."""

    def run(self) -> None:
        """Build the modules, then add the default policy sources (not for editable installs)."""
        super().run()
        if self.editable_mode:
            return
        root = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "sidecar" / "_defaults"
        for source, dest in _SOURCES:
            if not (root / source).is_dir():
                raise SystemExit(f"setup.py: {root / source} is missing (the sdist must carry it)")
            shutil.copytree(
                root / source,
                target / dest,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )


setup(cmdclass={"build_py": BuildPyWithPolicies})
