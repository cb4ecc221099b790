"""The HTTP API as a module-level ``app``, for any ASGI server::

    uvicorn examples.api:app --port 9595

Importing this module builds nothing: the backends are opened when the server
starts the app and closed when it stops. ``soma serve`` is the same app.
"""

from somafractalmemory.api.app import create_app

app = create_app()
