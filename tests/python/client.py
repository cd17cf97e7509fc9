"""The official Python MCP SDK client, driven by Warrant's end-to-end tests.

    python client.py URL MODE TOOL JSON_ARGS

MODE is the SDK's: "auto" (probe with server/discover, fall back to initialize),
"legacy" or "2026-07-28". Prints one JSON line: the negotiated protocol version, the
tool names, and the text of the call's result.
"""
import asyncio
import json
import sys

from mcp import Client


async def main(url: str, mode: str, tool: str, arguments: dict) -> None:
    async with Client(url, mode=mode) as client:
        tools = await client.list_tools()
        result = await client.call_tool(tool, arguments)
        texts = [c.text for c in result.content if c.type == "text"]
        print(json.dumps({
            "protocolVersion": str(client.protocol_version),
            "tools": [t.name for t in tools.tools],
            "text": texts,
            "isError": bool(result.is_error),
        }))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: client.py URL MODE TOOL JSON_ARGS")
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
