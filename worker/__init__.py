"""whatsapp-dispatch worker: `celery -A worker worker` loads the app defined in worker.app."""

from worker.app import app

__all__ = ["app"]
