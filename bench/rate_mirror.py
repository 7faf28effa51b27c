#!/usr/bin/env python3
"""A loopback package mirror that sends each response at RATE bytes per
second (per connection), to stand in for a real mirror's bandwidth without
loading one. Logs like python's http.server (one line per request on stderr).

    rate_mirror.py PORT RATE   (serves the current directory on 127.0.0.1)
"""
import http.server
import sys
import time

RATE = int(sys.argv[2])
SLICE = max(RATE // 20, 4096)


class Handler(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile):
        start = time.monotonic()
        sent = 0
        while True:
            chunk = source.read(SLICE)
            if not chunk:
                return
            outputfile.write(chunk)
            sent += len(chunk)
            ahead = sent / RATE - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
