"""Data the tests carry with them (see README.md here for sources and licences)."""
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
# three real KiwiSDR recordings of DCF77 (hcab14/TDoA, GPL-3.0)
DCF77_DIR = DATA_DIR / "dcf77-20200813"
