"""Status callbacks over HTTP, for apps that do not run Celery (issue 26.2).

Each API key name may have a callback (`DISPATCH_CALLBACKS_FILE`, see `config`). The webhook
applier puts an event for it in a Redis outbox (`outbox`); a thread in every worker POSTs what is
due, signed (`signing`), and schedules a failed POST again with exponential backoff for
DISPATCH_CALLBACK_MAX_AGE, after which the event is kept as a dead letter that `wa-dispatch
callbacks` lists and re-drives (`deliver`). Nothing here runs on the applier's or a send's thread.
"""
