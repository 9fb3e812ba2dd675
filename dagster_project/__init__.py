"""Dagster orchestration: thin assets over ``curate`` / ``train`` library functions."""
