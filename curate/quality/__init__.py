"""Heuristic quality filtering: signal columns (Gopher, C4, FineWeb) and recipe selection."""
