"""quietpager's pipeline: ingest, detect, correlate, notify, and the drivers that wire them."""

__version__ = "0.1.0"
