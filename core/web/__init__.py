"""The web dashboard and the offline API docs, served by ``metricx api`` next to ``/v1``.

:func:`core.web.mount.install` adds the pages (``/``, ``/login``, ``/dashboard``...), ``/docs``,
``/redoc`` and their static files to an app created with ``docs_url=None, redoc_url=None``.
"""
