"""The send path: an intent validated, its payload built, sent once within the limits, its outcome kept.

Nothing here knows about campaigns or the Celery app: `send.MessageDelivery` is given its
collaborators (`send.SendServices`) and, for a bulk sender, its `send.Lane`.
"""
