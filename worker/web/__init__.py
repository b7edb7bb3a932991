"""The web process: webhook routes on Starlette, served by uvicorn (`python -m worker.web`)."""
