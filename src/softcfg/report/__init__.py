"""Parquet tables from per-run outputs, and the papers' tables and figures from those Parquet files."""
