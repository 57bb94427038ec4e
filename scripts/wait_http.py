"""Wait until a URL answers 200 (used by the Procfile: the autointerp worker starts once the local LLM serves).

python scripts/wait_http.py URL [--timeout SECONDS]
"""

import argparse
import sys
import time
import urllib.request

parser = argparse.ArgumentParser()
parser.add_argument("url")
parser.add_argument("--timeout", type=float, default=600)
args = parser.parse_args()
deadline = time.monotonic() + args.timeout
while True:
    try:
        with urllib.request.urlopen(args.url, timeout=5) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"{args.url} did not answer within {args.timeout:.0f}s")
    time.sleep(2)
