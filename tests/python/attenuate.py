"""Narrows a Warrant access token for a subagent with the Biscuit library for Python,
as docs/subagents.md shows: one appended block of checks, signed with the token's own
next key (no secret needed); the token is parsed against Warrant's published keys.

usage: attenuate.py TOKEN KEYS_URL SERVER TOOL SECONDS  -> prints the narrowed token
"""

import json
import sys
import urllib.request
from datetime import datetime, timedelta, timezone

from biscuit_auth import Algorithm, Biscuit, BlockBuilder, PublicKey


def published_keys(url: str) -> dict:
    """kid -> public key, from Warrant's /.well-known/warrant-keys.json."""
    with urllib.request.urlopen(url, timeout=10) as response:
        keys = json.load(response)["keys"]
    return {
        k["kid"]: PublicKey.from_bytes(bytes.fromhex(k["public_key"]), Algorithm.Ed25519)
        for k in keys
    }


def narrow(token: str, keys: dict, server: str, tool: str, seconds: int) -> str:
    until = datetime.now(tz=timezone.utc) + timedelta(seconds=seconds)
    block = BlockBuilder(
        """
        check if server($server), tool($tool), $server == {server}, $tool == {tool};
        check if time($time), $time <= {until};
        """,
        {"server": server, "tool": tool, "until": until},
    )
    biscuit = Biscuit.from_base64(token, lambda kid: keys[kid])
    return biscuit.append(block).to_base64()


if __name__ == "__main__":
    token, keys_url, server, tool, seconds = sys.argv[1:6]
    print(narrow(token, published_keys(keys_url), server, tool, int(seconds)))
