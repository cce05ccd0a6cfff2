"""Let the training and inference code import on a bare GPU machine (torch, numpy, scipy, pandas, pyarrow, safetensors only).

``s2v_core/io/__init__.py`` and ``s2v_core/cohort/__init__.py`` load their names lazily, so the
training path no longer imports tqdm, pyedflib or defusedxml
(``tests/test_architecture.py::test_training_imports_need_no_reader_or_preparation_packages``).
:func:`stub_missing` stays as a safety net for the benchmarks: it puts a stand-in module in place of
each of these packages that is NOT installed; using anything from a stand-in raises ImportError, so
a benchmark that really needs the package still fails loudly. Installed packages are never touched,
and nothing else is stubbed: a new blocking import shows up as an ImportError.

:func:`hide` makes packages unimportable, to rehearse the bare machine on a full one
(``S2V_BENCH_BARE=1``, used by ``tests/test_bench_gpu.py``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

__all__ = ["PROJECT_EXTRAS", "STUBBED", "hide", "stub_missing"]

STUBBED = ("tqdm", "pyedflib", "defusedxml")
"""Packages imported at module level on the training/inference path that a bare machine lacks."""

PROJECT_EXTRAS = ("mne", "pyedflib", "wfdb", "sleepecg", "yasa", "keras", "plotly", "streamlit",
                  "sklearn", "umap", "matplotlib", "tqdm", "dask", "distributed", "defusedxml", "edfio")  # fmt: skip
"""The project's dependencies beyond torch, numpy, scipy, pandas, pyarrow and safetensors."""


class _Missing(Exception):
    """Stand-in for any name of a stubbed package (an Exception, so ``except X`` clauses compile)."""

    what = "?"

    def __init__(self, *args, **kwargs):
        raise ImportError(f"{self.what} is not installed on this machine (benchmark stand-in)")


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        stand_in = type(name, (_Missing,), {"what": f"{self.__name__}.{name}"})
        setattr(self, name, stand_in)
        return stand_in


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []  # a package: its submodules are stubbed too


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, stub: set[str]):
        self.stub = stub

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.stub:
            return importlib.machinery.ModuleSpec(name, _StubLoader(), is_package=True)
        return None


def hide(names=PROJECT_EXTRAS) -> None:
    """Make ``names`` unimportable in this process, as if not installed (``find_spec`` gives None)."""
    for n in names:
        if sys.modules.get(n) is None:
            sys.modules[n] = None  # the import system's own "not there"


def stub_missing(names=STUBBED) -> list[str]:
    """Stand-ins for those of ``names`` that are not installed (or hidden); returns their names."""
    missing = []
    for n in names:
        if n in sys.modules and sys.modules[n] is None:
            del sys.modules[n]
            missing.append(n)
        elif n not in sys.modules and importlib.util.find_spec(n) is None:
            missing.append(n)
    if missing:
        sys.meta_path.insert(0, _Finder(set(missing)))
    return missing
