"""coffea processors: files -> per-event feature tables, constituent clouds, jet images and histograms."""

from .dijet import DijetProcessor, empty_histograms, load_images
from .run import hdf5_events, make_executor, run_process

__all__ = ["DijetProcessor", "empty_histograms", "load_images", "hdf5_events", "make_executor", "run_process"]
