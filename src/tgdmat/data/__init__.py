"""Benchmark data: CDVAE-format CSV loading with caching, and the split protocols."""
from .csv import CrystalTable, cache_root, load_csv
from .protocol import default_data_root, load_split, protocol_name

__all__ = ["CrystalTable", "load_csv", "cache_root", "load_split", "default_data_root", "protocol_name"]
