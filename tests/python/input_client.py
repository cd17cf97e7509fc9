"""The official Python MCP SDK client as a 2026-07-28 client that answers input requests.

    python input_client.py URL TOOL JSON_ARGS

Connects with mode="2026-07-28" (stateless, multi round-trip) and declares elicitation
and sampling: every elicitation is accepted with the content {"username": "ada",
"email": "ada@example.test"}, every sampling request answered with the text
"sampled: <the prompt>". The SDK drives the input_required rounds itself. Prints one
JSON line: the protocol version, the text of the call's result, whether it is an
error, and what the callbacks were asked (so the test sees the requests got through).
"""
import asyncio
import json
import sys

import mcp.types as types
from mcp import Client

ASKED: list[dict] = []


async def elicit(context, params: types.ElicitRequestParams) -> types.ElicitResult:
    ASKED.append({"kind": "elicitation", "message": params.message})
    return types.ElicitResult(
        action="accept", content={"username": "ada", "email": "ada@example.test"}
    )


async def sample(context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    prompt = " ".join(
        m.content.text for m in params.messages if getattr(m.content, "type", None) == "text"
    )
    ASKED.append({"kind": "sampling", "prompt": prompt})
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=f"sampled: {prompt}"),
        model="test-model",
    )


async def main(url: str, tool: str, arguments: dict) -> None:
    async with Client(
        url, mode="2026-07-28", elicitation_callback=elicit, sampling_callback=sample
    ) as client:
        result = await client.call_tool(tool, arguments)
        texts = [c.text for c in result.content if c.type == "text"]
        print(json.dumps({
            "protocolVersion": str(client.protocol_version),
            "text": texts,
            "isError": bool(result.is_error),
            "asked": ASKED,
        }))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: input_client.py URL TOOL JSON_ARGS")
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
