"""Thin command-line scripts; the logic lives in `cvae`."""
