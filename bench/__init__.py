"""Experiments, one home (run from the repository root: ``make bench``, ``make demo``, ...).

Each script is a thin run over the library (:mod:`datashunt.benchmark`, :mod:`datashunt.training`)
with a ``main(argv)``; what they share is :mod:`bench.common`. Nothing that ships imports this
package, and it imports nothing from ``tests/`` (``tests/core/test_bench_layout.py``).
"""
