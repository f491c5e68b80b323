"""Readers and writers for the input formats (LHC Olympics HDF5, NanoAOD-like ROOT)."""
