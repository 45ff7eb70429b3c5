"""One module per resource; ``app.py`` mounts them under ``/v1``."""
