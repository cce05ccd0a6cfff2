"""What an input may cost, decided before anything is allocated.

* :mod:`s2v_core.limits.bounds`: the documented maxima (longest night, slowest and fastest channel
  rate, memory budget per file from its real size) and the checks every reader runs on header
  fields that size an allocation.
* :mod:`s2v_core.limits.jsonfile`: a JSON reader with a size and nesting-depth cap, for
  ``config.json`` and other files a user may hand us.

Layer 1: imports only :mod:`s2v_core.errors`.
"""

__all__ = []  # import from s2v_core.limits.bounds and s2v_core.limits.jsonfile
