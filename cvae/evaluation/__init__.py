"""Evaluation: metrics on plain arrays (`metrics.py`), the evaluation classifier
(`classifier.py`), the served model's figures (`evaluate.py`, `applications.py`), the report and
its pictures (`report.py`, `figures.py`, `application_figures.py`), and the benchmarks
(`benchmark.py`, one file each under `benchmarks/`)."""
