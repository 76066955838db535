#!/usr/bin/env python3
"""Writes assets/tokenizers/<name>.bpe from OpenAI's published <name>.tiktoken tables.

    scripts/gen-tokenizers.py DIR   # DIR holds cl100k_base.tiktoken and o200k_base.tiktoken

The tables are https://openaipublic.blob.core.windows.net/encodings/<name>.tiktoken (the
same files tiktoken and tiktoken-rs ship); their SHA-256 is checked against the one
tiktoken pins. A .bpe file is the tokens in rank order, each as one length byte and its
bytes, so the program can look tokens up in the embedded file itself with no copy.
"""
import base64, hashlib, os, sys

PINNED = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

src = sys.argv[1]
out = os.path.join(os.path.dirname(__file__), "..", "assets", "tokenizers")
for name, sha in PINNED.items():
    raw = open(os.path.join(src, name + ".tiktoken"), "rb").read()
    if hashlib.sha256(raw).hexdigest() != sha:
        sys.exit(f"{name}.tiktoken: not the published table (sha256 differs)")
    blob = bytearray()
    for expected, line in enumerate(l for l in raw.split(b"\n") if l.strip()):
        token, rank = line.split()
        token = base64.b64decode(token)
        if int(rank) != expected or not 0 < len(token) < 256:
            sys.exit(f"{name}: rank {int(rank)} out of order or token of {len(token)} bytes")
        blob.append(len(token))
        blob += token
    with open(os.path.join(out, name + ".bpe"), "wb") as f:
        f.write(blob)
    print(f"{name}.bpe: {expected + 1} tokens, {len(blob)} bytes")
