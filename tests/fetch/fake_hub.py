#!/usr/bin/env python3
"""A fake Hugging Face hub on loopback for tests/fetch/test-fetch-model.sh.

Serves HEAD/GET /ResembleAI/chatterbox/resolve/<rev>/<file> like huggingface.co: HEAD on a
branch name answers 302 with X-Repo-Commit, X-Linked-Etag and X-Linked-Size (as for LFS files);
GET on the commit id returns the bytes. The file contents are small deterministic strings.
Prints the port it listens on, then serves until killed."""
import hashlib
import http.server
import sys

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILES = {name: (f"fake {name} payload\n" * (i + 1)).encode()
         for i, name in enumerate(["ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors",
                                   "tokenizer.json", "conds.pt"])}
PREFIX = "/ResembleAI/chatterbox/resolve/"


class Hub(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def lookup(self):
        if not self.path.startswith(PREFIX):
            return None, None
        rev, _, name = self.path[len(PREFIX):].partition("/")
        if rev not in ("main", COMMIT) or name not in FILES:
            return rev, None
        return rev, FILES[name]

    def do_HEAD(self):
        rev, data = self.lookup()
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(302 if rev == "main" else 200)
        if rev == "main":
            self.send_header("Location", self.path.replace("/main/", "/" + COMMIT + "/"))
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("X-Linked-Etag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        rev, data = self.lookup()
        if data is None or rev != COMMIT:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    print(srv.server_address[1], flush=True)
    if len(sys.argv) > 1:  # dump the expected file contents for the test to compare
        for name, data in FILES.items():
            with open(f"{sys.argv[1]}/{name}", "wb") as f:
                f.write(data)
    srv.serve_forever()
