"""The HTTP face of ser: a FastAPI app (REST + WebSocket) and the web page it serves.

FastAPI and uvicorn are the ``ser[serve]`` extra, so nothing here imports them at package
import time; use :func:`ser.server.app.create_app`.
"""
