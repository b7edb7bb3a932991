"""Campaigns: one message to many recipients on a schedule, sent through the send path.

`spec` reads campaign files, `runs` keeps a run's state in Redis, `schedule` puts campaigns in
celery beat, `fanout` turns a run into chunks of intents and delivers them.
"""
