"""`python -m devtools.sandbox --port 8089`."""

from devtools.sandbox.server import main

main()
