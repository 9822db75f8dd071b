"""A process tree shaped like vLLM's (server -> engine core -> workers) for lifecycle tests.

It is not an inference engine: it only answers GET /health, spawns grandchildren, and can be
told to crash, to hang at start, or to ignore SIGTERM, so teardown paths can be proven.
usage: fake_engine.py PORT MODE   (MODE: ok | crash | never-healthy | stubborn)
"""

import http.server
import signal
import subprocess
import sys
import time

port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "crash":
    print("fake engine: ValueError: model 'nope' does not exist", flush=True)
    sys.exit(3)
children = [subprocess.Popen([sys.executable, "-c", "import time, signal; "
                              + ("signal.signal(signal.SIGTERM, signal.SIG_IGN); " if mode == "stubborn" else "")
                              + "time.sleep(3600)"]) for _ in range(2)]
print("fake engine children:", " ".join(str(c.pid) for c in children), flush=True)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "never-healthy":
    time.sleep(3600)


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
