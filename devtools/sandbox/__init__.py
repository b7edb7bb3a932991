"""A local Interakt-compatible API for tests, demos and benchmarks: `python -m devtools.sandbox --port 8089`.

It answers POST {base}/{phone_number_id}/messages like the real API (Meta-shaped success and
error bodies, `wamid.` ids), checks headers and the message object on its own terms (it does
not reuse the worker's validation, so it can catch the worker's mistakes), records every
request, and injects faults on demand through `/_sandbox/faults`:

    {"latency": 0.05, "rules": [
      {"status": 500, "rate": 0.3},                       # 30 % of sends answer HTTP 500
      {"status": 429, "code": 130429, "retry_after": 2, "times": 5},
      {"code": 131047, "to": "+919999595313"},            # a Meta error for one recipient
      {"drop": true, "times": 1},                         # close the connection, no answer
      {"sleep": 3, "accept": true, "times": 2},           # accept, then answer too late
      {"code": 190, "status": 401, "for": 60},            # token expired for the next minute
    ]}

Given a webhook URL and secret (`--webhook-url`, `--webhook-secret`, or at run time
`POST /_sandbox/webhooks`), it plays Meta's other half: for each accepted message it posts
signed `sent`, `delivered` and `read` statuses after `delays` seconds, or `sent` then `failed`
with a code for recipients named in `fail`, each status twice with `duplicate`, in reverse
order with `reorder`; `POST /_sandbox/inbound {"from": ..., "text": ...}` posts a customer's
message. Posts are retried until they get a 200; `GET /_sandbox/webhooks` lists them.

    {"url": "http://127.0.0.1:8000/webhooks/whatsapp", "secret": "s3cret",
     "delays": [0.5, 1.5, 3], "duplicate": false, "reorder": false,
     "fail": [{"to": "+919999595313", "code": 131026, "title": "Message undeliverable"}]}

A rule matches when its `to`/`type`/`phone_number_id` filters match, its `rate` draws true, it has `times`
left and its `for` seconds (counted from when the rules were set) have not run out; the first
matching rule applies. `accept: true` records the message as accepted
before the fault, which is what makes a timeout ambiguous in real life.

Templates and media, as the API has them:

    GET  {base}/{waba_id}/message_templates?limit=&after=&name=   pages of EXAMPLE_TEMPLATES
    POST /_sandbox/templates {"templates": [...], "replace": false}  add or edit templates
    POST {base}/{phone_number_id}/media          multipart: messaging_product, type, file
    GET | DELETE {base}/{media_id}               the uploaded media's metadata / delete it
    GET  /_sandbox/media/{media_id}              its bytes

A template message is checked against the sandbox's own templates: an unknown name or language
answers 132001, a PAUSED or DISABLED one 132015 or 132016, a parameter count that does not match
the placeholders 132000, a header parameter of the wrong type 132012. A fault rule with
`"type": "message_templates"` applies to the template listing (e.g. its rate limit).

The package: `catalog` (its templates and codes, as data), `checks` (what it refuses, pure),
`state` (faults, records, webhook posts) and `server` (the routes and the command line).
"""

from devtools.sandbox.catalog import EXAMPLE_TEMPLATES
from devtools.sandbox.checks import check_message, media_error, new_wamid, template_error
from devtools.sandbox.server import SandboxServer, main, serve
from devtools.sandbox.state import SandboxState

__all__ = [
    "EXAMPLE_TEMPLATES",
    "SandboxServer",
    "SandboxState",
    "check_message",
    "main",
    "media_error",
    "new_wamid",
    "serve",
    "template_error",
]
