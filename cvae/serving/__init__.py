"""Serving: the signature contract (`contract.py`), the exported module (`module.py`), its
warm-up requests (`warmup.py`), writing an export (`export.py`) as a version (`versions.py`),
the check as TF Serving loads it (`check.py`, `_served_check.py`), REST JSON (`rest_json.py`),
the REST and gRPC client (`client.py`), and an exported model loaded to generate
(`generate.py`) and to run the applications (`applications.py`)."""
