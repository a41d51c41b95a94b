"""Web pages served at /ui/ by `tunesmith serve` (pages.py, templates/)."""
