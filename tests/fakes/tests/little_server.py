"""The command a live pod runs in the fake kubelet's tests: an HTTP server on $PORT whose /readyz
answers once it listens, whose /file serves the file $FILE names and /version says $VERSION; with
$EXIT_CODE it prints a line and exits with that code instead."""

import http.server
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/readyz":
            body = b"ok"
        elif self.path == "/version":
            body = os.environ.get("VERSION", "").encode()
        elif self.path == "/file":
            with open(os.environ["FILE"], "rb") as served:
                body = served.read()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main() -> None:
    print(f"starting on port {os.environ['PORT']}", flush=True)
    if "EXIT_CODE" in os.environ:
        print("failing on purpose", flush=True)
        sys.exit(int(os.environ["EXIT_CODE"]))
    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()


if __name__ == "__main__":
    main()
