#!/usr/bin/env python3
"""Download the Chatterbox model files into the Hugging Face cache layout, as upstream's
ChatterboxTTS.from_pretrained (huggingface_hub.hf_hub_download) does, using only the standard library.

  <cache>/models--ResembleAI--chatterbox/blobs/<etag>
  <cache>/models--ResembleAI--chatterbox/snapshots/<commit>/<file> -> ../../blobs/<etag>
  <cache>/models--ResembleAI--chatterbox/refs/<revision>            (holds <commit>)

<cache> is $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
~/.cache/huggingface/hub; the server is $HF_ENDPOINT (default https://huggingface.co); $HF_TOKEN is
sent when set. Prints the snapshot directory on success. Exit status 2 when the hub cannot be reached.
"""
import argparse
import os
import sys
import urllib.error
import urllib.request

REPO = "ResembleAI/chatterbox"
FILES = ["ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt"]


def hub_cache():
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.environ[var]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "huggingface", "hub")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def request(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    req.add_header("User-Agent", "chatterboxsrc-fetch-model/1")
    if os.environ.get("HF_TOKEN"):
        req.add_header("Authorization", "Bearer " + os.environ["HF_TOKEN"])
    return req


def head_metadata(endpoint, revision, name):
    """(commit, etag, size) of one file, from the resolve URL's headers (redirect not followed)."""
    url = f"{endpoint}/{REPO}/resolve/{revision}/{name}"
    opener = urllib.request.build_opener(NoRedirect)
    try:
        resp = opener.open(request(url, "HEAD"), timeout=30)
        headers = resp.headers
    except urllib.error.HTTPError as e:
        if e.code not in (301, 302, 303, 307, 308):
            raise
        headers = e.headers
    commit = headers.get("X-Repo-Commit")
    etag = headers.get("X-Linked-Etag") or headers.get("ETag")
    size = headers.get("X-Linked-Size") or headers.get("Content-Length")
    if not commit or not etag:
        raise RuntimeError(f"{url}: the server sent no X-Repo-Commit/ETag headers; is HF_ENDPOINT a Hugging Face hub?")
    etag = etag.strip().removeprefix("W/").strip('"')
    if not etag or "/" in etag or etag.startswith("."):
        raise RuntimeError(f"{url}: unusable ETag {etag!r}")
    if not all(c in "0123456789abcdef" for c in commit.lower()):
        raise RuntimeError(f"{url}: unusable commit id {commit!r}")
    return commit, etag, int(size) if size and size.isdigit() else None


def download(endpoint, commit, name, blob_path, size):
    if os.path.isfile(blob_path) and (size is None or os.path.getsize(blob_path) == size):
        return
    url = f"{endpoint}/{REPO}/resolve/{commit}/{name}"
    part = blob_path + ".incomplete"
    done = 0
    with urllib.request.urlopen(request(url), timeout=60) as resp, open(part, "wb") as out:
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
            if size:
                print(f"\r  {name}: {done >> 20} / {size >> 20} MiB", end="", file=sys.stderr)
    print(file=sys.stderr)
    if size is not None and done != size:
        raise RuntimeError(f"{url}: got {done} bytes, expected {size}")
    os.replace(part, blob_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--revision", default="main")
    args = ap.parse_args()
    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    repo_dir = os.path.join(hub_cache(), "models--" + REPO.replace("/", "--"))
    try:
        metas = {name: head_metadata(endpoint, args.revision, name) for name in FILES}
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        print(f"fetch-model: cannot reach the model on {endpoint} ({e}).\n"
              f"fetch-model: download {', '.join(FILES)} from https://huggingface.co/{REPO} on a machine that can, "
              f"and set CHATTERBOX_MODEL_DIR (or the element's model-location) to their directory.",
              file=sys.stderr)
        return 2
    commits = {m[0] for m in metas.values()}
    if len(commits) != 1:
        print(f"fetch-model: the files come from different commits {sorted(commits)}; retry", file=sys.stderr)
        return 1
    commit = commits.pop()
    os.makedirs(os.path.join(repo_dir, "blobs"), exist_ok=True)
    snap = os.path.join(repo_dir, "snapshots", commit)
    os.makedirs(snap, exist_ok=True)
    for name, (_, etag, size) in metas.items():
        blob = os.path.join(repo_dir, "blobs", etag)
        try:
            download(endpoint, commit, name, blob, size)
        except (urllib.error.URLError, OSError, RuntimeError) as e:
            print(f"fetch-model: downloading {name} failed: {e}", file=sys.stderr)
            return 2
        link = os.path.join(snap, name)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.path.join("..", "..", "blobs", etag), link)
    if args.revision != commit:
        os.makedirs(os.path.join(repo_dir, "refs"), exist_ok=True)
        with open(os.path.join(repo_dir, "refs", args.revision), "w") as f:
            f.write(commit)
    print(snap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
