"""The benchmarks, one file each, and what they share (`common.py`); `../benchmark.py` runs them."""
