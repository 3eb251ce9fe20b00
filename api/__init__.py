"""The HTTP service: FastAPI app factory, JSON and SSE routes, chat page and Slack bot.

Build an app with :func:`api.app.create_app`; ``mlrag serve`` runs it under uvicorn.
"""
